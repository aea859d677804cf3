"""pipeline.tracking (store, writer, runs) against a real MLflow sqlite store (a fresh copy per
test). Its reports module is tested through experiments.compare (test_compare)."""

import os
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest
from mlflow import MlflowClient

from pipeline import tracking
from tests.helpers import closed_port, read_only
from tests.http_mirror import SilentServer
from tests.paths import REPO_ROOT

LINK = "http://127.0.0.1:5000/#/experiments/{}/runs?workflowType=machine_learning"


def settings(enabled=True, uri="sqlite:///mlflow.db", experiment="handgrad"):
    return SimpleNamespace(enabled=enabled, uri=uri, experiment=experiment)


# --- where ----------------------------------------------------------------------------------


def test_a_relative_sqlite_uri_is_anchored_at_the_project_root_not_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)

    assert tracking.resolve_uri("sqlite:///mlflow.db") == f"sqlite:///{REPO_ROOT}/mlflow.db"
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "real root"))  # DVC running a copy of the repo
    assert tracking.resolve_uri("sqlite:///stores/mlflow.db") == f"sqlite:///{tmp_path}/real root/stores/mlflow.db"
    assert tracking.resolve_uri("sqlite:////srv/mlflow.db") == "sqlite:////srv/mlflow.db"
    assert tracking.resolve_uri("http://127.0.0.1:5555") == "http://127.0.0.1:5555"


def test_the_environment_wins_over_the_config(tmp_path, monkeypatch):
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5555")
    assert tracking.resolve_uri("sqlite:///mlflow.db") == "http://127.0.0.1:5555"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///shared.db")
    assert tracking.resolve_uri("sqlite:///mlflow.db") == f"sqlite:///{tmp_path}/shared.db"


def test_artifacts_go_next_to_the_sqlite_file():
    assert tracking.artifact_location("sqlite:////srv/x/mlflow.db", "handgrad") == "file:///srv/x/mlruns/handgrad"
    assert tracking.artifact_location("sqlite:////srv/x/mlflow.db", "lr sweep/2") == "file:///srv/x/mlruns/lr_sweep_2"
    assert tracking.artifact_location("http://127.0.0.1:5555", "handgrad") is None  # the server decides


def test_how_to_open_names_the_ui_command_and_the_training_runs_page(tmp_path, monkeypatch):
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))  # the project's root
    here, elsewhere = f"sqlite:///{tmp_path}/mlflow.db", "sqlite:////srv/mlflow.db"

    # The project's UI command, given the store as it resolves one: relative to the project's root.
    assert tracking.how_to_open(here, "3") == f"MLFLOW_TRACKING_URI=sqlite:///mlflow.db python -m experiments.ui, then {LINK.format(3)}"
    assert tracking.how_to_open(elsewhere, "3") == f"MLFLOW_TRACKING_URI=sqlite:////srv/mlflow.db python -m experiments.ui, then {LINK.format(3)}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    assert tracking.resolve_uri("sqlite:///other.db") == here  # what the printed command serves
    assert tracking.how_to_open("http://127.0.0.1:5555/", "4") == LINK.format(4).replace("5000", "5555")
    # Only the runs matching a search (the UI's searchFilter), the search URL-encoded.
    assert tracking.runs_page(here, "3", "tags.`sweep.id` = 'ab12'") == (
        LINK.format(3) + "&searchFilter=tags.%60sweep.id%60%20%3D%20%27ab12%27")


def test_a_run_page_link_opens_the_run_itself_in_model_training_mode():
    assert tracking.run_page("sqlite:////srv/mlflow.db", "3", "ab12") == (
        "http://127.0.0.1:5000/#/experiments/3/runs/ab12?workflowType=machine_learning")
    assert tracking.run_page("http://10.0.0.1:5555/", "3", "ab12", tab="artifacts/W_final.png") == (
        "http://10.0.0.1:5555/#/experiments/3/runs/ab12/artifacts/W_final.png?workflowType=machine_learning")


