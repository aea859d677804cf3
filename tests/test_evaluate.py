"""The evaluate stage on tiny synthetic test digits whose right answers are known, with a real
MLflow store in a temporary folder."""

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from pipeline import evaluate, tracking
from pipeline.data import PROVENANCE_FILE, TEST_FILES
from pipeline.files import file_sha256, read_params, write_params
from pipeline.idx import write_idx
from pipeline.served_model import log_model
from pipeline.sgd import loss_and_accuracy
from pipeline.tracking.schema import SELECTION_METRIC
from pipeline.variants import build
from tests.helpers import blocked_reader, closed_port, interrupt, start_stage, wait_until
from tests.paths import REPO_ROOT

# Digit c lights up the pixel block of rows 2c..2c+1; W's row c adds up that block: a perfect
# template classifier, so a test digit is misclassified exactly when its label disagrees with
# the block it lights up.
DIGITS = np.tile(np.arange(10), 4)  # 40 test digits, 4 of each
MISLABELLED = {3: 5, 17: 2, 28: 0}
SOFTMAX_FIELDS = {"name": "softmax", "output": "softmax", "loss": "squared_error", "bias": False, "hidden": None,
                  "activation": "relu", "init": "auto"}  # row: the label it is given instead of DIGITS[row]


def synthetic_test_split(data_dir):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 20, size=(len(DIGITS), 28, 28), dtype=np.uint8)
    for row, digit in enumerate(DIGITS):
        images[row, 2 * digit : 2 * digit + 2, :] = 200 + rng.integers(0, 50, size=(2, 28), dtype=np.uint8)
    labels = DIGITS.astype(np.uint8).copy()
    for row, label in MISLABELLED.items():
        labels[row] = label
    data_dir.mkdir(parents=True)
    write_idx(data_dir / TEST_FILES[0], images)
    write_idx(data_dir / TEST_FILES[1], labels)
    record_provenance(data_dir)
    return images.reshape(len(DIGITS), -1), labels


def record_provenance(data_dir):
    """provenance.json as the download stage writes it: the stage checks the files against it."""
    files = {name: file_sha256(data_dir / name) for name in TEST_FILES}
    (data_dir / PROVENANCE_FILE).write_text(json.dumps({"source": "synthetic", "files": files}))


def template_weights():
    W = np.zeros((10, 28, 28), dtype=np.float32)
    for digit in range(10):
        W[digit, 2 * digit : 2 * digit + 2, :] = 0.01
    return W.reshape(10, 784)


@pytest.fixture
def project(tmp_path, mlflow_store, monkeypatch, compose_config):
    """A trained W with its (FAILED: diverged) training run, the test split, an MLflow store."""
    monkeypatch.chdir(tmp_path)
    images, labels = synthetic_test_split(tmp_path / "data")
    train_dir = tmp_path / "results" / "softmax"
    train_dir.mkdir(parents=True)
    write_params(train_dir / "params.npz", {"W": template_weights()}, SOFTMAX_FIELDS)
    overrides = [f"data.dir={tmp_path / 'data'}", f"train_dir={train_dir}"]
    cfg = compose_config("evaluate", overrides)
    with tracking.start_run(cfg.tracking, "softmax lr=0.5 bs=32", {"optim.lr": 0.5}, {"variant": "softmax"}) as run:
        run.end_status = "FAILED"
    record = {"run_id": run.run_id, "experiment_id": run.experiment_id, "tracking_uri": run.tracking_uri}
    (train_dir / "mlflow_run.json").write_text(json.dumps(record))
    return {"dir": tmp_path, "train_dir": train_dir, "overrides": overrides, "images": images, "labels": labels,
            "client": mlflow_store.client, "store": mlflow_store.path, "run": run, "compose": compose_config, "cfg": cfg}


def run_evaluate(project, *overrides):
    # The fixture's config (composed from the same overrides, only read since) serves the first
    # run without overrides; any other run composes its own, as the stage's command line would.
    cfg = None if overrides else project.pop("cfg", None)
    return evaluate.run(cfg or project["compose"]("evaluate", project["overrides"] + list(overrides)))


