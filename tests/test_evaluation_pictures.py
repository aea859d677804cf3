"""The evaluate stage's pictures, drawn with Pillow: read back from their pixels."""

import numpy as np

from pipeline.evaluation_pictures import CELL_WIDTH, DIGIT_ZOOM, GRID, LABEL_BAND, blues, confusion_picture, mistakes_picture
from pipeline.w_picture import INK


def test_blues_runs_from_white_to_dark_blue():
    np.testing.assert_array_equal(blues([0.0, 1.0]), [[247, 251, 255], [8, 48, 107]])
    middle = blues(0.5)
    assert middle[2] > middle[0] + 60  # blue, half way


def test_the_confusion_matrix_colours_row_shares_and_writes_the_counts():
    confusion = np.array([[3, 1, 0], [0, 2, 0], [0, 2, 2]])
    picture = confusion_picture(confusion, "softmax: test accuracy 70.0% on 10 digits")

    assert picture.shape == (560, 640, 4) and (picture[..., 3] == 255).all()
    left, top = GRID[:2]
    cell = (GRID[2] - left) // 3

    def corner(actual, predicted):  # a pixel of the cell away from its count
        return picture[top + actual * cell + 3, left + predicted * cell + 3, :3]

    shares = [[0.75, 0.25, 0], [0, 1, 0], [0, 0.5, 0.5]]
    for actual in range(3):
        for predicted in range(3):
            np.testing.assert_array_equal(corner(actual, predicted), blues(shares[actual][predicted]))

    def written(actual, predicted):  # anything but the cell's colour around its middle
        block = picture[top + actual * cell + cell // 3 : top + (actual + 1) * cell - cell // 3,
                        left + predicted * cell + cell // 3 : left + (predicted + 1) * cell - cell // 3, :3]
        return bool(np.any(block != corner(actual, predicted)))

    # The count in each non-zero cell, nothing in the zeros.
    assert {(a, p) for a in range(3) for p in range(3) if written(a, p)} == {(0, 0), (0, 1), (1, 1), (2, 1), (2, 2)}