def test_mlflow_logs_warnings_only_unless_the_user_says_otherwise(monkeypatch):
    import logging

    monkeypatch.delenv("MLFLOW_LOGGING_LEVEL", raising=False)
    monkeypatch.setattr(logging.getLogger("mlflow"), "level", logging.INFO)
    tracking.quiet_mlflow()
    assert logging.getLogger("mlflow").level == logging.WARNING
    assert os.environ["MLFLOW_LOGGING_LEVEL"] == "WARNING"  # for processes it starts
    monkeypatch.setenv("MLFLOW_LOGGING_LEVEL", "debug")
    tracking.quiet_mlflow()
    assert logging.getLogger("mlflow").level == logging.DEBUG


# A stand-in for MLflow and its sqlite store's module (first on the child's path), recording
# whether the garbage collector ran during their import; each builds 50,000 long-lived objects,
# as the real ones build hundreds of thousands.
STAND_IN = "import gc\nCOLLECTING = gc.isenabled()\nBUILT = [[] for _ in range(50_000)]\n"
IMPORTING_CHILD = """
import gc, sys
sys.path.insert(0, sys.argv[1])
from pipeline.tracking.store import import_mlflow
import_mlflow(sys.argv[2])
import mlflow
store = sys.modules.get("mlflow.store.tracking.sqlalchemy_store")
print(mlflow.COLLECTING, store and store.COLLECTING, gc.isenabled(), gc.get_freeze_count())
"""


@pytest.mark.parametrize("uri, store_imported", [("sqlite:////tmp/mlflow.db", True), ("http://127.0.0.1:5000", False)])
def test_mlflow_is_imported_with_the_collector_paused_and_what_it_built_frozen_after(uri, store_imported, tmp_path):
    store = tmp_path / "mlflow" / "store" / "tracking"
    store.mkdir(parents=True)
    for package in (tmp_path / "mlflow", store.parent, store):
        (package / "__init__.py").write_text(STAND_IN if package.name == "mlflow" else "")
    (store / "sqlalchemy_store.py").write_text(STAND_IN)
    out = subprocess.run([sys.executable, "-c", IMPORTING_CHILD, str(tmp_path), uri], cwd=REPO_ROOT,
                         capture_output=True, text=True, check=True).stdout.split()
    assert out[:3] == ["False", "False" if store_imported else "None", "True"]  # paused, then collecting
    assert int(out[3]) > (100_000 if store_imported else 50_000)  # what they built: frozen


# --- what -----------------------------------------------------------------------------------


def test_flatten_joins_keys_with_dots():
    tree = {"optim": {"lr": 0.1, "batch_size": 32}, "data": {"files": {"a.gz": {"size": 1}}, "mirrors": ["x", "y"]}, "dtype": "float32"}

    assert tracking.flatten(tree) == {
        "optim.lr": 0.1, "optim.batch_size": 32, "data.files.a.gz.size": 1, "data.mirrors": ["x", "y"], "dtype": "float32",
    }


def test_settings_are_the_keys_under_the_names_given_and_nothing_else():
    tree = {"optim": {"lr": 0.1}, "optimizer": {"x": 1}, "data": {"split_seed": 0, "split_seeds": 1, "mirrors": ["x"]},
            "dtype": "float32", "out_dir": "results"}

    assert tracking.settings(tree, ("optim", "data.split_seed", "dtype")) == {"optim.lr": 0.1, "data.split_seed": 0, "dtype": "float32"}


def test_git_tags_name_the_checked_out_commit(tmp_path):
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()

    changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT, capture_output=True, text=True).stdout

    tags = tracking.git_tags(REPO_ROOT)

    assert tags["git.commit"] == head == tags["mlflow.source.git.commit"]
    assert tags["git.dirty"] == ("true" if changed.strip() else "false")
    assert tracking.git_tags(tmp_path) == {"git.commit": "unknown"}  # not a repository


# --- runs -----------------------------------------------------------------------------------


