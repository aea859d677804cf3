"""Pictures as MNIST inputs: MNIST's recipe on real drawn digits, exact values, one error per bad file."""

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps

from pipeline.digits import DigitError, area_weights, centre_of_mass, mnist_like, read_digits, resize
from pipeline.idx import write_idx
from tests.paths import REPO_ROOT

DRAWN = sorted((REPO_ROOT / "tests" / "digits").glob("*_*.*[gG]"))


def bounding_box(image):
    rows, cols = np.flatnonzero(image.any(axis=1)), np.flatnonzero(image.any(axis=0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def stroke_picture(size=(300, 200), mode="L", paper=255, pen=0):
    """A '7'-like pair of strokes on a canvas of its own, off-centre."""
    image = Image.new(mode, size, paper)
    ImageDraw.Draw(image).line([(60, 40), (160, 40), (110, 170)], fill=pen, width=14)
    return image


def test_the_committed_drawn_digits_are_there_and_small():
    assert len(DRAWN) == 10
    assert sorted(int(path.name[0]) for path in DRAWN) == list(range(10))
    assert all(path.stat().st_size < 8_000 for path in DRAWN)


@pytest.mark.parametrize("path", DRAWN, ids=lambda p: p.name)
def test_drawn_digits_come_out_as_mnist_makes_them(path):
    images = read_digits(path)
    assert images.shape == (1, 28, 28) and images.dtype == np.uint8
    image = images[0]
    assert image.max() == 255 and np.mean(image == 0) > 0.6  # light on a dark field
    assert max(bounding_box(image)) == 20 and min(bounding_box(image)) >= 4
    row, col = centre_of_mass(image.astype(float))
    assert abs(row - 14) <= 0.5 and abs(col - 14) <= 0.5


def test_a_bar_lands_exactly_where_the_recipe_puts_it():
    # A 10x40 bar: scaled by 1/2 to 5x20, centre of mass (2, 9.5), so shifted by (12, 4)
    # (round(4.5) = 4, to even) to rows 12..16, columns 4..23: mass at (14, 13.5).
    picture = np.zeros((100, 100))
    picture[30:40, 50:90] = 1
    expected = np.zeros((28, 28), np.uint8)
    expected[12:17, 4:24] = 255
    np.testing.assert_array_equal(mnist_like(picture), expected)


def test_dark_on_light_and_light_on_dark_give_the_same_digit(tmp_path):
    dark_on_light = stroke_picture()
    dark_on_light.save(tmp_path / "a.png")
    ImageOps.invert(dark_on_light).save(tmp_path / "b.png")
    a, b = read_digits(tmp_path / "a.png"), read_digits(tmp_path / "b.png")
    np.testing.assert_array_equal(a, b)
    assert a.max() == 255 and a[0, 0, 0] == 0


@pytest.mark.parametrize("pen", [0, 255], ids=["black strokes", "white strokes"])
def test_strokes_on_a_transparent_canvas_are_read_as_ink(tmp_path, pen):
    opaque = stroke_picture(paper=255 - pen, pen=pen)
    transparent = Image.new("LA", opaque.size, (255 - pen, 0))
    ImageDraw.Draw(transparent).line([(60, 40), (160, 40), (110, 170)], fill=(pen, 255), width=14)
    opaque.save(tmp_path / "opaque.png")
    transparent.save(tmp_path / "transparent.png")
    np.testing.assert_array_equal(read_digits(tmp_path / "transparent.png"), read_digits(tmp_path / "opaque.png"))


def test_a_jpeg_on_gray_paper_matches_the_clean_picture_closely(tmp_path):
    clean = stroke_picture(paper=200, pen=40)
    clean.save(tmp_path / "clean.png")
    clean.convert("RGB").save(tmp_path / "photo.jpg", quality=60)
    a = read_digits(tmp_path / "clean.png")[0].astype(float)
    b = read_digits(tmp_path / "photo.jpg")[0].astype(float)
    # JPEG's blur and ringing move the ink's edges by at most a pixel, nothing more.
    assert np.abs(np.subtract(bounding_box(a), bounding_box(b))).max() <= 1
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.85


def test_area_resampling_averages_exactly():
    image = np.arange(16, dtype=float).reshape(4, 4)
    np.testing.assert_array_equal(resize(image, 2, 2), [[2.5, 4.5], [10.5, 12.5]])
    weights = area_weights(7, 3)
    np.testing.assert_allclose(weights.sum(axis=1), 1)
    np.testing.assert_allclose(weights[0, :3], [3 / 7, 3 / 7, 1 / 7])


def test_idx_and_npy_arrays_are_taken_as_they_are(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "images.gz", images)
    np.save(tmp_path / "flat.npy", images.reshape(5, 784).astype(np.float64))
    np.save(tmp_path / "one.npy", images[2])
    np.testing.assert_array_equal(read_digits(tmp_path / "images.gz"), images)
    np.testing.assert_array_equal(read_digits(tmp_path / "flat.npy"), images)
    np.testing.assert_array_equal(read_digits(tmp_path / "one.npy"), images[2:3])


def blank_png(path):
    Image.new("RGB", (50, 60), (250, 250, 250)).save(path)


def truncated_png(path):
    stroke_picture().save(path)
    path.write_bytes(path.read_bytes()[:200])


BAD_FILES = {
    "text.png": (lambda p: p.write_text("not a picture"), "not a picture Pillow can read"),
    "blank.png": (blank_png, "no ink"),
    "cut.png": (truncated_png, "cannot read the picture"),
    "small.npy": (lambda p: np.save(p, np.ones((27, 27))), "array of shape (27, 27), expected (28, 28), (N, 28, 28) or (N, 784)"),
    "nan.npy": (lambda p: np.save(p, np.full((28, 28), np.nan)), "holds NaN or infinite pixels"),
    "negative.npy": (lambda p: np.save(p, np.full((2, 784), -3.0)), "pixels range over -3..-3, expected 0..255"),
    "unit.npy": (lambda p: np.save(p, np.full((28, 28), 0.5)), "every pixel is in [0, 1]"),
    "empty.npy": (lambda p: np.save(p, np.zeros((2, 28, 28))), "image 0 has no ink (all pixels 0; 2 such images)"),
    "objects.npy": (lambda p: np.save(p, np.array([{}]), allow_pickle=True), "not a numpy .npy array"),
    "labels.gz": (lambda p: write_idx(p, np.array([1, 2], np.uint8)), "an IDX file of labels, not images"),
    "short.gz": (lambda p: p.write_bytes(b"\x1f\x8b\x08garbage"), "corrupt gzip stream"),
}


@pytest.mark.parametrize("name", BAD_FILES)
def test_a_bad_file_gets_one_clear_error_naming_it(tmp_path, name):
    make, message = BAD_FILES[name]
    make(tmp_path / name)
    with pytest.raises(DigitError, match="^" + str(tmp_path / name)) as error:
        read_digits(tmp_path / name)
    assert message in str(error.value)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(DigitError, match="nothing.png: no such file"):
        read_digits(tmp_path / "nothing.png")
