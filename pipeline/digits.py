"""Pictures of digits as MNIST inputs: read PNG/JPEG, IDX or .npy, and preprocess as MNIST was made.

MNIST's recipe (LeCun et al.): the digit, light on a dark background, is cropped to its ink,
scaled with anti-aliasing to fit a 20x20 box keeping its aspect ratio, then placed in a 28x28
field so that its centre of mass lands at the field's centre. ``mnist_like`` does exactly that to
a picture of any size; row ``r``, column ``c`` is the pixel whose centre is at ``(r, c)``, and
the centre of mass ends at ``(14, 14)`` within half a pixel (an integer shift, as MNIST's).

``read_digits`` takes a file and returns uint8 images (N, 28, 28):

- a picture (PNG, JPEG, anything Pillow reads; gray, RGB, palette, with or without alpha; dark
  ink on light paper or light on dark, told apart by the picture's border): ``mnist_like``;
- an IDX image file (gzip or raw), as pipeline.idx reads it: already MNIST inputs, taken as is;
- a ``.npy`` array of pixels 0..255, (28, 28), (N, 28, 28) or (N, 784): taken as is.

Anything else raises DigitError naming the file and the problem: not an image, a picture without
ink, a wrong shape, NaN or out-of-range pixels.
"""

from pathlib import Path

import numpy as np

from pipeline.constants import IMAGE_SIDE, PIXEL_MAX
from pipeline.idx import GZIP_MAGIC, IDXError, read_idx

BOX = 20  # MNIST's digits fit a 20x20 box inside the 28x28 field
CENTRE = IMAGE_SIDE // 2
# Ink fainter than this share of the strongest stroke is paper grain or JPEG ringing, not ink.
NOISE_LEVEL = 0.1
# A picture whose darkest and lightest pixels differ less than this (of full scale) has no ink.
MIN_CONTRAST = 0.15
IDX_IMAGES_PREFIX = b"\x00\x00\x08\x03"
ARRAY_SHAPES = "(28, 28), (N, 28, 28) or (N, 784)"


class DigitError(ValueError):
    """A file that does not hold a usable digit; the message names the file and the problem."""


def read_digits(path):
    """uint8 images (N, 28, 28) from a picture, an IDX image file or a ``.npy`` array."""
    path = Path(path)
    if not path.is_file():
        raise DigitError(f"{path}: no such file")
    if path.suffix.lower() == ".npy":
        return _read_array(path)
    with open(path, "rb") as f:
        head = f.read(4)
    if head == IDX_IMAGES_PREFIX or head[:2] == GZIP_MAGIC:
        return _read_idx_images(path)
    return mnist_like(read_picture(path), path)[np.newaxis]