def per_digit_table(project):
    """The table of precision and recall per digit logged into the training's run, as columns."""
    folder = project["client"].download_artifacts(project["run"].run_id, "evaluation/per_digit.json", str(project["dir"] / "table"))
    table = json.loads(Path(folder).read_text())
    return {name: [row[i] for row in table["data"]] for i, name in enumerate(table["columns"])}


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def expected_confusion():
    confusion = 4 * np.eye(10, dtype=int)
    for row, label in MISLABELLED.items():
        confusion[DIGITS[row], DIGITS[row]] -= 1
        confusion[label, DIGITS[row]] += 1
    return confusion


def test_outputs_hold_the_known_answers(project):
    assert run_evaluate(project) == 0
    train_dir = project["train_dir"]

    metrics = json.loads((train_dir / "test_metrics.json").read_text())["test"]
    assert metrics["accuracy"] == 37 / 40 and metrics["digits"] == 40
    # The training's own measure of loss and accuracy gives the same numbers.
    W = read_params(train_dir / "params.npz")[0]["W"]
    training_loss, training_accuracy = loss_and_accuracy(W, project["images"], project["labels"], "softmax")
    assert metrics["loss"] == pytest.approx(training_loss, rel=1e-6)
    assert metrics["accuracy"] == training_accuracy

    rows = read_csv(train_dir / "confusion.csv")
    assert len(rows) == 40
    pairs = np.array([[int(r["actual"]), int(r["predicted"])] for r in rows])
    np.testing.assert_array_equal(pairs[:, 0], project["labels"])
    np.testing.assert_array_equal(pairs[:, 1], DIGITS)
    counted = np.zeros((10, 10), dtype=int)
    np.add.at(counted, (pairs[:, 0], pairs[:, 1]), 1)
    np.testing.assert_array_equal(counted, expected_confusion())

    per_class = read_csv(train_dir / "per_class.csv")
    assert [int(r["digit"]) for r in per_class] == list(range(10))
    # Digit 5: its 4 test digits all predicted 5, plus row 3 (a 3 labelled 5) predicted 3.
    assert per_class[5] == {"digit": "5", "precision": "1", "recall": "0.8", "support": "5"}
    # Digit 3: 3 of its 4 digits kept their label, all predicted 3; row 3 is labelled 5.
    assert per_class[3] == {"digit": "3", "precision": "0.75", "recall": "1", "support": "3"}

    confusion_png = imread(train_dir / "confusion.png")
    mistakes_png = imread(train_dir / "misclassified.png")
    assert confusion_png.shape[2] == 4 and confusion_png.shape[:2] == (560, 640)
    assert mistakes_png.shape[1] == 1040  # 8 columns of 1.3 inches at 100 dpi
    assert not list(train_dir.glob(".*.part"))


def test_the_model_is_the_one_its_params_file_names(project):
    """A hidden-layer network under cross-entropy, whatever model= the evaluate config holds: its
    test loss is the training's (from the logits), its accuracy its own forward pass's."""
    fields = {**SOFTMAX_FIELDS, "name": "mlp", "loss": "cross_entropy", "bias": True, "hidden": 6}
    model = build(fields)
    params = model.initial_params(784, 10, np.dtype(np.float32), np.random.default_rng(0))
    params["b2"] += np.arange(10, dtype=np.float32)  # far from uniform: a large loss
    write_params(project["train_dir"] / "params.npz", params, fields)
    assert run_evaluate(project) == 0

    metrics = json.loads((project["train_dir"] / "test_metrics.json").read_text())["test"]
    training_loss, training_accuracy = loss_and_accuracy(params, project["images"], project["labels"], model)
    assert metrics["loss"] == pytest.approx(training_loss, rel=1e-6) and metrics["loss"] > 5
    assert metrics["accuracy"] == training_accuracy


