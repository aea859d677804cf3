"""The train stage end to end on a tiny synthetic dataset, with a real MLflow store per test.

Most tests call ``pipeline.train.run`` in-process (no 1.2 s mlflow import per test); exit codes
of Hydra's own errors and Ctrl-C need a real process.
"""

import contextlib
import hashlib
import io
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hydra.core.hydra_config import HydraConfig
from mlflow.entities import LoggedModelStatus
from PIL import Image

from pipeline import pictures, tracking, train
from pipeline.classifier import scores
from pipeline.data import PROVENANCE_FILE, TRAIN_FILES
from pipeline.files import read_params
from pipeline.idx import read_idx, write_idx
from pipeline.w_picture import weights_picture
from tests.helpers import blocked_reader, closed_port, interrupt, start_stage, wait_until
from tests.http_mirror import SilentServer
from tests.paths import MODEL_OPTIONS, REPO_ROOT

SANE_LR = {"softmax": 0.5, "linear": 0.002}


@pytest.fixture
def train_run(compose_config):
    def run(data_dir, out_dir, *overrides):
        """Run the stage in-process; returns (exit status, metrics.json or None)."""
        overrides = [f"data.dir={data_dir}", f"out_dir={out_dir}", "optim.epochs=4", *overrides]
        status = train.run(compose_config("train", overrides))
        metrics_path = out_dir / "metrics.json"
        return status, json.loads(metrics_path.read_text()) if metrics_path.exists() else None

    return run


# Tracked runs that several tests only read: trained once, each into a store of its own.
SHARED_RUNS = {
    "softmax": ("optim.lr=0.5", "tracking.log_every=2", "tracking.snapshot_every=2"),
    "linear": ("model=linear", "optim.lr=0.002", "optim.epochs=2"),
    "mlp": ("model=mlp", "model.hidden=12", "optim.epochs=2", "optim.weight_decay=0.001"),
    "softmax_ce": ("model=softmax_ce", "optim.epochs=2"),
}
READS_SHARED_RUNS = pytest.mark.xdist_group("train_shared_runs")


@pytest.fixture(scope="module")
def shared_run(data_dir, tmp_path_factory, empty_store, compose_config):
    """``shared_run(name)``: (out dir, exit status, metrics.json, store, the stage's output) of
    the run SHARED_RUNS names, trained on first use (as ``train_run`` does, in-process) and then
    only read. Its tests run on one worker (READS_SHARED_RUNS)."""
    made = {}

    def run(name):
        if name not in made:
            folder = tmp_path_factory.mktemp(f"shared_{name}")
            store, out, printed = empty_store(folder), folder / "out", io.StringIO()
            overrides = [f"data.dir={data_dir}", f"out_dir={out}", "optim.epochs=4", *SHARED_RUNS[name]]
            with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed):
                patch.setenv("MLFLOW_TRACKING_URI", store.uri)
                patch.setenv("MLFLOW_REGISTRY_URI", store.uri)
                status = train.run(compose_config("train", overrides))
            made[name] = (out, status, json.loads((out / "metrics.json").read_text()), store, printed.getvalue())
        return made[name]

    return run


@pytest.fixture(scope="module")
def empty_for_module(empty_store, tmp_path_factory):
    """One store for the module's tests that make no run: each finds it still empty (a run any
    of them made would show in the others too)."""
    return empty_store(tmp_path_factory.mktemp("no_runs"))


@pytest.fixture
def use_store(monkeypatch):
    """``use_store(store)``: MLflow's own functions (mlflow.pyfunc.load_model, ...) look in
    ``store`` for the rest of the test."""
    def use(store):
        monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
        monkeypatch.setenv("MLFLOW_REGISTRY_URI", store.uri)

    return use


