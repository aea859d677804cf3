"""The picture of W that the MLflow UI shows: its rows as 28x28 tiles, each labelled with its row
(the digit whose score it computes), coloured on one symmetric scale, blue below 0, white at 0, red
above, with that scale drawn under them and saying which colour is which sign.

Pure: an array in, an RGB uint8 array out. Drawn with Pillow alone, not with a matplotlib figure:
training draws one after every epoch, and a figure's layout and rendering cost far more than
pasting the tiles and a few words.

The UI's step slider shows a copy scaled to 256 pixels across, so the sizes are chosen to stay
legible there at ``zoom=2``; ``zoom=6`` makes the large picture of the final W.
"""

import functools

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pipeline.constants import IMAGE_SIDE

# matplotlib's RdBu_r (ColorBrewer's RdBu, reversed), interpolated linearly between these.
COLOURS = ("#053061", "#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#f7f7f7",
           "#fddbc7", "#f4a582", "#d6604d", "#b2182b", "#67001f")
COLOUR_LEVELS = 255  # odd, so that 0 maps to the exact middle colour
BACKGROUND = (255, 255, 255)
INK = (33, 33, 33)
NOT_FINITE = (150, 150, 150)  # a weight that is NaN or infinite (a diverged run)
BLUE, RED = (33, 102, 172), (178, 24, 43)  # the words saying which colour is which sign
# The caption under the scale, the longest that fits the picture's width is used.
CAPTIONS = (
    (("blue: w < 0, lowers the digit's score", BLUE), ("red: w > 0, raises it", RED)),
    (("blue: w < 0", BLUE), ("red: w > 0", RED)),
)


