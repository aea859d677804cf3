"""The loss curve, drawn with Pillow: read back from its pixels."""

import numpy as np
import pytest

from pipeline.loss_picture import DIVERGED, HEIGHT, PLOT, STEP_GREY, TRAIN, VALIDATION, WIDTH, loss_curve_picture
from pipeline.w_picture import INK

LEFT, TOP, RIGHT, BOTTOM = PLOT
BODY = (slice(TOP + 120, BOTTOM - 1), slice(LEFT + 1, RIGHT - 1))  # the plot below the legend


def where(picture, colour):
    return np.all(picture == colour, axis=-1)


def test_the_losses_are_on_a_log_axis():
    # 1, 0.1, 0.01: equal steps on a log axis; on a linear one the last two would almost touch.
    history = [{"epoch": e, "train_loss": 10.0 ** (1 - e), "val_loss": 2 * 10.0 ** (1 - e)} for e in (1, 2, 3)]
    picture = loss_curve_picture(history, [], [], steps_per_epoch=10, title="softmax lr=0.5 bs=32")

    assert picture.shape == (HEIGHT, WIDTH, 3) and picture.dtype == np.uint8
    train = where(picture, TRAIN)
    train[: TOP + 110, (LEFT + RIGHT) // 2 :] = False  # the legend's swatch
    columns = np.flatnonzero(train.any(axis=0))
    first, last = columns.min() + 3, columns.max() - 3  # the centres of the first and last markers
    rows = [np.nonzero(train[:, column - 1 : column + 2])[0].mean() for column in (first, (first + last) // 2, last)]
    assert rows[0] < rows[1] < rows[2]
    assert abs((rows[1] - rows[0]) - (rows[2] - rows[1])) <= 3  # 0.1 halfway between 1 and 0.01
    assert where(picture, VALIDATION)[BODY].any()


def test_non_finite_losses_are_left_out_and_the_floor_and_divergence_are_drawn():
    history = [{"epoch": 1, "train_loss": 0.5, "val_loss": 0.6}, {"epoch": 2, "train_loss": 0.4, "val_loss": 0.55}]
    picture = loss_curve_picture(history, [1, 3, 5, 7], [0.9, 0.5, np.inf, np.nan], steps_per_epoch=4,
                                 title="linear lr=10 bs=32", floor=0.3, diverged_at=7)

    red_columns = np.flatnonzero(where(picture, DIVERGED)[TOP:BOTTOM].sum(axis=0) > (BOTTOM - TOP) * 0.6)
    assert len(red_columns) == 1  # one line down the plot (the legend over its top), at step 7 (epoch 1.75)
    grey_columns = np.flatnonzero(where(picture, STEP_GREY)[BODY].any(axis=0)) + LEFT + 1
    # The per-step line joins epochs 0.25 and 0.75 only (inf and NaN are not drawn): it ends
    # well before the divergence at 1.75, less than half the way from 0.75.
    assert grey_columns.size and grey_columns.max() < red_columns[0] - (red_columns[0] - grey_columns.min()) / 2
    floor_rows = np.flatnonzero(where(picture, INK)[:, LEFT + 2 : RIGHT - 2].sum(axis=1) > (RIGHT - LEFT) * 0.4)
    assert [row for row in floor_rows if TOP < row < BOTTOM]  # the dashed floor across the plot


@pytest.mark.parametrize("losses", [[np.nan, np.nan], [0.0, np.nan], [np.inf, -1.0]], ids=["all-nan", "zero-and-nan", "inf-and-negative"])
def test_a_loss_curve_with_no_positive_finite_value_is_drawn_without_curves(losses):
    # A run whose loss went NaN at its first steps: a log axis cannot place any of it.
    picture = loss_curve_picture([], [0, 1], losses, steps_per_epoch=113, title="softmax lr=1e+38 bs=32", diverged_at=1)

    assert picture.shape == (HEIGHT, WIDTH, 3)
    grey = where(picture, STEP_GREY)
    middle = (TOP + BOTTOM) // 2
    grey[middle - 12 : middle + 12] = False  # the note (its anti-aliased letters have greys too)
    assert not grey[BODY].any()
    assert where(picture, DIVERGED)[BODY].any()
    assert (picture[BODY] != 255).any(axis=-1).sum() > 200  # the note saying why, the divergence