def run_stage(*args, **popen):
    return subprocess.run([sys.executable, "-m", "pipeline.train", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120, **popen)


# --- training -------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["softmax", "linear"])
def test_both_variants_reduce_the_loss_at_a_sane_lr(variant, data_dir, tmp_path, train_run):
    out = tmp_path / "out"
    status, metrics = train_run(data_dir, out, f"model={variant}", f"optim.lr={SANE_LR[variant]}", "tracking.enabled=false")

    assert status == 0
    # From W = 0 the loss is 0.9 (softmax: every ŷ_i = 0.1) or 1 (linear: ŷ = 0).
    initial_loss = {"softmax": 0.9, "linear": 1.0}[variant]
    history = (out / "history.csv").read_text().splitlines()
    assert history[0] == "epoch,train_loss,train_accuracy,val_loss,val_accuracy,seconds"
    epochs = [dict(zip(history[0].split(","), map(float, line.split(",")))) for line in history[1:]]
    assert [row["epoch"] for row in epochs] == [1, 2, 3, 4]
    assert epochs[0]["train_loss"] < initial_loss
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    assert metrics["train"]["loss"] < initial_loss / 2
    assert metrics["val"]["accuracy"] >= 0.8
    assert metrics["epochs"] == 4 and metrics["steps"] == 4 * 6  # 180 rows in batches of 32
    assert metrics["diverged"] is False and metrics["diverged_at_step"] is None
    params, fields = read_params(out / "params.npz")
    assert list(params) == ["W"] and params["W"].shape == (10, 784) and params["W"].dtype == np.float32
    assert fields == {"name": variant, "output": {"softmax": "softmax", "linear": "identity"}[variant], "loss": "squared_error",
                      "bias": False, "hidden": None, "activation": "relu", "init": "auto"}
    assert json.loads((out / "mlflow_run.json").read_text()) == {"run_id": None, "experiment_id": None, "tracking_uri": None}


def test_linear_variant_reports_its_stability_limit_and_least_squares_floor(data_dir, tmp_path, train_run):
    status, metrics = train_run(data_dir, tmp_path, "model=linear", "optim.lr=0.002", "optim.epochs=2", "tracking.enabled=false")

    assert status == 0
    floor = metrics["linear"]["least_squares_loss"]
    assert 0 < floor < metrics["train"]["loss"]
    assert 0 < metrics["linear"]["max_stable_lr"] < 1


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_same_config_gives_bitwise_identical_weights(dtype, data_dir, tmp_path, train_run):
    runs = {}
    for name, seed in (("first", 3), ("again", 3), ("other seed", 4)):
        out = tmp_path / name
        assert train_run(data_dir, out, f"dtype={dtype}", f"optim.seed={seed}", "optim.epochs=2", "tracking.enabled=false")[0] == 0
        runs[name] = read_params(out / "params.npz")[0]["W"]

    assert runs["first"].dtype == np.dtype(dtype)
    assert runs["first"].tobytes() == runs["again"].tobytes()
    assert not np.array_equal(runs["first"], runs["other seed"])  # the seed really shuffles


def test_full_batch_is_plain_gradient_descent(data_dir, tmp_path, train_run):
    status, metrics = train_run(data_dir, tmp_path, "optim.batch_size=100000", "optim.epochs=3", "tracking.enabled=false")

    assert status == 0
    assert metrics["steps"] == 3


# --- MLflow -------------------------------------------------------------------------------


@READS_SHARED_RUNS
def test_a_run_records_params_tags_curves_and_weight_snapshots(data_dir, tmp_path, shared_run, compose_config):
    out, status, metrics, mlflow_store, printed = shared_run("softmax")

    assert status == 0
    [run] = mlflow_store.runs()
    record = json.loads((out / "mlflow_run.json").read_text())
    assert record == {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id, "tracking_uri": mlflow_store.uri}
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "softmax lr=0.5 bs=32"
    assert mlflow_store.client.get_experiment(run.info.experiment_id).name == "handgrad"

    # The run's settings, nothing else: no paths, mirrors, timeouts, checksums or tracking options.
    cfg = compose_config("train", [f"data.dir={data_dir}", f"out_dir={out}", "optim.epochs=4", "optim.lr=0.5"])
    assert run.data.params == {
        **{f"model.{key}": str(value) for key, value in cfg.model.items()},
        **{f"optim.{key}": str(value) for key, value in cfg.optim.items()},
        "data.val_fraction": "0.1", "data.split_seed": "0", "dtype": "float32", "divergence.factor": "100.0",
        "divergence.fatal": "False", "data.train_rows": "180", "data.val_rows": "20",
    }
    assert (run.data.params["model.name"], run.data.params["optim.lr"], run.data.params["optim.batch_size"]) == ("softmax", "0.5", "32")

    tags = run.data.tags
    provenance = json.loads((data_dir / PROVENANCE_FILE).read_text())
    assert tags["variant"] == "softmax" and tags["diverged"] == "false"
    assert tags["data.source"] == "synthetic" and tags["out_dir"] == str(out)
    assert {key: value for key, value in tags.items() if key.startswith("data.sha256.")} == {
        f"data.sha256.{name}": provenance["files"][name] for name in TRAIN_FILES  # the files read, no others
    }
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()
    changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT, capture_output=True, text=True).stdout
    assert tags["git.commit"] == head and tags["git.dirty"] == ("true" if changed.strip() else "false")

    def history(key):
        return [(m.step, m.value) for m in sorted(mlflow_store.client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)]

    # The curves, per epoch (and the training loss per step: 6 steps an epoch, the mean of every 2
    # at the step of the later one); a few summary numbers at step 0; nothing else.
    assert [step for step, _ in history("loss/train_step")] == [1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23]
    epochs = [line.split(",") for line in (out / "history.csv").read_text().splitlines()[1:]]
    assert history("loss/train") == [(int(e[0]), float(e[1])) for e in epochs]
    assert history("score/train_accuracy") == [(int(e[0]), float(e[2])) for e in epochs]
    assert history("loss/val") == [(int(e[0]), float(e[3])) for e in epochs]
    assert history("score/val_accuracy") == [(int(e[0]), float(e[4])) for e in epochs]
    assert history("score/val_accuracy")[-1][1] == metrics["val"]["accuracy"]  # the last point: the final W's
    assert history("time/epoch_seconds") == [(int(e[0]), float(e[5])) for e in epochs]
    timing = json.loads((out / "timing.json").read_text())["seconds"]
    assert history("train_seconds") == [(0, timing["train"])] and 0 < timing["train"] < timing["total"]
    assert sorted(run.data.metrics) == ["loss/train", "loss/train_step", "loss/val", "score/train_accuracy",
                                        "score/val_accuracy", "time/epoch_seconds", "train_seconds"]
    assert "seconds" not in metrics  # timings are not a DVC metric: they differ on every run

    # The data it read: the training files, as a dataset named for their source.
    [dataset] = run.inputs.dataset_inputs
    assert dataset.dataset.name == "mnist-synthetic" and dataset.dataset.source_type == "local"
    assert json.loads(dataset.dataset.source) == {"uri": data_dir.resolve().as_uri()}
    files = "".join(f"{name} {provenance['files'][name]}\n" for name in sorted(TRAIN_FILES))
    assert dataset.dataset.digest == hashlib.sha256(files.encode()).hexdigest()[:8]
    assert json.loads(dataset.dataset.profile)["train_rows"] == 180
    assert [(t.key, t.value) for t in dataset.tags] == [("mlflow.data.context", "training")]

    def artifacts(folder):
        return sorted(a.path for a in mlflow_store.client.list_artifacts(run.info.run_id, folder))

    # W after every other epoch and at the end, never the zeros it started from: as arrays, and as
    # pictures at their epoch (the UI's step slider, which opens on step 0: the first one, again).
    assert artifacts("weights") == [f"weights/W_epoch_{e:04d}.npy" for e in (2, 4)]
    folder = mlflow_store.client.download_artifacts(run.info.run_id, "weights", str(tmp_path / "download"))
    final = np.load(f"{folder}/W_epoch_0004.npy", allow_pickle=False)
    np.testing.assert_array_equal(final, read_params(out / "params.npz")[0]["W"])
    pictures = [p for p in artifacts("images") if p.endswith(".png")]
    assert sorted(int(p.split("+step+")[1].split("+")[0]) for p in pictures) == [0, 2, 4]
    assert all(p.startswith("images/weights~W+step+") for p in pictures)
    assert artifacts("plots") == ["plots/loss_curve.png"]
    assert artifacts("data") == ["data/provenance.json"]
    mlflow_store.client.download_artifacts(run.info.run_id, "W_final.png", str(tmp_path / "download"))
    drawn = np.asarray(Image.open(tmp_path / "download" / "W_final.png").convert("RGB"))
    expected = weights_picture(read_params(out / "params.npz")[0]["W"], title="softmax lr=0.5 bs=32: the final W, epoch 4", zoom=6)
    np.testing.assert_array_equal(drawn, expected)

    # One line: the run, its validation accuracy, the link that opens it in model-training mode.
    [line] = printed.splitlines()
    assert line == (f"softmax lr=0.5 bs=32: val accuracy {metrics['val']['accuracy']:.1%} after 4 epochs; "
                    f"http://127.0.0.1:5000/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}?workflowType=machine_learning")