def test_a_run_gets_its_name_params_tags_and_ends_finished(mlflow_store):
    with tracking.start_run(settings(), "softmax lr=0.1 bs=32", {"optim.lr": 0.1, "model.name": "softmax"}, {"variant": "softmax"}) as run:
        assert run.enabled and run.tracking_uri == mlflow_store.uri

    [stored] = mlflow_store.runs()
    assert stored.info.run_id == run.run_id and stored.info.experiment_id == run.experiment_id
    assert stored.info.status == "FINISHED" and stored.info.run_name == "softmax lr=0.1 bs=32"
    assert stored.data.params == {"optim.lr": "0.1", "model.name": "softmax"}
    assert stored.data.tags["variant"] == "softmax"
    assert stored.data.tags["mlflow.source.name"] == "pipeline.train"
    experiment = mlflow_store.client.get_experiment(run.experiment_id)
    assert experiment.name == "handgrad"
    assert experiment.artifact_location == (mlflow_store.path.parent / "mlruns" / "handgrad").as_uri()


@pytest.mark.parametrize(
    "raised, status",
    [(RuntimeError("disk full"), "FAILED"), (KeyboardInterrupt(), "KILLED")],
)
def test_a_run_is_ended_whatever_happens(raised, status, mlflow_store):
    with pytest.raises(type(raised)):
        with tracking.start_run(settings(), "run", {}, {}) as run:
            run.log_metrics({"train/loss": 0.5}, step=1)
            raise raised

    [stored] = mlflow_store.runs()
    assert stored.info.status == status and stored.info.end_time is not None
    assert stored.data.metrics == {"train/loss": 0.5}  # what was buffered is kept
    if status == "FAILED":
        assert stored.data.tags["error"] == "RuntimeError: disk full"


def test_the_caller_can_mark_a_run_failed(mlflow_store):
    with tracking.start_run(settings(), "diverged", {}, {}) as run:
        run.end_status = "FAILED"

    assert mlflow_store.runs()[0].info.status == "FAILED"


def test_buffered_metrics_are_all_written_in_batches(mlflow_store):
    steps = np.arange(2500)  # more than one log_batch may hold
    with tracking.start_run(settings(), "run", {}, {}) as run:
        run.log_series("train/loss", steps, 1.0 / (1 + steps))
        for epoch in (1, 2):
            run.log_metrics({"val/accuracy": 0.5 + epoch / 10, "val/loss": 1 / epoch}, step=epoch)

    history = mlflow_store.client.get_metric_history(run.run_id, "train/loss")
    assert sorted((m.step, m.value) for m in history) == [(s, 1.0 / (1 + s)) for s in range(2500)]
    accuracy = mlflow_store.client.get_metric_history(run.run_id, "val/accuracy")
    assert sorted((m.step, m.value) for m in accuracy) == [(1, 0.6), (2, 0.7)]


def test_a_weight_snapshot_is_the_array_at_that_moment_and_its_picture_at_that_step(mlflow_store, tmp_path):
    from PIL import Image

    W = np.arange(7840, dtype=np.float32).reshape(10, 784)
    b = np.arange(10, dtype=np.float32)
    pictures = [np.full((6, 8, 3), colour, dtype=np.uint8) for colour in (50, 200)]
    drawn_from = []
    with tracking.start_run(settings(), "run", {}, {}) as run:
        for epoch, picture in zip((3, 5), pictures):
            run.log_snapshot({"W": W, "b": b}, epoch=epoch,
                             draw=lambda drawn, picture=picture: drawn_from.append(drawn["W"].copy()) or {"W": picture})
            W += 1  # training goes on while the snapshot is written
            b += 1

    folder = mlflow_store.client.download_artifacts(run.run_id, "", str(tmp_path / "download"))
    saved = np.load(f"{folder}/weights/W_epoch_0003.npy", allow_pickle=False)
    np.testing.assert_array_equal(saved, W - 2)
    np.testing.assert_array_equal(np.load(f"{folder}/weights/b_epoch_0003.npy", allow_pickle=False), b - 2)
    np.testing.assert_array_equal(drawn_from[0], W - 2)  # the picture is of the snapshot, too
    assert saved.dtype == np.float32
    stored = sorted((tmp_path / "download" / "images").iterdir())
    assert sorted(p.name.rsplit(".", 1)[1] for p in stored) == ["png"] * 3 + ["webp"] * 3  # each picture, its thumbnail
    assert all(p.name.startswith("weights~W+step+") for p in stored)  # image key weights/W

    def picture_at(step):
        [png] = [p for p in stored if p.name.startswith(f"weights~W+step+{step}+") and p.suffix == ".png"]
        return np.asarray(Image.open(png).convert("RGB"))

    # The first picture also at step 0, where the UI's slider opens.
    for step, picture in ((0, pictures[0]), (3, pictures[0]), (5, pictures[1])):
        np.testing.assert_array_equal(picture_at(step), picture)
    stored_in = mlflow_store.path.parent / "mlruns" / "handgrad" / run.run_id / "artifacts" / "weights"
    assert sorted(p.name for p in stored_in.iterdir()) == ["W_epoch_0003.npy", "W_epoch_0005.npy", "b_epoch_0003.npy", "b_epoch_0005.npy"]


