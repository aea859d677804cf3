"""The comparison's table (experiments.compare): one row per training run, built from the frame
``mlflow.search_runs`` returns, and its readable forms (aligned text, Markdown). A run's model is
its variant's name plus the settings it changed from that variant's defaults in conf/
(``changed_settings``, ``model_label``).
"""

from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from pipeline.model import VARIANTS
from pipeline.tracking import schema
from pipeline.variants import FIELDS

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
# The settings a run of a variant may change, shown where they differ from the variant's own.
SETTINGS = tuple(f"model.{field}" for field in FIELDS if field != "name") + ("optim.weight_decay",)
# The columns of comparison.csv; the terminal and Markdown tables show them formatted.
COLUMNS = ("variant", "changes", "lr", "outcome", "epochs", "epochs_planned", "diverged_at_step", "train_loss",
           "val_accuracy", "test_accuracy", "seconds", "max_stable_lr", "run_id", "run_name", "dvc_exp_name")
WORDS = ("model", "outcome", "run")  # left-aligned columns of the readable table


# --- the runs' columns -----------------------------------------------------------------------


def column(frame, name):
    """A column of mlflow.search_runs' frame, all NaN when no run has it."""
    return frame[name] if name in frame else pd.Series(np.nan, index=frame.index, dtype=object)


def tag(frame, key):
    return column(frame, f"tags.{key}")


def param(frame, key):
    return column(frame, f"params.{key}")


def metric(frame, key):
    return pd.to_numeric(column(frame, f"metrics.{key}"))


# --- the table -------------------------------------------------------------------------------


def comparison_table(runs, epochs_done):
    """One row per run (COLUMNS), sorted by variant, then learning rate, then start.

    ``outcome``: trained, diverged, running, or MLflow's status otherwise (failed, killed).
    ``epochs``: epochs completed (so far), from ``epochs_done`` (by run id; a run missing there
    completed none). ``train_loss`` and ``val_accuracy``: the last points of the run's curves,
    the last epoch's mean batch loss and its W's validation accuracy (a diverged run's: those of
    the W it stopped with); for a run still going, its latest epoch's. ``seconds``: the run's wall
    time (NaN while running).
    """
    diverged = tag(runs, schema.DIVERGED) == "true"
    status = runs["status"].str.lower()
    table = pd.DataFrame({
        "variant": tag(runs, schema.VARIANT),
        "lr": pd.to_numeric(param(runs, schema.LR)),
        "outcome": np.where(diverged, "diverged", np.where(status == "finished", "trained", status)),
        "epochs": runs["run_id"].map(epochs_done).fillna(0).astype(int),
        "epochs_planned": pd.to_numeric(param(runs, schema.EPOCHS)),
        "diverged_at_step": pd.to_numeric(tag(runs, schema.DIVERGED_AT_STEP)),
        "train_loss": metric(runs, schema.TRAIN_LOSS_EPOCH),
        "val_accuracy": metric(runs, schema.VAL_ACCURACY),
        "test_accuracy": metric(runs, schema.TEST_ACCURACY),
        "seconds": (pd.to_datetime(runs["end_time"], utc=True) - runs["start_time"]).dt.total_seconds(),
        "max_stable_lr": metric(runs, schema.MAX_STABLE_LR),
        "run_id": runs["run_id"],
        "run_name": tag(runs, schema.RUN_NAME),
        "dvc_exp_name": tag(runs, schema.DVC_EXP_NAME),
        "start_time": runs["start_time"],
    })
    table.insert(1, "changes", changed_settings(runs))
    order = {variant: position for position, variant in enumerate(VARIANTS)}  # the design's two first
    key = table["variant"].map(lambda name: (order.get(name, len(order)), str(name)))
    table = table.assign(order=key).sort_values(["order", "changes", "lr", "start_time"]).drop(columns="order")
    return table[list(COLUMNS)].reset_index(drop=True)