@READS_SHARED_RUNS
def test_linear_run_logs_the_largest_stable_lr_and_the_floor(shared_run):
    _, status, metrics, mlflow_store, _ = shared_run("linear")

    assert status == 0
    [run] = mlflow_store.runs()
    assert run.data.metrics["max_stable_lr"] == metrics["linear"]["max_stable_lr"]
    assert run.data.metrics["least_squares_loss"] == metrics["linear"]["least_squares_loss"]


def test_divergence_is_a_result_recorded_as_such(data_dir, tmp_path, mlflow_store, train_run):
    out = tmp_path / "out"
    status, metrics = train_run(data_dir, out, "model=linear", "optim.lr=10")

    assert status == 0
    assert metrics["diverged"] is True
    step = metrics["diverged_at_step"]
    assert 0 < step < 24 and metrics["steps"] == step and metrics["epochs"] == step // 6
    assert read_params(out / "params.npz")[0]["W"].shape == (10, 784)
    [run] = mlflow_store.runs()
    assert run.info.status == "FAILED"
    assert run.info.run_name == "diverged: linear lr=10 bs=32"  # what the runs table shows
    assert run.data.tags["diverged"] == "true" and run.data.tags["diverged_at_step"] == str(step)
    assert "error" not in run.data.tags
    # Its curves end on the W it stopped with, at the epoch it stopped in.
    stopped_in = metrics["epochs"] + 1
    for key, value in (("loss/train", metrics["train"]["loss"]), ("loss/val", metrics["val"]["loss"]),
                       ("score/val_accuracy", metrics["val"]["accuracy"])):
        last = max(mlflow_store.client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
        assert (last.step, last.value) == (stopped_in, value)
    epochs_timed = mlflow_store.client.get_metric_history(run.info.run_id, "time/epoch_seconds")
    assert [m.step for m in epochs_timed] == list(range(1, stopped_in))
    assert run.outputs.model_outputs == []  # nothing worth serving


@READS_SHARED_RUNS
@pytest.mark.parametrize("name", ["softmax", "linear", "softmax_ce", "mlp"])
def test_a_run_logs_its_model_which_answers_as_the_written_parameters_do(name, data_dir, shared_run, use_store):
    import mlflow

    out, status, metrics, mlflow_store, _ = shared_run(name)
    use_store(mlflow_store)
    params, fields = read_params(out / "params.npz")

    assert status == 0
    [run] = mlflow_store.runs()
    [output] = run.outputs.model_outputs
    assert output.step == metrics["epochs"]
    [model] = mlflow_store.client.search_logged_models([run.info.experiment_id])  # what the Models column lists
    assert (model.model_id, model.source_run_id, model.name, model.status) == (output.model_id, run.info.run_id, "model", LoggedModelStatus.READY)
    assert model.tags["variant"] == fields["name"] and model.params == {f"model.{k}": str(v) for k, v in fields.items()}
    # The final metrics are the model's too (its page shows them): the validation accuracy the registry picks by.
    linked = {m.key: m.value for m in model.metrics}
    assert linked["score/val_accuracy"] == metrics["val"]["accuracy"] and linked["loss/val"] == metrics["val"]["loss"]

    test_images = read_idx(data_dir / "t10k-images-idx3-ubyte.gz").reshape(-1, 784)
    answer = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model").predict(test_images.astype(np.float32))
    expected = scores(params, test_images, fields)
    np.testing.assert_array_equal(answer["scores"], expected)
    np.testing.assert_array_equal(answer["digit"], expected.argmax(axis=1))
    # Its input example: real digits of the training file (validation rows), never test digits.
    folder = mlflow.artifacts.download_artifacts(f"models:/{model.model_id}")
    example = np.array(json.loads((Path(folder) / "input_example.json").read_text()), np.uint8)
    train_images = {row.tobytes() for row in read_idx(data_dir / TRAIN_FILES[0]).reshape(-1, 784)}
    assert example.shape == (train.EXAMPLE_DIGITS, 784) and all(row.tobytes() in train_images for row in example)


def test_a_model_that_cannot_be_logged_fails_the_run_and_leaves_the_outputs_as_they_were(data_dir, tmp_path, mlflow_store, train_run):
    out = tmp_path / "out"
    out.mkdir()
    (out / "params.npz").write_bytes(b"the previous run's weights")
    client, _ = tracking.connect(mlflow_store.uri, "handgrad")
    # The experiment's logged models go to mlruns/handgrad/models/: a file there makes every model's upload fail.
    (mlflow_store.path.parent / "mlruns" / "handgrad").mkdir(parents=True, exist_ok=True)
    (mlflow_store.path.parent / "mlruns" / "handgrad" / "models").write_text("in the way")

    # A store that takes no writes: the stage's one line (stage_app, exit 1), saying what failed.
    with pytest.raises(tracking.TrackingError, match="mlruns/handgrad/models/m-[0-9a-f]+: Not a directory"):
        train_run(data_dir, out, "optim.epochs=1")

    assert [p.name for p in out.iterdir()] == ["params.npz"] and (out / "params.npz").read_bytes() == b"the previous run's weights"
    [run] = mlflow_store.runs()
    assert run.info.status == "FAILED" and run.info.end_time is not None
    assert "Not a directory" in run.data.tags["error"]
    assert "score/val_accuracy" in run.data.metrics  # what training did is still recorded


@READS_SHARED_RUNS
def test_a_hidden_layer_run_snapshots_and_pictures_every_parameter(tmp_path, shared_run):
    out, status, metrics, mlflow_store, _ = shared_run("mlp")

    assert status == 0
    params, fields = read_params(out / "params.npz")
    assert {key: P.shape for key, P in params.items()} == {"W1": (12, 784), "b1": (12,), "W2": (10, 12), "b2": (10,)}
    assert fields["hidden"] == 12 and fields["name"] == "mlp"
    [run] = mlflow_store.runs()
    assert run.data.params["model.hidden"] == "12" and run.data.tags["variant"] == "mlp"
    artifacts = sorted(a.path for a in mlflow_store.client.list_artifacts(run.info.run_id, "weights"))
    assert artifacts == [f"weights/{key}_epoch_{e:04d}.npy" for key in ("W1", "W2", "b1", "b2") for e in (1, 2)]
    folder = mlflow_store.client.download_artifacts(run.info.run_id, "weights", str(tmp_path / "download"))
    for key, P in params.items():
        np.testing.assert_array_equal(np.load(f"{folder}/{key}_epoch_0002.npy"), P)
    pictures = sorted(a.path for a in mlflow_store.client.list_artifacts(run.info.run_id, "images") if a.path.endswith(".png"))
    assert sorted({p.split("/")[1].split("+step+")[0] for p in pictures}) == ["weights~W1", "weights~W2"]  # keys weights/W1, weights/W2
    # Weight decay: its penalty beside the data term, per epoch and at the end.
    penalty = sum(0.001 * float(np.vdot(params[key], params[key])) for key in ("W1", "W2"))
    assert metrics["train"]["penalty"] == pytest.approx(penalty, rel=1e-5)
    history = mlflow_store.client.get_metric_history(run.info.run_id, "loss/train_penalty")
    assert sorted(m.step for m in history) == [1, 2]
    assert run.data.metrics["loss/train_penalty"] == pytest.approx(penalty, rel=1e-5)  # the last point: the final W's


def test_a_hidden_layer_that_blows_up_is_a_recorded_divergence(data_dir, tmp_path, mlflow_store, train_run):
    out = tmp_path / "out"
    status, metrics = train_run(data_dir, out, "model=mlp", "model.hidden=8", "model.loss=squared_error",
                                "model.output=identity", "optim.lr=1000")

    assert status == 0 and metrics["diverged"] is True
    [run] = mlflow_store.runs()
    assert run.info.status == "FAILED" and run.data.tags["diverged"] == "true"
    assert set(read_params(out / "params.npz")[0]) == {"W1", "b1", "W2", "b2"}


def test_no_weight_decay_logs_no_penalty(data_dir, tmp_path, train_run):
    status, metrics = train_run(data_dir, tmp_path, "model=softmax_ce", "optim.epochs=1", "tracking.enabled=false")

    assert status == 0 and "penalty" not in metrics["train"]
    assert set(read_params(tmp_path / "params.npz")[0]) == {"W", "b"}


def test_divergence_can_be_made_fatal(data_dir, tmp_path, train_run):
    status, metrics = train_run(data_dir, tmp_path, "model=linear", "optim.lr=10", "divergence.fatal=true", "tracking.enabled=false")

    assert status == 1
    assert metrics["diverged"] is True  # still written: the outputs say what happened


@pytest.mark.slow
def test_tracking_off_means_no_mlflow_at_all(data_dir, tmp_path):
    code = (
        "import runpy, sys; "
        f"sys.argv = ['train', 'data.dir={data_dir}', 'out_dir={tmp_path}/out', 'optim.epochs=1', 'tracking.enabled=false']; "
        "runpy.run_module('pipeline.train', run_name='__main__'); print('mlflow imported:', 'mlflow' in sys.modules)"
    )
    store = tmp_path / "never.db"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store}"})

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "mlflow imported: False"
    assert "MLflow off" in result.stdout
    assert not store.exists() and not (tmp_path / "mlruns").exists()


