"""Pictures of training: W's rows as digit templates, and the loss curves. Pure: arrays in, an
RGB array or a matplotlib Figure out; nothing is shown or saved here.

Figures are built with matplotlib's object API (``matplotlib.figure.Figure``), which renders
with Agg and needs neither pyplot's global state nor a display.
"""

import functools

import matplotlib
import numpy as np
from matplotlib import ticker
from matplotlib.figure import Figure

from pipeline.constants import IMAGE_SIDE

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


def parameter_images(params):
    """The pictures of a model's weight matrices, {image key: RGB array}: a single layer's W as
    ten digit templates (``templates_image``); a hidden layer's W1 as the templates of its first
    HIDDEN_UNITS_SHOWN units, ten to a row, and W2 as a heat map. Biases are not pictured."""
    if "W" in params:
        return {"W": templates_image(params["W"])}
    return {"W1": templates_image(params["W1"][:HIDDEN_UNITS_SHOWN], zoom=2, columns=10), "W2": heatmap_image(params["W2"])}


@functools.cache
def _template_colours():
    """TEMPLATE_COLORMAP as a (COLOUR_LEVELS, 3) uint8 table: indexing it is far cheaper than
    calling the colormap on every pixel of every snapshot."""
    colours = matplotlib.colormaps[TEMPLATE_COLORMAP](np.linspace(0, 1, COLOUR_LEVELS))[:, :3]
    return np.round(colours * 255).astype(np.uint8)


def loss_curve_figure(history, step_loss_steps, step_losses, steps_per_epoch, title, floor=None, diverged_at=None):
    """Training and validation loss against epochs, log scale.

    ``history`` rows have ``epoch``, ``train_loss`` and ``val_loss``; ``step_losses`` are the
    logged per-step losses at global steps ``step_loss_steps``. ``floor``: the least-squares
    loss (linear variant), drawn as a dashed line. ``diverged_at``: the step training stopped.
    Non-finite values are left out (a log axis cannot place them); with no positive finite loss
    at all (a run whose loss went NaN at once) the axis stays linear and says so.
    """
    figure = Figure(figsize=(7, 4.2))
    # Fixed margins: a constrained layout costs several extra layout passes per drawing.
    axes = figure.add_axes((0.11, 0.12, 0.86, 0.8))
    epochs_of_steps = np.asarray(step_loss_steps, dtype=float) / steps_per_epoch
    curves = [_finite(step_losses), _finite([row["train_loss"] for row in history]), _finite([row["val_loss"] for row in history])]
    axes.plot(epochs_of_steps, curves[0], color="0.7", lw=1, label="train, per step")
    epochs = [row["epoch"] for row in history]
    axes.plot(epochs, curves[1], "o-", ms=3, label="train, epoch mean")
    axes.plot(epochs, curves[2], "s-", ms=3, label="validation")
    if floor is not None:
        axes.axhline(floor, color="k", ls="--", lw=1, label=f"least-squares floor {floor:.4g}")
    if diverged_at is not None:
        axes.axvline(diverged_at / steps_per_epoch, color="red", lw=1, label=f"diverged at step {diverged_at}")
    if any(np.any(curve > 0) for curve in curves):
        axes.set_yscale("log")
        plain = ticker.FuncFormatter(lambda value, _: f"{value:g}")  # 0.06, not 6×10⁻²
        axes.yaxis.set_major_formatter(plain)
        axes.yaxis.set_minor_formatter(plain)
    else:
        axes.text(0.5, 0.5, "no finite positive loss to draw", transform=axes.transAxes, ha="center", va="center")
    axes.set_xlabel("epoch")
    axes.set_ylabel("loss  (the variant's, mean over rows)")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small")
    return figure


def _finite(values):
    values = np.asarray(values, dtype=float)
    return np.where(np.isfinite(values), values, np.nan)


def confusion_figure(confusion, title):
    """The confusion matrix ``C[actual, predicted]`` as a heatmap, each cell showing its count.

    Colour is the share of the actual digit's test images (the row), so the mistakes of a rare
    and a common digit read alike; the diagonal is each digit's recall.
    """
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