def test_a_failed_background_write_fails_the_run(mlflow_store):
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match="Invalid artifact path"):
        with tracking.start_run(settings(), "run", {}, {}) as run:
            run.log_dict({"a": 1}, "../outside.json")

    [stored] = mlflow_store.runs()
    assert stored.info.status == "FAILED"
    assert stored.data.tags["error"].startswith("MlflowException: Invalid artifact path")


def test_tracking_off_gives_a_run_that_records_nothing(mlflow_store):
    with tracking.start_run(settings(enabled=False), "run", {"a": 1}, {"b": 2}) as run:
        run.log_metrics({"x": 1.0}, step=0)
        run.log_snapshot(np.zeros((10, 784)), epoch=0, draw=lambda W: 1 / 0)  # never drawn

    assert not run.enabled and run.run_id is None
    assert mlflow_store.runs() == []
    assert tracking.where_logged(run) == "MLflow off"


# --- a store that cannot be used --------------------------------------------------------------


def test_a_server_refusing_connections_fails_the_check_at_once_saying_how_to_run_without_it(monkeypatch):
    uri = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    started = time.monotonic()

    with pytest.raises(tracking.TrackingError) as raised:
        tracking.start_run(settings(), "run", {}, {}).__enter__()

    assert time.monotonic() - started < 3  # MLflow's defaults retry for 4 minutes
    assert str(raised.value) == (
        f"MLflow store {uri}: connection refused (no server listening there); run without tracking with "
        "tracking.enabled=false, or unset MLFLOW_TRACKING_URI to log into the local store"
    )
    assert raised.value.exit_status == 1


@pytest.mark.slow
@pytest.mark.parametrize("accept", [False, True], ids=["never-accepts", "accepts-never-answers"])
def test_a_server_that_never_answers_fails_the_check_within_seconds(accept):
    with SilentServer(accept) as server:
        uri = server.url.removesuffix("/mnist/")
        started = time.monotonic()
        with pytest.raises(tracking.TrackingError) as raised:
            tracking.connect(uri)
        waited = time.monotonic() - started

    assert 4 < waited < 10  # one try of 5 s (MLflow's defaults: 120 s a try, 7 retries)
    assert str(raised.value) == (
        f"MLflow store {uri}: no answer within 5 s; run without tracking with tracking.enabled=false, or log into "
        "the local store with tracking.uri=sqlite:///mlflow.db"
    )