def test_tags_say_which_sweep_job_and_dvc_experiment_a_run_belongs_to(monkeypatch, compose_config):
    cfg = compose_config("train", ["hydra.mode=MULTIRUN", "hydra.job.num=3"], hydra_config=True)
    monkeypatch.setattr(HydraConfig.instance(), "cfg", cfg)  # what hydra.main sets in a multirun job
    monkeypatch.setenv("DVC_EXP_NAME", "lanky-lads")

    tags = train.run_tags(cfg, {"source": "packaged"}, {"train-labels-idx1-ubyte.gz": "ab" * 32})

    assert tags["hydra.sweep.dir"] == cfg.hydra.sweep.dir and tags["hydra.job.num"] == 3
    assert tags["dvc.exp_name"] == "lanky-lads"
    assert tags["data.source"] == "packaged" and tags["data.sha256.train-labels-idx1-ubyte.gz"] == "ab" * 32
    monkeypatch.delenv("DVC_EXP_NAME")
    monkeypatch.setattr(HydraConfig.instance(), "cfg", None)  # a single run
    assert not any(key.startswith(("hydra.", "dvc.")) for key in train.run_tags(cfg, {}, {}))


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.lr=0", "optim.lr=0.0: must be > 0"),
        ("optim.lr=-1", "optim.lr=-1.0: must be > 0"),
        ("optim.batch_size=0", "optim.batch_size=0: must be >= 1"),
        ("model.name=Quadratic", "model.name='Quadratic': must be a name of lowercase letters, digits and _"),
        ("model.activation=swish", "model.activation='swish': must be one of relu, sigmoid, tanh"),
        ("model.hidden=0", "model.hidden=0: must be >= 1"),
        ("optim.weight_decay=nan", "optim.weight_decay=nan: must be a finite number >= 0"),
        ("model.output=identity", None),  # with the default model's cross-entropy below
        ("dtype=float16", "dtype='float16': must be one of float32, float64"),
    ],
)
def test_a_bad_value_fails_before_any_data_or_run(override, message, tmp_path, empty_for_module, use_store, capsys, train_run):
    mlflow_store = empty_for_module
    use_store(mlflow_store)
    out = tmp_path / "out"
    if message is None:  # a combination the model's pieces refuse
        override, message = [override, "model.loss=cross_entropy"], "cross-entropy is defined after a softmax output only"
    status, _ = train_run(tmp_path / "no data here", out, *([override] if isinstance(override, str) else override))

    assert status == 2
    assert message in capsys.readouterr().err
    assert mlflow_store.runs() == []
    assert not out.exists()


