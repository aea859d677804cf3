"""The evaluate stage's pictures: the confusion matrix as a heat map with its counts, and the
most confidently wrong test digits under their labels.

Pure: arrays in, a uint8 image array out (RGBA for the confusion matrix, RGB for the digits).
Drawn with Pillow alone, like pipeline.w_picture and pipeline.loss_picture: matplotlib's import,
layout and rendering cost more than the evaluation itself, in every evaluate stage and after
every job of a sweep.
"""

import numpy as np
from PIL import Image, ImageDraw

from pipeline.constants import IMAGE_SIDE
from pipeline.w_picture import BACKGROUND, INK, interpolated, text_font, vertical_text

# ColorBrewer's Blues (matplotlib's "Blues"), from 0 (white) to 1, interpolated linearly.
BLUES = ("#f7fbff", "#deebf7", "#c6dbef", "#9ecae1", "#6baed6", "#4292c6", "#2171b5", "#08519c", "#08306b")
CONFUSION_SIZE = (640, 560)  # width, height
GRID = (52, 34, 512, 494)  # left, top, right, bottom of the matrix
SCALE = (546, 566)  # left, right of the colour scale, as high as the matrix
SCALE_LABEL = "share of the actual digit's test images"
TEXT = 12
DIGIT_ZOOM = 4  # screen pixels per pixel of a digit
CELL_WIDTH = 130  # screen pixels per digit's column: 8 columns, 1040 pixels
LABEL_BAND = 2 * TEXT + 12  # two lines of label above each digit


def blues(shares):
    """``shares`` in [0, 1] as Blues colours, uint8 (..., 3)."""
    return interpolated(BLUES, shares)


def confusion_picture(confusion, title):
    """The confusion matrix ``C[actual, predicted]`` as a heat map, each cell showing its count
    (none for 0), as an RGBA array (560, 640, 4).

    Colour is the share of the actual digit's test images (the row), so the mistakes of a rare
    and a common digit read alike; the diagonal is each digit's recall. Rows are the actual
    digits (top to bottom), columns the predicted ones, with the colour scale on the right.
    """
    confusion = np.asarray(confusion)
    classes = len(confusion)
    share = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    width, height = CONFUSION_SIZE
    canvas = Image.new("RGBA", (width, height), BACKGROUND + (255,))
    draw = ImageDraw.Draw(canvas)
    font = text_font(TEXT)
    left, top, right, bottom = GRID
    cell = (right - left) // classes
    right, bottom = left + cell * classes, top + cell * classes
    colours = blues(share)
    for (actual, predicted), count in np.ndenumerate(confusion):
        x, y = left + predicted * cell, top + actual * cell
        draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill=tuple(int(c) for c in colours[actual, predicted]))
        if count:
            ink = BACKGROUND if share[actual, predicted] > 0.5 else INK
            draw.text((x + cell / 2, y + cell / 2), str(count), font=font, fill=ink, anchor="mm")
    draw.rectangle((left - 1, top - 1, right, bottom), outline=INK)
    for digit in range(classes):
        centre = digit * cell + cell / 2
        draw.text((left + centre, bottom + 6), str(digit), font=font, fill=INK, anchor="mt")
        draw.text((left - 6, top + centre), str(digit), font=font, fill=INK, anchor="rm")
    draw.text(((left + right) / 2, bottom + 36), "predicted", font=font, fill=INK, anchor="mm")
    vertical_text(canvas, "actual", font, (14, (top + bottom) / 2))
    draw.text((width / 2, top - 10), title, font=text_font(TEXT + 2), fill=INK, anchor="ms")

    scale_left, scale_right = SCALE
    ramp = blues(np.linspace(1, 0, bottom - top))[:, np.newaxis].repeat(scale_right - scale_left, axis=1)
    canvas.paste(Image.fromarray(ramp), (scale_left, top))
    draw.rectangle((scale_left - 1, top - 1, scale_right, bottom), outline=INK)
    for value in np.linspace(0, 1, 6):
        y = bottom - value * (bottom - top)
        draw.line((scale_right, y, scale_right + 4, y), fill=INK)
        draw.text((scale_right + 7, y), f"{value:.1f}", font=font, fill=INK, anchor="lm")
    vertical_text(canvas, SCALE_LABEL, font, (width - 14, (top + bottom) / 2))
    return np.asarray(canvas)


def mistakes_picture(images, actual, predicted, margins, title, columns=8):
    """Test digits on a grid, each under a label with its true and predicted class and by how much
    the wrong score beat the right one (``margins``), as an RGB array CELL_WIDTH * ``columns``
    pixels wide. ``images`` uint8 (m, 784), drawn dark on white."""
    rows = max(1, -(-len(images) // columns))
    digit = IMAGE_SIDE * DIGIT_ZOOM
    cell_height, title_band = LABEL_BAND + digit + 2 * TEXT, 3 * TEXT
    canvas = Image.new("RGB", (columns * CELL_WIDTH, title_band + rows * cell_height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = text_font(TEXT)
    draw.text((canvas.width / 2, title_band / 2), title, font=text_font(TEXT + 4), fill=INK, anchor="mm")
    for i, (image, true, wrong, margin) in enumerate(zip(images, actual, predicted, margins)):
        left = (i % columns) * CELL_WIDTH
        top = title_band + (i // columns) * cell_height
        draw.multiline_text((left + CELL_WIDTH / 2, top + LABEL_BAND - 4), f"true {true}, predicted {wrong}\nby {margin:.2f}",
                            font=font, fill=INK, anchor="md", align="center")
        pixels = 255 - np.asarray(image, dtype=np.uint8).reshape(IMAGE_SIDE, IMAGE_SIDE)
        picture = Image.fromarray(pixels).resize((digit, digit), Image.NEAREST)
        canvas.paste(picture, (left + (CELL_WIDTH - digit) // 2, top + LABEL_BAND))
    return np.asarray(canvas)


def png_writer(picture):
    """A function writing ``picture`` (an image array) as PNG into an open binary file: zlib's
    fastest level, the same pixels in a slightly larger file, since every sweep job writes two."""
    return lambda file: Image.fromarray(picture).save(file, format="png", compress_level=1)
