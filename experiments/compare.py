"""python -m experiments.compare: the runs of a sweep (or of an experiment) side by side.

    python -m experiments.compare                      # the latest sweep in the MLflow store
    python -m experiments.compare --sweep <id>         # a sweep, by the id it printed
    python -m experiments.compare --experiment NAME    # every training run of an experiment

Reads the runs (``mlflow.search_runs``) and their loss histories from MLflow, through
pipeline.tracking, and writes into ``--out`` (default ``comparisons/<sweep or experiment>/``),
each file atomically:

    comparison.csv        one row per run: variant, the model fields it changed, lr, outcome, epochs,
                          losses, accuracies, time
    comparison.md         the same table, readable, for a report or a pull request
    loss_curves.png       training loss against epochs, one panel per model, coloured by lr
    accuracy_vs_lr.png    validation and test accuracy against the learning rate, every model

A run's model is its variant's name (model.name) plus the model fields, and the weight decay,
that differ from that variant's own defaults in conf/ (``softmax_ce bias=False``,
``mlp hidden=256 weight_decay=0.001``): the runs of one name with other settings are another
model, in their own rows, panels and lines.

It prints the table, and logs the four files under ``comparison/`` into the sweep's own run (or,
for an experiment, into a run tagged ``comparison.of``), so the comparison is in MLflow's UI too.
A diverged run is in it as such; a sweep still running shows the runs so far, as far as they
got. Exit status: 0 compared; 1 nothing to compare (no such sweep or experiment, no runs).
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from experiments.compare_figures import accuracy_figure, loss_curves_figure
from pipeline import tracking
from pipeline.files import atomic_write
from pipeline.model import VARIANTS
from pipeline.variants import FIELDS
from pipeline.tracking import reports, schema

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
TRACKING_CONFIG = CONF_DIR / "tracking" / "mlflow.yaml"
# The settings a run of a variant may change, shown where they differ from the variant's own.
SETTINGS = tuple(f"model.{field}" for field in FIELDS if field != "name") + ("optim.weight_decay",)
ARTIFACT_DIR = schema.COMPARISON_DIR
# The columns of comparison.csv; the terminal and Markdown tables show them formatted.
COLUMNS = ("variant", "changes", "lr", "outcome", "epochs", "epochs_planned", "diverged_at_step", "train_loss",
           "val_accuracy", "test_accuracy", "seconds", "max_stable_lr", "run_id", "run_name", "dvc_exp_name")
WORDS = ("model", "outcome", "run")  # left-aligned columns of the readable table


class NothingToCompare(Exception):
    pass


def main(argv=None):
    args = parse_arguments(argv)
    uri = tracking.resolve_uri(OmegaConf.load(TRACKING_CONFIG).uri)
    try:
        selection = select(uri, args.sweep, args.experiment)
    except (NothingToCompare, tracking.TrackingError) as error:
        print(f"nothing to compare: {error}", file=sys.stderr)
        return 1
    run_ids = selection.runs["run_id"]
    epochs_done = reports.metric_histories(uri, run_ids, schema.VAL_ACCURACY).groupby("run_id")["step"].max()
    table = comparison_table(selection.runs, epochs_done)
    losses = reports.metric_histories(uri, run_ids, schema.TRAIN_LOSS)
    out = Path(args.out or Path("comparisons") / selection.label)
    files = write_report(out, table, losses, steps_per_epoch(selection.runs), selection.title)
    summary_run = reports.log_summary(uri, files, ARTIFACT_DIR, **selection.summary_run)

    note = stability_note(table)
    print(selection.title, plain_text(readable(table)), *([note] if note else []), sep="\n")
    print(f"\n{len(table)} runs; {', '.join(str(path) for path in files)}")
    print(f"in MLflow under {ARTIFACT_DIR}/ of run {summary_run}: {tracking.how_to_open(uri, selection.experiment_id)}")
    return 0


def parse_arguments(argv):
    parser = argparse.ArgumentParser(prog="python -m experiments.compare", description=__doc__.split("\n")[0])
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument("--sweep", metavar="ID", help="the sweep's id (its MLflow run id); default: the latest sweep")
    chosen.add_argument("--experiment", metavar="NAME", help="every training run of this MLflow experiment")
    parser.add_argument("--out", metavar="DIR", help="where to write the report (default comparisons/<sweep or experiment>/)")
    return parser.parse_args(argv)


# --- which runs ------------------------------------------------------------------------------


class Selection:
    """The training runs to compare, what to call them, and where their summary goes."""

    def __init__(self, label, title, found, summary_run):
        self.runs = found[tag(found, schema.VARIANT).notna() & param(found, schema.LR).notna()]
        if self.runs.empty:
            raise NothingToCompare(f"{title} has no training runs (yet)")
        self.label, self.title = label, title
        self.experiment_id = self.runs["experiment_id"].iloc[0]
        self.summary_run = summary_run or tagged_summary_run(found, self.experiment_id, label)


def select(uri, sweep_id=None, experiment=None):
    """The runs of sweep ``sweep_id``, of experiment ``experiment`` or, with neither, of the latest
    sweep. Raises NothingToCompare when there are none."""
    if experiment is not None:
        return Selection(f"experiment-{experiment}", f"experiment {experiment}", reports.search_runs(uri, experiment_name=experiment), None)
    if sweep_id is None:
        sweeps = reports.search_runs(uri, f"tags.`{schema.SWEEP_PARENT}` = 'true'")
        if sweeps.empty:
            raise NothingToCompare(f"no sweep in {uri}: run one with  python -m pipeline.train -m +experiment=variant_vs_lr")
        sweep_id = sweeps.sort_values("start_time")["run_id"].iloc[-1]
    if not sweep_id.isalnum():
        raise NothingToCompare(f"{sweep_id!r} is not a sweep id (the run id a sweep prints: 32 hex digits)")
    found = reports.search_runs(uri, f"tags.`{schema.SWEEP_ID}` = '{sweep_id}'")
    if found.empty:
        raise NothingToCompare(f"no sweep {sweep_id} in {uri}")
    parent = found[tag(found, schema.SWEEP_PARENT) == "true"]
    if parent.empty:  # the sweep's own run was deleted
        return Selection(f"sweep-{sweep_id}", f"sweep {sweep_id}", found, None)
    sweep = parent.iloc[0]
    title = f"sweep {sweep_id} ({sweep['status'].lower()}): {sweep.get(f'params.{schema.SWEEP_GRID}', '')}"
    return Selection(f"sweep-{sweep_id}", title, found, {"run_id": sweep_id})


def tagged_summary_run(found, experiment_id, label):
    """tracking.log_summary's arguments for the run of ``found`` tagged ``comparison.of=label``,
    or for a new one so tagged: the summary of a selection without a sweep run."""
    existing = found[tag(found, schema.COMPARISON_OF) == label]
    if len(existing):
        return {"run_id": existing["run_id"].iloc[0]}
    tags = {schema.COMPARISON_OF: label, **({schema.SWEEP_ID: label.removeprefix("sweep-")} if label.startswith("sweep-") else {})}
    return {"experiment_id": experiment_id, "run_name": f"comparison of {label}", "tags": tags}


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
    completed none). Losses and accuracies are the final W's; for a run still going, its latest
    epoch's. ``seconds``: the run's wall time (NaN while running).
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
        "train_loss": metric(runs, schema.final("train.loss")).fillna(metric(runs, schema.TRAIN_LOSS_EPOCH)),
        "val_accuracy": metric(runs, schema.final("val.accuracy")).fillna(metric(runs, schema.VAL_ACCURACY)),
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


def steps_per_epoch(runs):
    """Updates per epoch of each run, by run id: ⌈training rows / batch size⌉."""
    rows = pd.to_numeric(param(runs, schema.TRAIN_ROWS))
    batch = np.minimum(pd.to_numeric(param(runs, schema.BATCH_SIZE)), rows)
    return pd.Series(np.ceil(rows / batch).to_numpy(), index=runs["run_id"].to_numpy())


def stability_note(table):
    """What the linear runs logged as their largest stable learning rate, if they did."""
    limits = table["max_stable_lr"].dropna().unique()
    if len(limits) == 0:
        return ""
    shown = ", ".join(dict.fromkeys(f"{limit:.3g}" for limit in limits))  # with a bias or decay: others
    return f"linear: full-batch gradient descent is stable below lr {shown} (2/λ_max of the data)"


# --- the report ------------------------------------------------------------------------------


def write_report(out, table, losses, steps_per_epoch, title):
    """comparison.csv, comparison.md, loss_curves.png, accuracy_vs_lr.png in ``out``, each
    written to a temporary file and renamed into place; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    note = stability_note(table)
    contents = {
        "comparison.csv": table.to_csv(index=False).encode(),
        "comparison.md": (f"# {title}\n\n" + markdown(readable(table)) + (f"\n{note}\n" if note else "")).encode(),
    }
    # The figures draw one panel (line) per model: a variant with other settings is another.
    by_model = table.assign(variant=model_label(table))
    models = list(dict.fromkeys(by_model["variant"]))
    figures = {
        "loss_curves.png": loss_curves_figure(by_model, losses, steps_per_epoch, title, models),
        "accuracy_vs_lr.png": accuracy_figure(by_model, title, models),
    }
    for name, content in contents.items():
        with atomic_write(out / name) as f:
            f.write(content)
    for name, figure in figures.items():
        with atomic_write(out / name) as f:
            figure.savefig(f, format="png", dpi=100)
    return [out / name for name in (*contents, *figures)]


if __name__ == "__main__":
    sys.exit(main())