@pytest.mark.parametrize(
    "override, message, exit_status",
    [
        ("optim.lrate=0.1", "optim.lrate: Key 'lrate' not in 'OptimConfig'", 2),  # Hydra's own composition error
        ("model=quadratic", f"model=quadratic: no such option, conf/model/ has {MODEL_OPTIONS}", 2),
        ("optim.batch_size=abc", "optim.batch_size: Value 'abc' of type 'str' could not be converted to Integer", 2),
        ("optim.lr=0", "optim.lr=0.0: must be > 0", 2),
    ],
)
@pytest.mark.slow
def test_bad_config_exits_non_zero_from_the_command_line(override, message, exit_status, tmp_path, mlflow_store):
    result = run_stage(f"data.dir={tmp_path}", f"out_dir={tmp_path / 'out'}", override)

    assert result.returncode == exit_status
    assert result.stderr == f"invalid config: {message}\n"
    assert mlflow_store.runs() == []


def test_missing_data_says_where_it_looked(tmp_path, capsys, train_run):
    status, _ = train_run(tmp_path / "nowhere", tmp_path / "out", "tracking.enabled=false")

    assert status == 1
    assert f"cannot train: {tmp_path / 'nowhere' / PROVENANCE_FILE} not found" in capsys.readouterr().err