def test_logs_into_the_training_run_and_keeps_its_status(project):
    assert run_evaluate(project) == 0
    client, run_id = project["client"], project["run"].run_id
    run = client.get_run(run_id)
    assert run.info.status == "FAILED"  # what training made it (diverged), not reopened
    assert sorted(run.data.metrics) == ["test_accuracy", "test_loss"] and run.data.metrics["test_accuracy"] == 37 / 40
    assert run.data.metrics["test_loss"] == json.loads((project["train_dir"] / "test_metrics.json").read_text())["test"]["loss"]
    # Precision and recall per digit: one table, not twenty metrics.
    table = per_digit_table(project)
    assert table["digit"] == list(range(10)) and table["support"] == np.bincount(project["labels"], minlength=10).tolist()
    assert (table["precision"][5], table["recall"][5]) == (1.0, 0.8)
    assert (table["precision"][3], table["recall"][3]) == (0.75, 1.0)
    artifacts = [a.path for a in client.list_artifacts(run_id, "evaluation")]
    assert artifacts == sorted([f"evaluation/{name}" for name in evaluate.OUTPUT_FILES] + ["evaluation/per_digit.json"])
    assert len(client.search_runs([project["run"].experiment_id])) == 1
    # The test files, as the run's testing dataset.
    [dataset] = run.inputs.dataset_inputs
    files = "".join(f"{name} {file_sha256(project['dir'] / 'data' / name)}\n" for name in sorted(TEST_FILES))
    assert (dataset.dataset.name, dataset.dataset.digest) == ("mnist-synthetic", hashlib.sha256(files.encode()).hexdigest()[:8])
    assert json.loads(dataset.dataset.profile)["test_rows"] == 40
    assert [(t.key, t.value) for t in dataset.tags] == [("mlflow.data.context", "testing")]


def finished_run_with_a_model(project, val_accuracy):
    """A FINISHED training run of the template W with its model and validation accuracy, as the
    train stage leaves one, recorded in mlflow_run.json."""
    cfg = project["compose"]("evaluate", project["overrides"])
    with tracking.start_run(cfg.tracking, "softmax lr=0.5 bs=32", {}, {"variant": "softmax"}) as run:
        run.log_metrics({SELECTION_METRIC: val_accuracy}, step=0)
        run.log_model(log_model, {"W": template_weights()}, "softmax", project["images"][:3])
        run.wait()
    (project["train_dir"] / "mlflow_run.json").write_text(json.dumps({"run_id": run.run_id}))
    return run.run_id


def test_evaluating_a_run_again_replaces_its_table_rather_than_appending(project):
    """DVC reruns evaluate alone (evaluate.py edited, registration asked for): MLflow's log_table
    would append the second evaluation's rows to the first's."""
    assert run_evaluate(project) == 0
    write_params(project["train_dir"] / "params.npz", {"W": np.zeros((10, 784))}, SOFTMAX_FIELDS)  # every digit a 0
    assert run_evaluate(project) == 0
    table = per_digit_table(project)
    assert table["digit"] == list(range(10))
    assert table["recall"] == [1.0] + [0.0] * 9
    assert project["client"].get_run(project["run"].run_id).data.metrics["test_accuracy"] == np.mean(project["labels"] == 0)


def test_the_runs_model_is_registered_when_asked_and_only_then(project, capsys):
    run_id = finished_run_with_a_model(project, 0.9)
    client = project["client"]
    assert run_evaluate(project) == 0
    assert client.search_registered_models() == []  # tracking.register is false by default

    assert run_evaluate(project, "tracking.register=true") == 0
    assert f"registered handgrad-softmax version 1 (run {run_id}, val accuracy 90.00%): now @champion" in capsys.readouterr().out
    assert client.get_model_version_by_alias("handgrad-softmax", "champion").run_id == run_id

    worse = finished_run_with_a_model(project, 0.8)
    assert run_evaluate(project, "tracking.register=true") == 0
    assert f"handgrad-softmax version 2 (run {worse}, val accuracy 80.00%): @champion stays on version 1 (val accuracy 90.00%, not beaten)" in capsys.readouterr().out
    assert client.get_model_version_by_alias("handgrad-softmax", "champion").run_id == run_id


