"""The comparison report's pictures (experiments.compare): arrays and tables in, a matplotlib
Figure out; nothing is shown or saved here. ``table`` is compare_table.comparison_table's frame.
"""

import textwrap

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

LR_COLOURS = "viridis"


def lr_colours(table):
    """colour(lr): the same colour for a learning rate in every panel, by its place on a log
    scale."""
    low, high = table["lr"].min(), table["lr"].max()
    norm = LogNorm(low / 2, high * 2) if low == high else LogNorm(low, high)
    cmap = colormaps[LR_COLOURS]
    return lambda lr: cmap(norm(lr))


def loss_curves_figure(table, losses, steps_per_epoch, title, variants):
    """Training loss against epochs, one panel per variant of ``variants`` that has runs, one
    line per run coloured by its learning rate, log loss axis. ``losses``: the logged per-step
    means (run_id, step, value). A diverged run ends in a red cross at the loss that blew up."""
    variants = [v for v in variants if v in set(table["variant"])]
    columns = min(len(variants), 4)
    rows = -(-len(variants) // columns)
    figure = Figure(figsize=(5.2 * columns, 4.4 * rows), layout="constrained")
    figure.suptitle(textwrap.fill(title, 110), fontsize="medium")
    panels = figure.subplots(rows, columns, squeeze=False, sharey=True).ravel()
    for unused in panels[len(variants):]:
        unused.set_visible(False)
    colour = lr_colours(table)
    for axes, variant in zip(panels, variants):
        for run in table[table["variant"] == variant].itertuples():
            curve = losses[(losses["run_id"] == run.run_id) & np.isfinite(losses["value"])]
            epochs = curve["step"] / steps_per_epoch[run.run_id]
            axes.plot(epochs, curve["value"], color=colour(run.lr), lw=1.2, label=f"lr {run.lr:g}")
            if run.outcome == "diverged" and len(curve):
                axes.plot(epochs.iloc[-1], curve["value"].iloc[-1], "x", color="red", ms=8, mew=2)
        axes.set_yscale("log")
        axes.set_title(variant)
        axes.set_xlabel("epoch")
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize="x-small", ncols=2, title="× diverged", title_fontsize="x-small")
    for axes in panels[::columns]:
        axes.set_ylabel("training loss  (the model's, per logged step)")
    return figure


def accuracy_figure(table, title, variants):
    """Test (solid) and validation (dashed) accuracy against the learning rate, log axis, a
    line per variant through the mean of its runs at each rate; diverged runs crossed in red;
    the linear variant's stability limit dotted."""
    figure = Figure(figsize=(7.5, 4.6), layout="constrained")
    axes = figure.add_subplot()
    for position, variant in enumerate(variants):
        colour = f"C{position}"
        runs = table[table["variant"] == variant]
        if runs.empty:
            continue
        means = runs.groupby("lr")[["test_accuracy", "val_accuracy"]].mean()
        axes.plot(means.index, means["test_accuracy"], "o-", color=colour, label=f"{variant}, test")
        axes.plot(means.index, means["val_accuracy"], "s--", color=colour, mfc="none", alpha=0.7, label=f"{variant}, validation")
    diverged = table[table["outcome"] == "diverged"]
    if len(diverged):
        axes.plot(diverged["lr"], diverged["test_accuracy"].fillna(diverged["val_accuracy"]), "x", color="red", ms=10, mew=2, label="diverged")
    for limit in table["max_stable_lr"].dropna().unique():
        axes.axvline(limit, color="C1", ls=":", lw=1.5, label=f"linear: stable below {limit:.3g}")
    axes.set_xscale("log")
    axes.set_ylim(0, 1)
    axes.yaxis.set_major_formatter(lambda value, _: f"{value:.0%}")
    axes.set_xlabel("learning rate")
    axes.set_ylabel("accuracy")
    axes.set_title(textwrap.fill(title, 80), fontsize="medium")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small")
    return figure