def test_labels_changed_since_their_provenance_are_refused_before_any_run(data_dir, tmp_path, mlflow_store, capsys, train_run):
    changed = tmp_path / "data"
    shutil.copytree(data_dir, changed)
    labels = read_idx(changed / TRAIN_FILES[1])
    write_idx(changed / TRAIN_FILES[1], np.random.default_rng(0).permutation(labels))  # still a valid IDX file
    status, _ = train_run(changed, tmp_path / "out")

    assert status == 1
    assert capsys.readouterr().err.startswith(f"cannot train: {changed / TRAIN_FILES[1]}: changed since the download stage")
    assert not (tmp_path / "out").exists() and mlflow_store.runs() == []


@pytest.mark.slow
@pytest.mark.parametrize("signum, exit_status, how", [(signal.SIGINT, 130, "Ctrl-C (SIGINT)"), (signal.SIGTERM, 143, "SIGTERM")])
def test_ctrl_c_or_sigterm_mid_training_kills_the_run_and_keeps_the_previous_outputs(signum, exit_status, how, data_dir, tmp_path, mlflow_store):
    out = tmp_path / "out"
    out.mkdir()
    (out / "params.npz").write_bytes(b"the previous run's weights")
    process = start_stage("train", f"data.dir={data_dir}", f"out_dir={out}", "optim.epochs=1000000", "tracking.snapshot_every=0")
    # Well into the epochs: the run has sent training losses (a million epochs would take minutes).
    wait_until(lambda: any("loss/train_step" in run.data.metrics for run in mlflow_store.runs()), process)

    assert interrupt(process, signum) == exit_status
    [run] = mlflow_store.runs()
    assert process.output().splitlines()[-1] == f"interrupted by {how}: no outputs written; MLflow run {run.info.run_id} marked KILLED"
    assert "Traceback" not in process.output()
    assert [p.name for p in out.iterdir()] == ["params.npz"]  # no new or half-written file
    assert (out / "params.npz").read_bytes() == b"the previous run's weights"
    assert run.info.status == "KILLED" and run.info.end_time is not None
    assert len(mlflow_store.client.get_metric_history(run.info.run_id, "loss/train_step")) > 0


