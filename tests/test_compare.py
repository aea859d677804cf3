"""The comparison report on a real sweep (conftest's ``swept``: made once for the session, in a
subprocess, on the synthetic digits of conftest) in a real MLflow store; ``experiments.compare.main``
in-process."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgba

from experiments import compare, compare_figures, compare_table
from experiments.sweep import SweepCallback
from pipeline.model import VARIANTS
from pipeline.tracking import reports, schema
from tests.helpers import job_folders, split_runs

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# The tests that read conftest's shared sweep: on the worker that makes it (test_sweep's reads it too).
SWEPT = pytest.mark.xdist_group("swept")


@pytest.fixture
def store(swept, tmp_path, mlflow_store):
    """This test's own copy of the store of conftest's shared sweep (the artifacts stay where the
    sweep put them)."""
    shutil.copyfile(swept / "store" / "mlflow.db", mlflow_store.path)
    return mlflow_store


def sweep_runs(store):
    return split_runs([r for r in store.runs() if schema.COMPARISON_OF not in r.data.tags])


@pytest.mark.slow
@SWEPT
def test_the_table_is_what_every_job_logged_and_wrote(swept, store, tmp_path, capsys):
    parent, jobs = sweep_runs(store)
    out = tmp_path / "report"

    assert compare.main(["--sweep", parent.info.run_id, "--out", str(out)]) == 0

    table = pd.read_csv(out / "comparison.csv")
    assert list(table.columns) == list(compare_table.COLUMNS)
    assert list(zip(table["variant"], table["lr"])) == [("softmax", 0.002), ("softmax", 10), ("linear", 0.002), ("linear", 10)]
    folders = job_folders(swept)
    for row in table.itertuples():
        [run] = [r for r in jobs if r.info.run_id == row.run_id]
        folder = folders[int(run.data.tags["hydra.job.num"])]
        metrics = json.loads((folder / "metrics.json").read_text())
        history = pd.read_csv(folder / "history.csv")
        assert row.outcome == ("diverged" if metrics["diverged"] else "trained")
        assert row.epochs == metrics["epochs"] == len(history) and row.epochs_planned == 2
        # The last points of the curves: the last epoch's mean loss, or the W a diverged run stopped with.
        last_loss = metrics["train"]["loss"] if metrics["diverged"] else history["train_loss"].iloc[-1]
        assert row.train_loss == pytest.approx(last_loss, rel=1e-12)
        assert row.val_accuracy == metrics["val"]["accuracy"]
        assert row.test_accuracy == json.loads((folder / "test_metrics.json").read_text())["test"]["accuracy"]
        assert row.seconds == pytest.approx((run.info.end_time - run.info.start_time) / 1000, abs=1e-9)
        assert (row.max_stable_lr > 0) == (row.variant == "linear")
    diverged = table[table["outcome"] == "diverged"]
    assert list(diverged["variant"]) == ["linear"] and diverged["diverged_at_step"].iloc[0] >= 0

    printed = capsys.readouterr().out
    assert printed.startswith(f"sweep {parent.info.run_id} (finished): ")
    assert printed.endswith(f"in MLflow, comparison/ of run {parent.info.run_id}: http://127.0.0.1:5000/#/experiments/"
                            f"{parent.info.experiment_id}/runs/{parent.info.run_id}/artifacts/comparison?workflowType=machine_learning\n")
    assert "DIVERGED at step" in printed and "linear: full-batch gradient descent is stable below lr" in printed
    markdown = (out / "comparison.md").read_text().splitlines()
    assert markdown[2] == "| model | lr | outcome | epochs | train loss | val acc | test acc | seconds | run |"
    assert table["changes"].isna().all()  # each run with its variant's own settings (empty in the CSV)
    assert len([line for line in markdown if line.startswith("| softmax") or line.startswith("| linear")]) == 4
    assert all((out / name).read_bytes().startswith(PNG_SIGNATURE) for name in ("loss_curves.png", "accuracy_vs_lr.png"))


@pytest.mark.slow
@SWEPT
def test_the_report_goes_into_the_sweep_run_once(store, tmp_path):
    parent, _ = sweep_runs(store)
    runs_before = len(store.runs())

    for _ in range(2):
        assert compare.main(["--sweep", parent.info.run_id, "--out", str(tmp_path)]) == 0

    assert len(store.runs()) == runs_before
    logged = sorted(a.path for a in store.client.list_artifacts(parent.info.run_id, "comparison"))
    assert logged == [f"comparison/{name}" for name in ("accuracy_vs_lr.png", "comparison.csv", "comparison.md", "loss_curves.png")]


@pytest.mark.slow
@SWEPT
def test_an_experiment_is_compared_into_a_run_of_the_comparisons_experiment_not_into_itself(store, tmp_path):
    compared = store.client.get_experiment_by_name("handgrad").experiment_id
    runs_before = store.client.search_runs([compared])

    assert compare.main(["--experiment", "handgrad", "--out", str(tmp_path / "a")]) == 0
    assert compare.main(["--experiment", "handgrad", "--out", str(tmp_path / "b")]) == 0

    assert len(store.client.search_runs([compared])) == len(runs_before)  # no run added to what was compared
    [summary] = [r for r in store.runs() if r.data.tags.get("comparison.of") == "experiment-handgrad"]
    assert store.client.get_experiment(summary.info.experiment_id).name == "comparisons"
    assert summary.info.status == "FINISHED" and summary.info.run_name == "experiment-handgrad"
    assert len(pd.read_csv(tmp_path / "b" / "comparison.csv")) == 4
    assert len(store.client.list_artifacts(summary.info.run_id, "comparison")) == 4


def start_sweep(compose_config, tmp_path):
    """A sweep that has just started (its run made by SweepCallback, as for a real one)."""
    config = compose_config("train", ["optim.lr=0.5", f"hydra.sweep.dir={tmp_path}"], hydra_config=True)
    callback = SweepCallback()
    callback.on_multirun_start(config)
    return callback, config


@pytest.mark.slow
@SWEPT
def test_a_sweep_still_running_shows_its_runs_as_far_as_they_got(store, tmp_path, monkeypatch, capsys, compose_config):
    for name in ("MLFLOW_EXPERIMENT_ID", "HANDGRAD_SWEEP_RUN_ID"):
        monkeypatch.delenv(name, raising=False)  # restored after the test: the callback sets them
    callback, config = start_sweep(compose_config, tmp_path)
    sweep_id = callback.run.run_id
    # A job two epochs into its ten, as pipeline.train logs them.
    run_id = store.client.create_run(callback.run.experiment_id, run_name="softmax lr=0.5 bs=32",
                                     tags={"variant": "softmax", "sweep.id": sweep_id, "mlflow.parentRunId": sweep_id}).info.run_id
    for key, value in {"optim.lr": 0.5, "optim.epochs": 10, "optim.batch_size": 32, "data.train_rows": 180}.items():
        store.client.log_param(run_id, key, value)
    for step, value in ((1, 0.6), (3, 0.5), (7, 0.4), (11, 0.3)):
        store.client.log_metric(run_id, schema.TRAIN_LOSS, value, step=step)
    for epoch, accuracy in ((1, 0.5), (2, 0.7)):
        store.client.log_metric(run_id, schema.VAL_ACCURACY, accuracy, step=epoch)
        store.client.log_metric(run_id, schema.EPOCH_SECONDS, 0.1, step=epoch)
    try:
        assert compare.main(["--out", str(tmp_path / "report")]) == 0  # the latest sweep: this one
    finally:
        callback.on_multirun_end(config)

    [row] = pd.read_csv(tmp_path / "report" / "comparison.csv").itertuples()
    assert (row.variant, row.lr, row.outcome, row.epochs, row.epochs_planned) == ("softmax", 0.5, "running", 2, 10)
    assert row.val_accuracy == 0.7 and np.isnan(row.test_accuracy) and np.isnan(row.seconds)
    assert f"\nsweep {sweep_id} (running): optim.lr=0.5\n" in capsys.readouterr().out


@pytest.mark.parametrize("selection, message", [
    ([], "no sweep in sqlite:///"),
    (["--experiment", "nowhere"], "there is no MLflow experiment 'nowhere'"),
    (["--sweep", "0123abcd"], "no sweep 0123abcd in"),
    (["--sweep", "x' or '1'='1"], "is not a sweep id"),
])
def test_nothing_to_compare_says_why_and_exits_non_zero(selection, message, mlflow_store, tmp_path, capsys):
    assert compare.main([*selection, "--out", str(tmp_path / "report")]) == 1

    assert message in capsys.readouterr().err
    assert not (tmp_path / "report").exists()


@pytest.mark.parametrize("selection, message", [
    ([], "no sweep in sqlite:///"),
    (["--experiment", "nowhere"], "there is no MLflow experiment 'nowhere'"),
])
def test_where_no_store_is_there_is_nothing_to_compare_and_none_is_created(selection, message, tmp_path, monkeypatch, capsys):
    database = tmp_path / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{database}")
    assert compare.main([*selection, "--out", str(tmp_path / "report")]) == 1

    assert message in capsys.readouterr().err
    assert not database.exists() and not (tmp_path / "report").exists()


def test_a_sweep_without_jobs_yet_has_nothing_to_compare(mlflow_store, tmp_path, monkeypatch, capsys, compose_config):
    for name in ("MLFLOW_EXPERIMENT_ID", "HANDGRAD_SWEEP_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    callback, config = start_sweep(compose_config, tmp_path)
    try:
        assert compare.main(["--out", str(tmp_path / "report")]) == 1
    finally:
        callback.on_multirun_end(config)

    assert "has no training runs (yet)" in capsys.readouterr().err


# --- the pictures ------------------------------------------------------------------------------


@pytest.mark.slow
@SWEPT
def test_loss_curves_draw_every_logged_point_coloured_by_lr(store):
    _, jobs = sweep_runs(store)
    runs = reports.search_runs(store.uri, experiment_name="handgrad")
    runs = runs[runs["run_id"].isin([r.info.run_id for r in jobs])]
    table = compare_table.comparison_table(runs, pd.Series(dtype=float))
    losses = reports.metric_histories(store.uri, runs["run_id"], schema.TRAIN_LOSS)

    figure = compare_figures.loss_curves_figure(table, losses, compare_table.steps_per_epoch(runs), "title", VARIANTS)

    panels = figure.axes
    assert [axes.get_title() for axes in panels] == ["softmax", "linear"]
    for axes, variant in zip(panels, ("softmax", "linear")):
        assert axes.get_yscale() == "log"
        curves = [line for line in axes.get_lines() if line.get_label().startswith("lr ")]
        assert [line.get_label() for line in curves] == ["lr 0.002", "lr 10"]
        for line, run in zip(curves, table[table["variant"] == variant].itertuples()):
            logged = losses[losses["run_id"] == run.run_id]
            np.testing.assert_allclose(line.get_xdata(), logged["step"] / 6)  # 180 rows in batches of 32
            np.testing.assert_array_equal(line.get_ydata(), logged["value"])
    softmax_colours = [line.get_color() for line in panels[0].get_lines()]
    linear_colours = [line.get_color() for line in panels[1].get_lines() if line.get_label().startswith("lr ")]
    assert softmax_colours == linear_colours and softmax_colours[0] != softmax_colours[1]
    [cross] = [line for line in panels[1].get_lines() if line.get_marker() == "x"]  # the diverged run's end
    diverged = losses[losses["run_id"] == table[table["outcome"] == "diverged"]["run_id"].iloc[0]]
    assert cross.get_ydata()[0] == diverged["value"].iloc[-1]
    assert to_rgba(cross.get_color()) == to_rgba("red")


def test_a_run_shows_its_variant_and_the_settings_it_changed():
    runs = pd.DataFrame({
        "tags.variant": ["mlp", "mlp", "softmax_ce", "softmax", "old"],
        "params.model.hidden": ["128", "256", "None", "None", np.nan],
        "params.model.bias": ["True", "True", "False", "False", np.nan],
        "params.model.activation": ["relu", "tanh", "relu", "relu", np.nan],
        "params.optim.weight_decay": ["0.0", "0.001", "0.0", "0.0", np.nan],
    })
    assert compare_table.changed_settings(runs) == ["", "hidden=256 activation=tanh weight_decay=0.001", "bias=False", "", ""]
    table = pd.DataFrame({"variant": runs["tags.variant"], "changes": compare_table.changed_settings(runs)})
    assert list(compare_table.model_label(table)) == ["mlp", "mlp hidden=256 activation=tanh weight_decay=0.001",
                                                "softmax_ce bias=False", "softmax", "old"]
