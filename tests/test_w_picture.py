"""The picture of W: tiles where the layout puts them, their colours on the shared scale, their
labels, the colour scale and its caption, read back from the pixels."""

import matplotlib
import numpy as np
import pytest

from pipeline.w_picture import BLUE, INK, NOT_FINITE, RED, Sizes, colour_table, weights_picture

ZOOM = 2
SIZES = Sizes(ZOOM, columns=5, rows=2)
WHITE_ZERO = (247, 247, 247)  # the colour of a weight 0
DARKEST_BLUE, DARKEST_RED = (5, 48, 97), (103, 0, 31)  # -max and +max


def marked_weights():
    """W whose row d is 0 except weight d at pixel (d, d), and -d at (27, 27)."""
    W = np.zeros((10, 28, 28))
    for digit in range(10):
        W[digit, digit, digit] = digit
        W[digit, 27, 27] = -digit
    return W.reshape(10, 784)


def label_top(row, titled=False):
    """The top of the label line above tile ``row`` (its tile starts one line lower)."""
    top = SIZES.margin + titled * SIZES.line
    return top + (row // 5) * (SIZES.line + SIZES.tile + SIZES.gap)


def tile(picture, row, titled=False):
    """Tile ``row`` of a picture, back at one pixel per weight (28, 28, 3)."""
    top, left = label_top(row, titled) + SIZES.line, SIZES.margin + (row % 5) * (SIZES.tile + SIZES.gap)
    return picture[top : top + SIZES.tile : ZOOM, left : left + SIZES.tile : ZOOM]


def label(picture, row):
    top, left = label_top(row), SIZES.margin + (row % 5) * (SIZES.tile + SIZES.gap)
    return picture[top : top + SIZES.line, left : left + SIZES.tile]


def scale_rows(picture):
    """(the colour bar, the line of its values, the caption line) of a picture without title."""
    top = label_top(10)
    return (picture[top : top + SIZES.bar], picture[top + SIZES.bar : top + SIZES.bar + SIZES.line],
            picture[top + SIZES.bar + SIZES.line : top + SIZES.bar + 2 * SIZES.line])


def inked(pixels):
    """Whether text in INK is drawn there (its strokes' cores are dark grey)."""
    return bool((np.abs(pixels.astype(int) - INK).max(axis=2) < 40).any())


def colour(value):
    """The colour of weight ``value`` on a scale of [-1, 1]."""
    return tuple(colour_table()[round((value + 1) / 2 * 254)])


def test_each_tile_is_its_row_on_one_scale_red_above_zero_blue_below_white_at_zero():
    picture = weights_picture(marked_weights(), zoom=ZOOM)

    assert picture.dtype == np.uint8 and picture.shape == (SIZES.height(False), SIZES.width, 3)
    for digit in range(10):
        pixels = tile(picture, digit)
        assert tuple(pixels[digit, digit]) == colour(digit / 9)  # every tile on the scale of the largest, 9
        assert tuple(pixels[27, 27]) == colour(-digit / 9)
        marked = np.zeros((28, 28), dtype=bool)
        marked[digit, digit] = marked[27, 27] = True
        assert (pixels[~marked] == WHITE_ZERO).all()
    assert tuple(tile(picture, 9)[9, 9]) == DARKEST_RED and tuple(tile(picture, 9)[27, 27]) == DARKEST_BLUE


def test_the_colours_are_matplotlibs_rdbu_r():
    reference = matplotlib.colormaps["RdBu_r"](np.linspace(0, 1, 255))[:, :3] * 255

    assert np.abs(colour_table() - reference).max() <= 2  # matplotlib's 256-entry table vs interpolation
    assert tuple(colour_table()[127]) == WHITE_ZERO


def test_each_tile_is_labelled_with_its_row_or_the_label_given():
    digits = weights_picture(marked_weights(), zoom=ZOOM)
    same = weights_picture(marked_weights(), labels=["7"] * 10, zoom=ZOOM)

    bands = [label(digits, row) for row in range(10)]
    assert all(inked(band) for band in bands)
    assert all(not np.array_equal(a, b) for i, a in enumerate(bands) for b in bands[i + 1 :])
    assert all(np.array_equal(label(same, row), label(same, 0)) for row in range(10))
    np.testing.assert_array_equal(label(same, 7), bands[7])  # tile 7's label is "7"


def test_the_scale_runs_blue_to_red_and_says_which_colour_is_which_sign():
    W = marked_weights()
    picture, doubled = weights_picture(W, zoom=ZOOM), weights_picture(2 * W, zoom=ZOOM)

    bar, values, caption = scale_rows(picture)
    left, right = SIZES.margin, SIZES.width - SIZES.margin - 1
    middle = bar[SIZES.bar // 2]
    assert tuple(middle[left]) == DARKEST_BLUE and tuple(middle[right]) == DARKEST_RED
    assert tuple(middle[(left + right) // 2]) == WHITE_ZERO
    half = SIZES.width // 2
    assert (caption[:, :half] == BLUE).all(axis=2).any() and not (caption[:, :half] == RED).all(axis=2).any()
    assert (caption[:, half:] == RED).all(axis=2).any() and not (caption[:, half:] == BLUE).all(axis=2).any()
    # Twice the weights: the same tiles, other numbers at the ends of the scale (9 and 18).
    assert all(np.array_equal(tile(picture, row), tile(doubled, row)) for row in range(10))
    doubled_values = scale_rows(doubled)[1]
    assert not np.array_equal(values[:, :half // 2], doubled_values[:, :half // 2])
    assert np.array_equal(values[:, half - 8 : half + 8], doubled_values[:, half - 8 : half + 8])  # "0"


def test_non_finite_weights_are_grey_do_not_set_the_scale_and_are_named():
    W = marked_weights()
    W[0, 0] = np.inf
    W[1, 5] = np.nan

    picture = weights_picture(W, zoom=ZOOM)

    assert tuple(tile(picture, 0)[0, 0]) == NOT_FINITE and tuple(tile(picture, 1)[0, 5]) == NOT_FINITE
    assert tuple(tile(picture, 9)[9, 9]) == DARKEST_RED  # the largest finite weight, 9, is the scale's end
    caption_middle = scale_rows(picture)[2][:, SIZES.width // 3 : 2 * SIZES.width // 3]
    assert inked(caption_middle)  # "grey: not finite"
    assert not inked(scale_rows(weights_picture(marked_weights(), zoom=ZOOM))[2][:, SIZES.width // 3 : 2 * SIZES.width // 3])


def test_an_all_zero_W_is_white_tiles_without_a_division_by_zero():
    with np.errstate(all="raise"):
        picture = weights_picture(np.zeros((10, 784)), zoom=ZOOM)

    assert all((tile(picture, row) == WHITE_ZERO).all() for row in range(10))


@pytest.mark.parametrize("zoom", [2, 6])
def test_a_title_adds_a_line_above_and_zoom_scales_the_tiles(zoom):
    sizes = Sizes(zoom, columns=5, rows=2)
    picture = weights_picture(marked_weights(), title="W after epoch 3", zoom=zoom)

    assert picture.shape == (sizes.height(True), sizes.width, 3)
    assert sizes.height(True) - sizes.height(False) == sizes.line
    assert sizes.width == 2 * sizes.margin + 5 * 28 * zoom + 4 * sizes.gap
    title = picture[sizes.margin : sizes.margin + sizes.line]
    assert inked(title)