def test_a_run_without_a_model_is_not_registered(project, capsys):
    assert run_evaluate(project, "tracking.register=true") == 0  # the fixture's run diverged: no model
    assert f"not registered: run {project['run'].run_id} has no logged model" in capsys.readouterr().out
    assert project["client"].search_registered_models() == []


def test_undefined_ratios_are_left_out(project):
    # No test digit is labelled 9 any more, and W never predicts 9 for them: recall and precision of 9 undefined.
    labels = project["labels"].copy()
    images = project["images"].reshape(-1, 28, 28)[labels != 9]
    write_idx(project["dir"] / "data" / TEST_FILES[0], images)
    write_idx(project["dir"] / "data" / TEST_FILES[1], labels[labels != 9])
    record_provenance(project["dir"] / "data")
    assert run_evaluate(project) == 0
    per_class = read_csv(project["train_dir"] / "per_class.csv")
    assert per_class[9] == {"digit": "9", "precision": "", "recall": "", "support": "0"}
    table = per_digit_table(project)
    assert (table["precision"][9], table["recall"][9], table["support"][9]) == (None, None, 0)
    assert table["recall"][8] == 1.0


@pytest.mark.parametrize("how_gone", ["deleted", "unknown", "not tracked"])
def test_a_missing_training_run_gets_a_new_run_linked_to_it(project, how_gone):
    client, old_id = project["client"], project["run"].run_id
    record_path = project["train_dir"] / "mlflow_run.json"
    if how_gone == "deleted":
        client.delete_run(old_id)
    else:
        old_id = "0123456789abcdef0123456789abcdef" if how_gone == "unknown" else None
        record_path.write_text(json.dumps({"run_id": old_id, "experiment_id": None, "tracking_uri": None}))

    assert run_evaluate(project) == 0
    [new] = [run for run in client.search_runs([project["run"].experiment_id]) if run.info.run_id != project["run"].run_id]
    assert "test_accuracy" not in client.get_run(project["run"].run_id).data.metrics
    assert new.info.status == "FINISHED"
    assert new.data.tags["trained_by_run"] == (old_id or "none")
    assert ("not in" if old_id else "not tracked") in new.data.tags["trained_by_run.note"]
    assert new.data.tags["variant"] == "softmax"
    assert new.data.metrics["test_accuracy"] == 37 / 40
    model = project["compose"]("evaluate", project["overrides"]).model
    assert new.data.params == {**{f"model.{key}": str(value) for key, value in model.items()}, "mistakes_shown": "32"}  # settings only
    assert new.data.params["model.name"] == "softmax"
    assert len(client.list_artifacts(new.info.run_id, "evaluation")) == len(evaluate.OUTPUT_FILES) + 1  # + the per-digit table


def test_runs_without_mlflow_when_tracking_is_off(project, capsys):
    project["store"].unlink()
    assert run_evaluate(project, "tracking.enabled=false") == 0
    assert "MLflow off" in capsys.readouterr().out
    assert not project["store"].exists()
    assert json.loads((project["train_dir"] / "test_metrics.json").read_text())["test"]["accuracy"] == 37 / 40


def test_bad_config_fails_before_anything_is_read_or_written(project, capsys):
    assert run_evaluate(project, "mistakes_shown=0", "model.name=Logistic") == 2
    error = capsys.readouterr().err
    assert "mistakes_shown=0: must be in [1, 200]" in error
    assert "model.name='Logistic': must be a name of lowercase letters" in error
    assert not (project["train_dir"] / "test_metrics.json").exists()


def test_missing_weights_say_which_stage_to_run(project, capsys):
    (project["train_dir"] / "params.npz").unlink()
    assert run_evaluate(project) == 1
    assert f"{project['train_dir'] / 'params.npz'} not found: run the train stage first" in capsys.readouterr().err


