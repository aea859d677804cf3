"""The loss curve of a training run: the per-step, epoch-mean and validation losses against
epochs on a log axis, the least-squares floor and the step a diverged run stopped at.

Pure: lists in, an RGB uint8 array out. Drawn with Pillow alone, like pipeline.w_picture: every
tracked training draws one, and matplotlib's import and figure machinery cost more than the run
it pictures.
"""

import math

import numpy as np
from PIL import Image, ImageDraw

from pipeline.w_picture import BACKGROUND, INK, text_font, vertical_text

WIDTH, HEIGHT = 700, 420
PLOT = (78, 34, 682, 370)  # left, top, right, bottom of the axes
TEXT = 12
GRID = (230, 230, 230)
STEP_GREY = (179, 179, 179)
TRAIN, VALIDATION, DIVERGED = (31, 119, 180), (255, 127, 14), (214, 39, 40)
NO_LOSS = "no finite positive loss to draw"


def loss_curve_picture(history, step_loss_steps, step_losses, steps_per_epoch, title, floor=None, diverged_at=None):
    """Training and validation loss against epochs, log scale, as an RGB array (HEIGHT, WIDTH, 3).

    ``history`` rows have ``epoch``, ``train_loss`` and ``val_loss``; ``step_losses`` are the
    logged per-step losses at global steps ``step_loss_steps``. ``floor``: the least-squares
    loss (linear variant), a dashed line. ``diverged_at``: the step training stopped, a red line.
    Non-finite values are left out (a log axis cannot place them); with no positive finite loss
    at all (a run whose loss went NaN at once) the axis stays linear and says so.
    """
    epochs = [row["epoch"] for row in history]
    series = [  # (label, x, y, colour, marker)
        ("train, per step", np.asarray(step_loss_steps, dtype=float) / steps_per_epoch, step_losses, STEP_GREY, None),
        ("train, epoch mean", epochs, [row["train_loss"] for row in history], TRAIN, "o"),
        ("validation", epochs, [row["val_loss"] for row in history], VALIDATION, "s"),
    ]
    series = [(label, np.asarray(x, dtype=float), np.asarray(y, dtype=float), colour, marker) for label, x, y, colour, marker in series]
    ys = np.concatenate([y for *_, y, _, _ in series] + [np.array([] if floor is None else [floor], dtype=float)])
    positive = ys[np.isfinite(ys) & (ys > 0)]
    log = positive.size > 0
    xs = np.concatenate([x for _, x, *_ in series] + [np.array([] if diverged_at is None else [diverged_at / steps_per_epoch])])
    x_span = _padded(0.0 if xs.size == 0 else xs.min(initial=0.0), max(1.0, xs.max(initial=1.0)))
    y_span = _padded(*np.log10([positive.min(), positive.max()])) if log else (0.0, 1.0)

    canvas = Image.new("RGB", (WIDTH, HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = text_font(TEXT)
    left, top, right, bottom = PLOT

    def at(x, y):
        """Canvas pixel of a data point (x in epochs, y a loss)."""
        fy = (math.log10(y) if log else y)
        return (left + (x - x_span[0]) / (x_span[1] - x_span[0]) * (right - left),
                bottom - (fy - y_span[0]) / (y_span[1] - y_span[0]) * (bottom - top))

    for x in _x_ticks(*x_span):
        px = at(x, 1.0)[0]
        draw.line((px, top, px, bottom), fill=GRID)
        draw.text((px, bottom + 4), f"{x:g}", font=font, fill=INK, anchor="mt")
    for y in _y_ticks(*y_span) if log else ():
        py = at(1.0, y)[1]
        draw.line((left, py, right, py), fill=GRID)
        draw.text((left - 5, py), f"{y:g}", font=font, fill=INK, anchor="rm")
    if not log:
        draw.text(((left + right) / 2, (top + bottom) / 2), NO_LOSS, font=font, fill=INK, anchor="mm")

    legend = []
    for label, x, y, colour, marker in series:
        keep = np.isfinite(y) & (y > 0) if log else np.zeros_like(y, dtype=bool)
        _polyline(draw, [at(a, b) if k else None for a, b, k in zip(x, y, keep)], colour, width=1 if marker is None else 2)
        for a, b, k in zip(x, y, keep):
            if k and marker:
                _marker(draw, at(a, b), marker, colour)
        legend.append((label, colour, marker, False))
    if floor is not None and log and floor > 0:
        py = at(1.0, floor)[1]
        for start in range(left, right, 10):
            draw.line((start, py, min(start + 5, right), py), fill=INK, width=1)
    if floor is not None:
        legend.append((f"least-squares floor {floor:.4g}", INK, None, True))
    if diverged_at is not None:
        px = at(diverged_at / steps_per_epoch, 1.0)[0]
        draw.line((px, top, px, bottom), fill=DIVERGED, width=1)
        legend.append((f"diverged at step {diverged_at}", DIVERGED, None, False))

    draw.rectangle((left, top, right, bottom), outline=INK)
    draw.text(((left + right) / 2, top - 10), title, font=text_font(TEXT + 2), fill=INK, anchor="ms")
    draw.text(((left + right) / 2, HEIGHT - 8), "epoch", font=font, fill=INK, anchor="ms")
    vertical_text(canvas, "loss  (the variant's, mean over rows)", font, centre=(16, (top + bottom) / 2))
    _legend(draw, legend, font, right - 8, top + 8)
    return np.asarray(canvas)


def _padded(low, high, share=0.05):
    """``[low, high]`` widened by ``share`` of its span on each side (a span of 0 by 1)."""
    span = high - low or 1.0
    return low - share * span, high + share * span


def _x_ticks(low, high):
    """Round epoch values across ``[low, high]``: steps of 1, 2 or 5 times a power of ten, at
    most about eight of them."""
    raw = (high - low) / 8
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return [k * step for k in range(math.ceil(low / step), math.floor(high / step) + 1)]


def _y_ticks(low, high):
    """Loss values for a log axis spanning ``[10**low, 10**high]``: every 1, 2 and 5 of each
    decade, with 3 and 4 too when the axis spans less than a decade, or only the powers of ten
    when it spans many."""
    decades = high - low
    mantissas = (1,) if decades > 6 else (1, 2, 5) if decades > 1 else (1, 2, 3, 4, 5, 6, 8)
    ticks = [m * 10.0**p for p in range(math.floor(low), math.ceil(high) + 1) for m in mantissas]
    return [t for t in ticks if low <= math.log10(t) <= high]


def _polyline(draw, points, colour, width):
    """Lines joining consecutive points; None (a value left out) breaks the line."""
    run = []
    for point in points + [None]:
        if point is None:
            if len(run) > 1:
                draw.line(run, fill=colour, width=width, joint="curve")
            run = []
        else:
            run.append(point)


def _marker(draw, point, shape, colour, radius=3):
    x, y = point
    box = (x - radius, y - radius, x + radius, y + radius)
    (draw.ellipse if shape == "o" else draw.rectangle)(box, fill=colour)


def _legend(draw, entries, font, right, top):
    """A framed box in the top right corner: each entry's line (dashed for the floor, with its
    marker) and label."""
    line_height, swatch = TEXT + 6, 24
    width = swatch + 6 + max(font.getlength(label) for label, *_ in entries) + 12
    left = right - width
    draw.rectangle((left, top, right, top + line_height * len(entries) + 6), fill=BACKGROUND, outline=GRID)
    for row, (label, colour, marker, dashed) in enumerate(entries):
        y = top + 4 + line_height * row + line_height / 2
        x0, x1 = left + 6, left + 6 + swatch
        for start in range(int(x0), int(x1), 6 if dashed else swatch):
            draw.line((start, y, min(start + (3 if dashed else swatch), x1), y), fill=colour, width=1 if colour == STEP_GREY else 2)
        if marker:
            _marker(draw, ((x0 + x1) / 2, y), marker, colour)
        draw.text((x1 + 6, y), label, font=font, fill=INK, anchor="lm")