@pytest.mark.slow
def test_interrupted_before_its_run_exists_it_claims_no_killed_run(data_dir, tmp_path, mlflow_store):
    data = tmp_path / "data"
    shutil.copytree(data_dir, data)
    (data / PROVENANCE_FILE).unlink()
    with blocked_reader(data / PROVENANCE_FILE) as is_waiting:  # the first file the stage reads
        process = start_stage("train", f"data.dir={data}", f"out_dir={tmp_path / 'out'}")
        wait_until(is_waiting, process)
        assert interrupt(process, signal.SIGINT) == 130

    assert process.output() == "interrupted by Ctrl-C (SIGINT): no outputs written\n"
    assert not (tmp_path / "out").exists() and mlflow_store.runs() == []


# --- tracking store, disk, pictures -----------------------------------------------------------


@pytest.mark.slow
def test_a_tracking_server_nobody_answers_on_fails_before_training_in_one_line(data_dir, tmp_path):
    uri = f"http://127.0.0.1:{closed_port()}"
    started = time.monotonic()
    result = run_stage(f"data.dir={data_dir}", f"out_dir={tmp_path / 'out'}", env={**os.environ, "MLFLOW_TRACKING_URI": uri})

    assert time.monotonic() - started < 30  # MLflow's own retries: 249 s, then a 124-line traceback
    assert result.returncode == 1
    assert result.stdout == ""  # not even the "training on" line
    assert result.stderr == (
        f"MLflow store {uri}: connection refused (no server listening there); run without tracking with "
        "tracking.enabled=false, or unset MLFLOW_TRACKING_URI to log into the local store\n"
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_tracking_server_that_never_answers_fails_within_seconds(data_dir, tmp_path):
    with SilentServer(accept=True) as server:
        uri = server.url.removesuffix("/mnist/")
        started = time.monotonic()
        result = run_stage(f"data.dir={data_dir}", f"out_dir={tmp_path / 'out'}", env={**os.environ, "MLFLOW_TRACKING_URI": uri})

    assert time.monotonic() - started < 40  # was: 120 s a try, over 7 minutes in all
    assert result.returncode == 1
    assert result.stderr.startswith(f"MLflow store {uri}: no answer within 5 s; run without tracking with tracking.enabled=false")
    assert not (tmp_path / "out").exists()


# The overflow to inf and then NaN is what this test provokes: numpy's warnings about it are expected.
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning", "ignore:invalid value encountered:RuntimeWarning")
def test_a_loss_that_goes_nan_at_once_is_recorded_as_diverged_and_pictured(data_dir, tmp_path, mlflow_store, train_run):
    # lr=1e38 is a valid setting: W overflows after one step and every later loss is NaN, so the
    # loss curve has no positive value (matplotlib's log axis refused it: exit 1, outputs half-new).
    out = tmp_path / "out"
    status, metrics = train_run(data_dir, out, "optim.lr=1e38")

    assert status == 0
    assert metrics["diverged"] is True and metrics["diverged_at_step"] == 1
    [run] = mlflow_store.runs()
    assert run.info.status == "FAILED" and "error" not in run.data.tags  # diverged, not crashed
    assert run.data.tags["diverged"] == "true"
    assert [a.path for a in mlflow_store.client.list_artifacts(run.info.run_id, "plots")] == ["plots/loss_curve.png"]
    assert sorted(p.name for p in out.iterdir()) == sorted(train.OUTPUT_FILES)


def test_a_failing_mlflow_write_fails_the_stage_before_any_output_is_replaced(data_dir, tmp_path, mlflow_store, train_run, monkeypatch):
    # The loss curve is the last write queued, drawn on the writer thread: the stage waits for it.
    def unwritable(**curve):
        raise OSError(28, "No space left on device", "plots/loss_curve.png")

    monkeypatch.setattr(pictures, "loss_curve_picture", unwritable)
    out = tmp_path / "out"
    with pytest.raises(tracking.TrackingError, match=f"MLflow store {mlflow_store.uri}: plots/loss_curve.png: No space left on device"):
        train_run(data_dir, out)

    assert not out.exists()
    [run] = mlflow_store.runs()
    assert run.info.status == "FAILED" and "No space left on device" in run.data.tags["error"]


@pytest.mark.slow
def test_a_full_disk_leaves_the_previous_outputs_whole_and_says_which_file(data_dir, tmp_path):
    # A file-size limit (the kernel refusing a write, EFBIG, as a full disk does with ENOSPC) that
    # params.npz (31 KB) and metrics.json fit in but a history.csv of 1,000 epochs (~78 KB) does not.
    out = tmp_path / "out"
    previous = run_stage(f"data.dir={data_dir}", f"out_dir={out}", "optim.epochs=1", "tracking.enabled=false")
    assert previous.returncode == 0, previous.stderr
    before = {path.name: path.read_bytes() for path in out.iterdir()}

    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, 40_000))

    result = run_stage(f"data.dir={data_dir}", f"out_dir={out}", "optim.epochs=1000", "optim.batch_size=1000",
                       "tracking.enabled=false", preexec_fn=limited)

    assert result.returncode == 1
    assert result.stderr == f"{out / 'history.csv'}: File too large\n"
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before  # all four old, no temporary


# --- helpers ------------------------------------------------------------------------------


def test_window_means_puts_each_mean_at_its_last_step():
    steps, means = train.window_means(np.array([1.0, 3.0, 5.0, 7.0, 9.0]), window=2, first_step=10)

    assert steps == [11, 13, 14]
    assert means == [2.0, 6.0, 9.0]