def test_test_data_changed_since_its_provenance_is_refused_before_anything_is_written(project, capsys):
    labels_path = project["dir"] / "data" / TEST_FILES[1]
    write_idx(labels_path, DIGITS.astype(np.uint8))  # a valid file, with other labels
    assert run_evaluate(project) == 1
    assert capsys.readouterr().err.startswith(f"cannot evaluate: {labels_path}: changed since the download stage wrote it")
    assert sorted(p.name for p in project["train_dir"].iterdir()) == ["mlflow_run.json", "params.npz"]
    assert project["client"].get_run(project["run"].run_id).data.metrics == {}


def nan_weights():
    W = template_weights()
    W[4, 100:110] = np.nan
    return W


@pytest.mark.parametrize(
    "weights, problem",
    [
        (template_weights()[:, :700], "holds {'W': (10, 700)}, expected {'W': (10, 784)} for the model softmax"),
        (template_weights().astype(np.int32), "W holds int32 values, expected floats"),
        (template_weights().astype(np.complex64), "W holds complex64 values, expected floats"),
        (nan_weights(), "10 values of W are NaN or infinite (a diverged training?)"),
    ],
    ids=["shape", "integer", "complex", "nan"],
)
def test_parameters_that_are_not_a_trained_model_exit_2_naming_the_file(project, capsys, weights, problem):
    # Before: a matmul traceback, a casting traceback, or a silent result (complex: the imaginary
    # part dropped; NaN: accuracy 10%, loss nan) written and logged.
    write_params(project["train_dir"] / "params.npz", {"W": weights}, SOFTMAX_FIELDS)

    assert run_evaluate(project) == 2
    assert capsys.readouterr().err.startswith(f"cannot evaluate: {project['train_dir'] / 'params.npz'}: {problem}")
    assert sorted(p.name for p in project["train_dir"].iterdir()) == ["mlflow_run.json", "params.npz"]
    assert project["client"].get_run(project["run"].run_id).data.metrics == {}


def test_a_tracking_server_nobody_answers_on_fails_it_before_any_output_is_written(project, monkeypatch):
    uri = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)

    with pytest.raises(tracking.TrackingError, match=f"MLflow store {uri}: connection refused"):
        run_evaluate(project)

    assert sorted(p.name for p in project["train_dir"].iterdir()) == ["mlflow_run.json", "params.npz"]


@pytest.mark.slow
def test_ctrl_c_during_evaluate_is_one_line_and_exit_130_like_train(project):
    provenance = project["dir"] / "data" / PROVENANCE_FILE
    provenance.unlink()
    with blocked_reader(provenance) as is_waiting:
        process = start_stage("evaluate", *project["overrides"], cwd=project["dir"], env={"PYTHONPATH": str(REPO_ROOT)})
        wait_until(is_waiting, process)
        assert interrupt(process, signal.SIGINT) == 130

    assert process.output() == "interrupted by Ctrl-C (SIGINT): no outputs written\n"  # was a traceback
    assert sorted(p.name for p in project["train_dir"].iterdir()) == ["mlflow_run.json", "params.npz"]


@pytest.mark.slow
def test_command_line_prints_the_result_and_leaves_no_hydra_files(project):
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.evaluate", *project["overrides"], "mistakes_shown=2"],
        cwd=project["dir"], capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
    )
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    run = project["run"]
    assert line == (f"softmax, trained in {project['train_dir']}: test accuracy 92.5% on 40 digits; "
                    f"http://127.0.0.1:5000/#/experiments/{run.experiment_id}/runs/{run.run_id}?workflowType=machine_learning")
    assert "INFO" not in result.stderr  # MLflow's own log lines stay out of the terminal
    assert sorted(p.name for p in project["dir"].iterdir()) == ["data", "mlflow.db", "mlflow.db.lock", "mlruns", "results"]