def weights_picture(W, title=None, labels=None, zoom=2, columns=5):
    """W's rows as labelled tiles on a grid (row-major, row 0 top left) above a colour scale.

    ``W`` (k, 784); ``labels``: the k tile labels (default: the row numbers, i.e. the digits);
    ``title``: a line above the tiles. Every tile shares one scale, [-m, m] with m the largest
    finite |w|, so a colour means the same weight in every tile; non-finite weights are grey.
    Returns an RGB uint8 array (H, W, 3).
    """
    W = np.asarray(W, dtype=np.float64)
    k = W.shape[0]
    labels = [str(row) for row in range(k)] if labels is None else [str(label) for label in labels]
    finite = np.isfinite(W)
    scale = float(np.max(np.abs(W[finite]), initial=0.0))
    levels = np.round((np.where(finite, W / scale if scale > 0 else 0.0, 0.0) + 1) / 2 * (COLOUR_LEVELS - 1))
    tiles = colour_table()[levels.astype(np.intp)]
    tiles[~finite] = NOT_FINITE

    size = Sizes(zoom, columns, -(-k // columns))
    font, canvas_size = text_font(size.text), (size.width, size.height(title is not None))
    canvas = Image.new("RGB", canvas_size, BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    top = size.margin
    if title is not None:
        draw.text((size.margin, top), title, font=font, fill=INK)
        top += size.line
    for row, (tile, label) in enumerate(zip(tiles, labels)):
        left = size.margin + (row % columns) * (size.tile + size.gap)
        tile_top = top + (row // columns) * (size.line + size.tile + size.gap)
        draw.text((left + size.tile / 2, tile_top + size.line / 2), label, font=font, fill=INK, anchor="mm")
        picture = Image.fromarray(tile.reshape(IMAGE_SIDE, IMAGE_SIDE, 3)).resize((size.tile, size.tile), Image.NEAREST)
        canvas.paste(picture, (left, tile_top + size.line))
        draw.rectangle((left - 1, tile_top + size.line - 1, left + size.tile, tile_top + size.line + size.tile), outline=NOT_FINITE)
    scale_top = top + size.rows * (size.line + size.tile + size.gap)
    draw_scale(canvas, draw, size, scale_top, scale, font, any_not_finite=not finite.all())
    return np.asarray(canvas)


class Sizes:
    """The picture's layout in pixels, for ``zoom`` screen pixels per weight."""

    def __init__(self, zoom, columns, rows):
        self.tile, self.gap, self.margin = IMAGE_SIDE * zoom, 4 * zoom, 4 * zoom
        self.text = 8 * min(zoom, 4)
        self.line = round(self.text * 1.5)  # a line of text and the space around it
        self.bar = round(self.text * 0.9)
        self.columns, self.rows = columns, rows
        self.width = 2 * self.margin + columns * self.tile + (columns - 1) * self.gap

    def height(self, titled):
        tiles = self.rows * (self.line + self.tile + self.gap)
        return 2 * self.margin + titled * self.line + tiles + self.bar + 2 * self.line


def draw_scale(canvas, draw, size, top, scale, font, any_not_finite):
    """The colour scale: a bar from -scale (left) through 0 to +scale (right), its three values
    under it, and a caption saying which colour is which sign."""
    left, right = size.margin, size.width - size.margin
    positions = np.linspace(0, COLOUR_LEVELS - 1, right - left).round().astype(np.intp)
    bar = np.repeat(colour_table()[positions][np.newaxis], size.bar, axis=0)
    canvas.paste(Image.fromarray(bar), (left, top))
    draw.rectangle((left - 1, top - 1, right, top + size.bar), outline=NOT_FINITE)
    values_y = top + size.bar + size.line / 2
    shown = f"{scale:.2g}"
    draw.text((left, values_y), f"-{shown}" if scale else "0", font=font, fill=INK, anchor="lm")
    draw.text(((left + right) / 2, values_y), "0", font=font, fill=INK, anchor="mm")
    draw.text((right, values_y), f"+{shown}" if scale else "0", font=font, fill=INK, anchor="rm")
    caption_y = values_y + size.line
    fitting = [caption for caption in CAPTIONS if font.getlength(f"{caption[0][0]}   {caption[1][0]}") <= right - left]
    (blue, blue_colour), (red, red_colour) = (fitting or CAPTIONS[-1:])[0]
    draw.text((left, caption_y), blue, font=font, fill=blue_colour, anchor="lm")
    draw.text((right, caption_y), red, font=font, fill=red_colour, anchor="rm")
    if any_not_finite:
        draw.text(((left + right) / 2, caption_y), "grey: not finite", font=font, fill=INK, anchor="mm")


@functools.cache
def colour_table():
    """COLOURS interpolated to a (COLOUR_LEVELS, 3) uint8 table: indexing it is far cheaper than
    interpolating every pixel of every picture."""
    return interpolated(COLOURS, np.linspace(0, 1, COLOUR_LEVELS))


def interpolated(colours, shares):
    """``shares`` in [0, 1] (any shape) as colours interpolated linearly between the ``colours``
    (``#rrggbb``, evenly spaced from 0 to 1), uint8 (..., 3)."""
    anchors = np.array([[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in colours], dtype=np.float64)
    where = np.clip(np.asarray(shares, dtype=np.float64), 0, 1) * (len(colours) - 1)
    return np.round(np.stack([np.interp(where, np.arange(len(colours)), anchors[:, c]) for c in range(3)], axis=-1)).astype(np.uint8)


@functools.cache
def text_font(size):
    """Pillow's own scalable font (no font file needed) at ``size`` pixels."""
    return ImageFont.load_default(size=size)


def vertical_text(canvas, text, font, centre):
    """``text`` written bottom to top on ``canvas`` (RGB or RGBA), centred on ``centre``."""
    height = round(font.size) + 6
    width = round(font.getlength(text)) + 4
    strip = Image.new(canvas.mode, (width, height), BACKGROUND + (255,) * (canvas.mode == "RGBA"))
    ImageDraw.Draw(strip).text((width / 2, height / 2), text, font=font, fill=INK, anchor="mm")
    strip = strip.rotate(90, expand=True)
    canvas.paste(strip, (round(centre[0] - strip.width / 2), round(centre[1] - strip.height / 2)))
