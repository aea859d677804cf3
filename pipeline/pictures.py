"""Pictures of training and evaluation: the weight matrices (a one-layer W by pipeline.w_picture,
labelled and with its colour scale; a hidden layer's W1 as templates, W2 as a heat map), the loss
curves (pipeline.loss_picture), the confusion matrix, the worst mistakes. Pure: arrays in, an RGB
array or a matplotlib Figure out; nothing is shown or saved here.

Figures are built with matplotlib's object API (``matplotlib.figure.Figure``), which renders
with Agg and needs neither pyplot's global state nor a display. matplotlib is imported by the
functions that draw with it: a training (the W pictures and the loss curve, drawn with Pillow)
never loads it.
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


def confusion_figure(confusion, title):
    """The confusion matrix ``C[actual, predicted]`` as a heatmap, each cell showing its count.

    Colour is the share of the actual digit's test images (the row), so the mistakes of a rare
    and a common digit read alike; the diagonal is each digit's recall.
    """
    from matplotlib.figure import Figure

    classes = len(confusion)
    share = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    figure = Figure(figsize=(6.4, 5.6), layout="constrained")
    axes = figure.add_subplot()
    image = axes.imshow(share, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axes, label="share of the actual digit's test images")
    for (actual, predicted), count in np.ndenumerate(confusion):
        if count:
            colour = "white" if share[actual, predicted] > 0.5 else "black"
            axes.text(predicted, actual, str(count), ha="center", va="center", fontsize=8, color=colour)
    axes.set_xticks(range(classes))
    axes.set_yticks(range(classes))
    axes.set_xlabel("predicted")
    axes.set_ylabel("actual")
    axes.set_title(title)
    return figure


def mistakes_figure(images, actual, predicted, margins, title, columns=8):
    """Test digits on a grid, each under a label with its true and predicted class and by how much
    the wrong score beat the right one (``margins``). ``images`` uint8 (m, 784).

    One image on one axes (the digits pasted into a canvas, NaN around them) rather than an axes
    per digit: the same picture, with far fewer artists to draw.
    """
    import matplotlib
    from matplotlib.figure import Figure

    rows = max(1, -(-len(images) // columns))
    label_band, gap = 16, 4  # canvas pixels above each digit for its label, and between digits
    cell_height, cell_width = label_band + IMAGE_SIDE + gap, IMAGE_SIDE + gap
    canvas = np.full((rows * cell_height, columns * cell_width), np.nan)
    inches_per_pixel, title_inches = 1.3 / cell_width, 0.4
    height = rows * cell_height * inches_per_pixel + title_inches
    figure = Figure(figsize=(columns * cell_width * inches_per_pixel, height))
    axes = figure.add_axes((0, 0, 1, 1 - title_inches / height))
    for i, (image, true, wrong, margin) in enumerate(zip(images, actual, predicted, margins)):
        top, left = (i // columns) * cell_height + label_band, (i % columns) * cell_width
        canvas[top : top + IMAGE_SIDE, left : left + IMAGE_SIDE] = image.reshape(IMAGE_SIDE, IMAGE_SIDE)
        axes.text(left + IMAGE_SIDE / 2, top - 1, f"true {true}, predicted {wrong}\nby {margin:.2f}",
                  ha="center", va="bottom", fontsize=8)
    colours = matplotlib.colormaps["gray_r"].with_extremes(bad="white")
    axes.imshow(canvas, cmap=colours, vmin=0, vmax=255, interpolation="nearest")
    axes.set_axis_off()
    figure.suptitle(title, y=1 - 0.1 / height, va="top")
    return figure