def test_mlflow_settings_in_the_environment_win_over_the_checks(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    with SilentServer() as server:
        started = time.monotonic()
        with pytest.raises(tracking.TrackingError, match="no answer within 1 s"):
            tracking.connect(server.url.removesuffix("/mnist/"))

    assert time.monotonic() - started < 4


def test_a_read_only_sqlite_store_is_refused_before_any_run_naming_the_file(mlflow_store):
    tracking.connect(mlflow_store.uri, "handgrad")  # the store and its lock file exist, as after a first run
    with read_only(mlflow_store.path.parent):
        with pytest.raises(tracking.TrackingError) as raised:
            tracking.start_run(settings(), "run", {}, {}).__enter__()

    message = str(raised.value)
    assert message.startswith(f"MLflow store {mlflow_store.uri}: {mlflow_store.path}")
    assert "Read-only file system" in message or "read-only" in message
    assert message.endswith("run without tracking with tracking.enabled=false, or unset MLFLOW_TRACKING_URI to log into the local store")
    assert mlflow_store.runs() == []


# --- the experiment -------------------------------------------------------------------------


def test_the_experiment_is_created_once(mlflow_store):
    first = tracking.ensure_experiment(mlflow_store.client, mlflow_store.uri, "handgrad")
    assert tracking.ensure_experiment(mlflow_store.client, mlflow_store.uri, "handgrad") == first


def test_an_experiment_created_meanwhile_by_another_process_is_used(mlflow_store):
    other_process = MlflowClient(mlflow_store.uri)
    existing = other_process.create_experiment("handgrad")

    class LateClient(MlflowClient):
        """Looked before the other process created the experiment."""

        looked = False

        def get_experiment_by_name(self, name):
            if not self.looked:
                self.looked = True
                return None
            return super().get_experiment_by_name(name)

    assert tracking.ensure_experiment(LateClient(mlflow_store.uri), mlflow_store.uri, "handgrad") == existing


def test_a_deleted_experiment_says_how_to_restore_it(mlflow_store):
    experiment_id = mlflow_store.client.create_experiment("handgrad")
    mlflow_store.client.delete_experiment(experiment_id)

    with pytest.raises(tracking.TrackingError, match=f"mlflow experiments restore --experiment-id {experiment_id}"):
        tracking.ensure_experiment(mlflow_store.client, mlflow_store.uri, "handgrad")


RACING_RUN = """
import sys
from types import SimpleNamespace
import mlflow
from pipeline import tracking
print("ready", flush=True)
sys.stdin.readline()  # all start together, mlflow imported, when the test says go
settings = SimpleNamespace(enabled=True, uri=sys.argv[1], experiment="race")
with tracking.start_run(settings, f"racer {sys.argv[2]}", {"racer": sys.argv[2]}, {}) as run:
    run.log_metrics({"done": 1.0}, step=0)
"""
# Two cores here run two racers at once; a third meets the store while they are making it.
RACERS = 3


@pytest.mark.slow
def test_processes_starting_together_on_a_brand_new_store_all_land_in_their_experiment(tmp_path, monkeypatch):
    """What a `dvc queue start -j 8` does on a first run: no lock, and the store ends up
    half-migrated or runs land in "Default"."""
    import sys

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv(tracking.EXPERIMENT_ID_VARIABLE, raising=False)
    uri = f"sqlite:///{tmp_path / 'new.db'}"
    racers = [
        subprocess.Popen([sys.executable, "-c", RACING_RUN, uri, str(i)], cwd=REPO_ROOT, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
        for i in range(RACERS)
    ]
    try:
        assert [racer.stdout.readline() for racer in racers] == ["ready\n"] * RACERS
        for racer in racers:
            racer.stdin.write("go\n")
            racer.stdin.flush()
        assert [racer.wait(timeout=120) for racer in racers] == [0] * RACERS
    finally:
        for racer in racers:
            racer.kill()
            racer.communicate()

    client = MlflowClient(uri)
    experiments = {e.name: e.experiment_id for e in client.search_experiments()}
    runs = client.search_runs([experiments["race"]])
    assert sorted(r.data.params["racer"] for r in runs) == [str(i) for i in range(RACERS)]
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert all(r.data.metrics == {"done": 1.0} for r in runs)
    assert client.search_runs([experiments["Default"]]) == []


def test_a_slow_store_makes_training_wait_instead_of_queueing_without_bound(mlflow_store):
    import time

    with tracking.start_run(settings(), "slow store", {}, {}) as run:
        queued = []
        for _ in range(3 * tracking.MAX_QUEUED_WRITES):
            run._write(time.sleep, 0.02)  # a write slower than the step that queues it
            queued.append(len(run.writes))
    assert max(queued) == tracking.MAX_QUEUED_WRITES


def test_a_sweep_job_is_tagged_with_the_sweep_run_it_was_handed(monkeypatch):
    monkeypatch.delenv(tracking.SWEEP_RUN_VARIABLE, raising=False)
    assert tracking.sweep_job_tags() == {}
    monkeypatch.setenv(tracking.SWEEP_RUN_VARIABLE, "ab" * 16)
    assert tracking.sweep_job_tags() == {"sweep.id": "ab" * 16, "mlflow.parentRunId": "ab" * 16}