def read_picture(path):
    """The picture as gray levels (H, W) in [0, 1], transparency composited onto its paper."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            if image.mode.startswith("I;16") or image.mode == "I":  # 16-bit gray PNG
                return np.clip(np.asarray(image, dtype=np.float64) / 65535, 0, 1)
            rgba = np.asarray(image.convert("RGBA"), dtype=np.float64) / 255
    except UnidentifiedImageError:
        raise DigitError(f"{path}: not a picture Pillow can read (PNG, JPEG, ...), an IDX file or a .npy array") from None
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise DigitError(f"{path}: cannot read the picture ({error})") from None
    # ITU-R 601-2 luma, as Pillow's own conversion to gray ("L").
    gray = rgba[..., :3] @ np.array([0.299, 0.587, 0.114])
    alpha = rgba[..., 3]
    if alpha.min() == 1:
        return gray
    # Strokes on a transparent canvas: the paper is whichever of white and black the strokes
    # are not, so both black and white strokes stand out once composited onto it.
    weight = alpha.sum()
    ink_is_dark = weight == 0 or (gray * alpha).sum() / weight < 0.5
    return gray * alpha + (1.0 if ink_is_dark else 0.0) * (1 - alpha)


def mnist_like(gray, name="picture"):
    """A picture (H, W) of gray levels in [0, 1] as an MNIST image: uint8 (28, 28), light on dark.

    Polarity: the median of the picture's border is its paper; the ink is how far each pixel is
    from it (darker on light paper, lighter on dark paper), scaled so the strongest ink is 1,
    and ink below NOISE_LEVEL is dropped. Then MNIST's recipe (see the module docstring). The
    shift that centres the mass is clamped so the 20x20 box stays inside the field: a digit whose
    mass sits far to one side of its box (rare) keeps all its ink but ends off-centre.
    """
    gray = np.asarray(gray, dtype=np.float64)
    if gray.ndim != 2 or min(gray.shape) < 1:
        raise DigitError(f"{name}: expected a 2-D picture, got shape {gray.shape}")
    if not np.isfinite(gray).all():
        raise DigitError(f"{name}: holds NaN or infinite values")
    paper = np.median(np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]]))
    ink = (paper - gray) if paper > 0.5 else (gray - paper)
    strongest = ink.max()
    if strongest < MIN_CONTRAST:
        raise DigitError(f"{name}: no ink: every pixel is within {strongest:.0%} of the background")
    ink = np.clip(ink / strongest, 0, 1)
    ink[ink < NOISE_LEVEL] = 0

    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    ink = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    height, width = ink.shape
    scale = BOX / max(height, width)
    small = resize(ink, max(1, round(height * scale)), max(1, round(width * scale)))
    small /= small.max()

    field = np.zeros((IMAGE_SIDE, IMAGE_SIDE))
    centre = centre_of_mass(small)
    top, left = (
        int(np.clip(round(CENTRE - c), 0, IMAGE_SIDE - size)) for c, size in zip(centre, small.shape)
    )
    field[top : top + small.shape[0], left : left + small.shape[1]] = small
    return np.rint(field * PIXEL_MAX).astype(np.uint8)


def resize(image, height, width):
    """``image`` resampled to (height, width) by area averaging: each output pixel is the mean of
    the input area it covers, the anti-aliasing a downscale needs (an upscale repeats pixels)."""
    return area_weights(image.shape[0], height) @ image @ area_weights(image.shape[1], width).T


def area_weights(n, m):
    """(m, n) matrix ``A``: ``A[i, j]`` = share of output cell i, the input interval
    ``[i·n/m, (i+1)·n/m)``, covered by input pixel ``[j, j+1)``; each row sums to 1."""
    step = n / m
    starts = np.arange(m)[:, np.newaxis] * step
    j = np.arange(n)[np.newaxis, :]
    overlap = np.minimum(starts + step, j + 1) - np.maximum(starts, j)
    return np.clip(overlap, 0, None) / step


def centre_of_mass(image):
    """``(Σ r·v / Σ v, Σ c·v / Σ v)`` over pixels of value v at row r, column c."""
    total = image.sum()
    rows, cols = np.indices(image.shape)
    return (rows * image).sum() / total, (cols * image).sum() / total


def _read_idx_images(path):
    try:
        images = read_idx(path)
    except IDXError as error:
        raise DigitError(str(error)) from None
    if images.ndim != 3:
        raise DigitError(f"{path}: an IDX file of labels, not images")
    return _checked_ink(images, path)


def _read_array(path):
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise DigitError(f"{path}: not a numpy .npy array ({error})") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "uif":
        raise DigitError(f"{path}: expected an array of numbers, got {getattr(array, 'dtype', type(array))}")
    shape = array.shape
    if shape == (IMAGE_SIDE, IMAGE_SIDE):
        array = array[np.newaxis]
    elif len(shape) == 2 and shape[1] == IMAGE_SIDE * IMAGE_SIDE:
        array = array.reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
    elif array.ndim != 3 or shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise DigitError(f"{path}: array of shape {shape}, expected {ARRAY_SHAPES}")
    if array.shape[0] == 0:
        raise DigitError(f"{path}: array of shape {shape} holds no image")
    if not np.isfinite(array).all():
        raise DigitError(f"{path}: holds NaN or infinite pixels (pixels are 0..{PIXEL_MAX})")
    low, high = array.min(), array.max()
    if low < 0 or high > PIXEL_MAX:
        raise DigitError(f"{path}: pixels range over {low:g}..{high:g}, expected 0..{PIXEL_MAX}")
    if array.dtype.kind == "f" and 0 < high <= 1:
        raise DigitError(f"{path}: every pixel is in [0, 1]; pixels are 0..{PIXEL_MAX} (multiply by {PIXEL_MAX})")
    return _checked_ink(np.rint(array).astype(np.uint8), path)


def _checked_ink(images, path):
    blank = np.flatnonzero(images.reshape(len(images), -1).max(axis=1) == 0)
    if blank.size:
        raise DigitError(f"{path}: image {blank[0]} has no ink (all pixels 0; {blank.size:,} such images)")
    return images