def variant_defaults(name):
    """The settings (SETTINGS) conf/ gives the variant ``name``: conf/model/base.yaml and
    <name>.yaml, conf/optim/sgd.yaml and <name>.yaml. {} for a name conf/ does not have."""
    model_file, optim_file = CONF_DIR / "model" / f"{name}.yaml", CONF_DIR / "optim" / f"{name}.yaml"
    if not isinstance(name, str) or not model_file.is_file():
        return {}
    model = OmegaConf.merge(OmegaConf.load(CONF_DIR / "model" / "base.yaml"), OmegaConf.load(model_file))
    optim = OmegaConf.merge(OmegaConf.load(CONF_DIR / "optim" / "sgd.yaml"), OmegaConf.load(optim_file) if optim_file.is_file() else {})
    values = {**{f"model.{k}": v for k, v in model.items()}, **{f"optim.{k}": v for k, v in optim.items()}}
    return {key: str(values.get(key)) for key in SETTINGS}


def changed_settings(runs):
    """Per run, ``key=value`` for each of SETTINGS its params hold with another value than its
    variant's defaults (the key without its group: ``bias=False``); "" for none."""
    defaults = {name: variant_defaults(name) for name in set(tag(runs, schema.VARIANT).dropna())}
    changes = []
    for name, (_, run) in zip(tag(runs, schema.VARIANT), runs.iterrows()):
        own = defaults.get(name, {})
        changed = [f"{key.split('.', 1)[1]}={run.get(f'params.{key}')}" for key in SETTINGS
                   if own and isinstance(run.get(f"params.{key}"), str) and run.get(f"params.{key}") != own[key]]
        changes.append(" ".join(changed))
    return changes


def model_label(table):
    """A run's model: its variant's name, and what it changed (``mlp hidden=256``)."""
    return (table["variant"].astype(str) + " " + table["changes"].fillna("")).str.strip()


def steps_per_epoch(runs):
    """Updates per epoch of each run, by run id: ⌈training rows / batch size⌉."""
    rows = pd.to_numeric(param(runs, schema.TRAIN_ROWS))
    batch = np.minimum(pd.to_numeric(param(runs, schema.BATCH_SIZE)), rows)
    return pd.Series(np.ceil(rows / batch).to_numpy(), index=runs["run_id"].to_numpy())


# --- readable forms --------------------------------------------------------------------------


def readable(table):
    """The table as strings: percentages, a few significant digits, "-" for what is unknown."""
    def number(format_spec):
        return lambda value: "-" if pd.isna(value) else format(value, format_spec)

    return pd.DataFrame({
        "model": model_label(table),
        "lr": table["lr"].map(number("g")),
        "outcome": [f"DIVERGED at step {int(step):,}" if outcome == "diverged" else outcome
                    for outcome, step in zip(table["outcome"], table["diverged_at_step"])],
        "epochs": [f"{number('.0f')(done)}/{number('.0f')(planned)}" for done, planned in zip(table["epochs"], table["epochs_planned"])],
        "train loss": table["train_loss"].map(number(".4g")),
        "val acc": table["val_accuracy"].map(number(".1%")),
        "test acc": table["test_accuracy"].map(number(".1%")),
        "seconds": table["seconds"].map(number(".1f")),
        "run": table["dvc_exp_name"].fillna(table["run_id"].str[:8]),  # a DVC experiment by its name
    })


def plain_text(frame):
    """A frame of strings as aligned columns: words left, numbers right."""
    widths = [max(len(name), *map(len, frame[name])) for name in frame.columns]

    def line(cells):
        return "  ".join(c.ljust(w) if name in WORDS else c.rjust(w) for c, w, name in zip(cells, widths, frame.columns)).rstrip()

    return "\n".join([line(frame.columns), *map(line, frame.itertuples(index=False))])


def markdown(frame):
    """A frame of strings as a GitHub-flavoured Markdown table: words left, numbers right."""
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "|".join(":---" if name in WORDS else "---:" for name in frame.columns) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def stability_note(table):
    """What the linear runs logged as their largest stable learning rate, if they did."""
    limits = table["max_stable_lr"].dropna().unique()
    if len(limits) == 0:
        return ""
    shown = ", ".join(dict.fromkeys(f"{limit:.3g}" for limit in limits))  # with a bias or decay: others
    return f"linear: full-batch gradient descent is stable below lr {shown} (2/λ_max of the data)"
