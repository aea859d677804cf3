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

It prints the table, and logs the four files under ``comparison/`` into the sweep's own run, so
the comparison is in MLflow's UI too; the comparison of an experiment (or of a sweep whose own run
is gone) goes into a run of the separate experiment ``comparisons``, tagged ``comparison.of``, so
that it never joins the runs it compares.
A diverged run is in it as such; a sweep still running shows the runs so far, as far as they
got. Exit status: 0 compared; 1 nothing to compare (no such sweep or experiment, no runs).
"""

import argparse
import sys
from pathlib import Path

from omegaconf import OmegaConf

from experiments.compare_figures import accuracy_figure, loss_curves_figure
from experiments.compare_table import (
    CONF_DIR, comparison_table, markdown, model_label, param, plain_text, readable, stability_note, steps_per_epoch, tag,
)
from pipeline import tracking
from pipeline.files import atomic_write
from pipeline.tracking import reports, schema

TRACKING_CONFIG = CONF_DIR / "tracking" / "mlflow.yaml"
ARTIFACT_DIR = schema.COMPARISON_DIR


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
    # One time/epoch_seconds per completed epoch (a diverged run's curves have one more point).
    epochs_done = reports.metric_histories(uri, run_ids, schema.EPOCH_SECONDS).groupby("run_id")["step"].max()
    table = comparison_table(selection.runs, epochs_done)
    losses = reports.metric_histories(uri, run_ids, schema.TRAIN_LOSS)
    out = Path(args.out or Path("comparisons") / selection.label)
    files = write_report(out, table, losses, steps_per_epoch(selection.runs), selection.title)
    run_id, experiment_id = reports.log_summary(uri, files, ARTIFACT_DIR, **selection.summary_run)

    note = stability_note(table)
    print(selection.title, plain_text(readable(table)), *([note] if note else []), sep="\n")
    print(f"\n{len(table)} runs; {', '.join(str(path) for path in files)}")
    print(f"in MLflow, {ARTIFACT_DIR}/ of run {run_id}: {tracking.run_page(uri, experiment_id, run_id, f'artifacts/{ARTIFACT_DIR}')}")
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
        self.summary_run = summary_run or comparison_run(label)


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


def comparison_run(label):
    """reports.log_summary's arguments for the run of experiment ``comparisons`` tagged
    ``comparison.of=label`` (made if absent): the report of a selection without a sweep run."""
    return {"experiment_name": schema.COMPARISONS_EXPERIMENT, "run_name": label, "tags": {schema.COMPARISON_OF: label}}


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
