"""Pictures of training: the weight matrices (a one-layer W by pipeline.w_picture, labelled and
with its colour scale; a hidden layer's W1 as templates, W2 as a heat map) and the loss curves
(pipeline.loss_picture). Pure: arrays in, an RGB array out; nothing is shown or saved here. The
evaluate stage's pictures are pipeline.evaluation_pictures.

Only a hidden layer's templates take their colours from matplotlib's colormap, imported when
first drawn: a one-layer training never loads matplotlib.
"""

import functools

import numpy as np

from pipeline.constants import IMAGE_SIDE
from pipeline.loss_picture import loss_curve_picture  # noqa: F401 (the stages' pictures, in one place)
from pipeline.w_picture import weights_picture

# Diverging: red where a pixel pushes the score of the digit up, blue where it pushes it down,
# white for 0.
TEMPLATE_COLORMAP = "RdBu_r"
GAP_GREY = 0.6
COLOUR_LEVELS = 255  # odd, so that 0 maps to the colormap's exact middle


def tile_templates(W, columns=5, side=IMAGE_SIDE, gap=1):
    """The rows of W as ``side``x``side`` images on a grid (row-major, digit 0 top left), scaled
    to [-1, 1] by the largest finite |w|, with ``gap`` pixels of NaN between tiles.

    Non-finite weights (a diverged run) become NaN too. Returns a float (H, W) array.
    """
    W = np.asarray(W, dtype=np.float64)
    k = W.shape[0]
    rows = -(-k // columns)
    finite = np.isfinite(W)
    scale = np.max(np.abs(W[finite]), initial=0.0)
    templates = np.where(finite, W / scale if scale > 0 else 0.0, np.nan).reshape(k, side, side)
    step = side + gap
    grid = np.full((rows * step - gap, columns * step - gap), np.nan)
    for digit, template in enumerate(templates):
        row, column = divmod(digit, columns)
        grid[row * step : row * step + side, column * step : column * step + side] = template
    return grid


def templates_image(W, zoom=4, columns=5):
    """W's rows as a tiled RGB uint8 picture, ``zoom`` screen pixels per weight.

    Colour: TEMPLATE_COLORMAP over [-max|w|, max|w|], so 0 is white whatever the scale; gaps
    (and non-finite weights) grey.
    """
    grid = tile_templates(W, columns=columns)
    gaps = np.isnan(grid)
    levels = np.round((np.where(gaps, 0, grid) + 1) / 2 * (COLOUR_LEVELS - 1)).astype(np.intp)
    rgb = _template_colours()[levels]
    rgb[gaps] = round(GAP_GREY * 255)
    return np.repeat(np.repeat(rgb, zoom, axis=0), zoom, axis=1)


def heatmap_image(A, zoom=4):
    """A matrix as an RGB uint8 picture, one ``zoom``x``zoom`` block per entry: TEMPLATE_COLORMAP
    over [-max|a|, max|a|] (0 white), non-finite entries grey. For W₂ (k, m): row c is how each
    hidden unit pushes digit c's score."""
    A = np.asarray(A, dtype=np.float64)
    finite = np.isfinite(A)
    scale = np.max(np.abs(A[finite]), initial=0.0)
    scaled_values = np.where(finite, A / scale if scale > 0 else 0.0, 0.0)
    levels = np.round((scaled_values + 1) / 2 * (COLOUR_LEVELS - 1)).astype(np.intp)
    rgb = _template_colours()[levels]
    rgb[~finite] = round(GAP_GREY * 255)
    return np.repeat(np.repeat(rgb, zoom, axis=0), zoom, axis=1)


HIDDEN_UNITS_SHOWN = 100  # rows of W₁ pictured: enough to see the kinds of templates


def parameter_images(params, title=None):
    """The pictures of a model's weight matrices, {matrix name: RGB array}: a single layer's W as
    its ten rows, labelled with their digits, above their colour scale (``weights_picture``, with
    ``title`` above); a hidden layer's W1 as the templates of its first HIDDEN_UNITS_SHOWN units,
    ten to a row, and W2 as a heat map. Biases are not pictured."""
    if "W" in params:
        return {"W": weights_picture(params["W"], title=title)}
    return {"W1": templates_image(params["W1"][:HIDDEN_UNITS_SHOWN], zoom=2, columns=10), "W2": heatmap_image(params["W2"])}


@functools.cache
def _template_colours():
    """TEMPLATE_COLORMAP as a (COLOUR_LEVELS, 3) uint8 table: indexing it is far cheaper than
    calling the colormap on every pixel of every snapshot."""
    import matplotlib

    colours = matplotlib.colormaps[TEMPLATE_COLORMAP](np.linspace(0, 1, COLOUR_LEVELS))[:, :3]
    return np.round(colours * 255).astype(np.uint8)
