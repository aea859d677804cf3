"""Pictures of W (the one-layer W's own picture: test_w_picture; the loss curve:
test_loss_picture; the evaluation's: test_evaluation_pictures)."""

import numpy as np
import pytest

from pipeline.pictures import heatmap_image, parameter_images, templates_image, tile_templates
from pipeline.w_picture import weights_picture


def weights_with_a_mark_per_digit():
    """W whose row d is 0 except weight d at pixel (d, d), and -d at (27, 27)."""
    W = np.zeros((10, 28, 28))
    for digit in range(10):
        W[digit, digit, digit] = digit
        W[digit, 27, 27] = -digit
    return W.reshape(10, 784)


def test_tiles_put_digit_d_in_row_d_div_5_column_d_mod_5_scaled_by_the_largest_weight():
    grid = tile_templates(weights_with_a_mark_per_digit(), columns=5, gap=1)

    assert grid.shape == (2 * 28 + 1, 5 * 28 + 4)
    for digit in range(10):
        top, left = 29 * (digit // 5), 29 * (digit % 5)
        tile = grid[top : top + 28, left : left + 28]
        assert tile[digit, digit] == pytest.approx(digit / 9)
        assert tile[27, 27] == pytest.approx(-digit / 9)
        assert np.count_nonzero(tile) == (2 if digit else 0)
    assert np.isnan(grid[28, :]).all() and np.isnan(grid[:, 28]).all()  # the gaps


def test_non_finite_weights_show_as_gaps_and_do_not_set_the_scale():
    W = weights_with_a_mark_per_digit()
    W[0, 0] = np.inf
    W[1, 5] = np.nan

    grid = tile_templates(W)

    assert np.isnan(grid[0, 0]) and np.isnan(grid[0, 29 + 5])
    assert np.nanmax(np.abs(grid)) == 1.0


def test_templates_image_is_a_zoomed_rgb_picture_red_up_blue_down_white_zero():
    image = templates_image(weights_with_a_mark_per_digit(), zoom=3)

    assert image.shape == (3 * 57, 3 * 144, 3) and image.dtype == np.uint8
    red, blue, zero = (image[3 * y, 3 * x].astype(int) for y, x in ((29 + 9, 4 * 29 + 9), (29 + 27, 4 * 29 + 27), (10, 20)))
    assert red[0] > red[2] + 50 and red[1] < 30  # +max: dark red (103, 0, 31)
    assert blue[2] > blue[0] + 50 and blue[2] > blue[1] + 30  # -max: dark blue (5, 48, 97)
    assert zero.min() > 240  # 0: white
    assert (templates_image(np.zeros((10, 784)))[0, 0] > 240).all()  # all-zero W, no division by 0


def test_parameter_images_picture_each_weight_matrix():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(10, 784))
    one_layer = parameter_images({"W": W, "b": rng.normal(size=10)}, title="W after epoch 2")
    assert list(one_layer) == ["W"]  # W labelled, with its scale; a bias is not pictured
    np.testing.assert_array_equal(one_layer["W"], weights_picture(W, title="W after epoch 2"))
    W1, W2 = rng.normal(size=(128, 784)), rng.normal(size=(10, 128))
    hidden = parameter_images({"W1": W1, "b1": np.zeros(128), "W2": W2, "b2": np.zeros(10)})
    assert list(hidden) == ["W1", "W2"]
    # The first 100 hidden units' templates, ten to a row, 2 screen pixels per weight.
    np.testing.assert_array_equal(hidden["W1"], templates_image(W1[:100], zoom=2, columns=10))
    assert hidden["W1"].shape == (2 * (10 * 29 - 1), 2 * (10 * 29 - 1), 3)
    assert hidden["W2"].shape == (4 * 10, 4 * 128, 3) and hidden["W2"].dtype == np.uint8


def test_heatmap_image_is_white_at_zero_and_red_blue_at_the_extremes():
    image = heatmap_image(np.array([[0.0, 2.0, -2.0, np.nan]]), zoom=1)
    white, red, blue, grey = image[0]
    assert tuple(white) == (247, 247, 247) or min(white) > 240
    assert red[0] > red[2] and blue[2] > blue[0]
    assert tuple(grey) == (153, 153, 153)
