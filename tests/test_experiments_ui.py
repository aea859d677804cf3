"""python -m experiments.ui: MLflow's server app really served on 127.0.0.1 over a store, set up for
one person browsing (one process, no job runners), its runs page printed; Ctrl-C stops it."""

import json
import os
import signal
import subprocess
import sys
import urllib.parse
import urllib.request

import pytest

from experiments import ui
from tests.browser import free_port
from tests.paths import REPO_ROOT


def test_the_server_gets_mlflows_own_settings_for_the_store(tmp_path):
    """The variables `mlflow server` hands its workers, by MLflow's own names, and a local session's."""
    from mlflow import server

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    settings = ui.server_environment(uri)
    assert settings[server.BACKEND_STORE_URI_ENV_VAR] == settings[server.REGISTRY_STORE_URI_ENV_VAR] == uri
    assert settings[server.ARTIFACT_ROOT_ENV_VAR] == (tmp_path / "mlruns").as_uri()
    assert settings[server.SERVE_ARTIFACTS_ENV_VAR] == "true"
    assert settings["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"


def test_no_store_yet_is_one_line_and_status_1(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert ui.main(["--no-browser"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path / "mlflow.db") in err and "dvc repro" in err
    assert not (tmp_path / "mlflow.db").exists()  # nothing created


def test_a_port_in_use_is_one_line_and_status_1(mlflow_store, capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert ui.main(["--no-browser", "--port", str(taken.getsockname()[1])]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "in use" in err and "--port" in err


def test_a_server_store_is_not_started_again(monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999/")
    assert ui.main([]) == 0
    assert capsys.readouterr().out == "the store is an MLflow server already: http://127.0.0.1:5999/#/experiments\n"


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_the_ui_answers_with_the_runs_page_and_stops(mlflow_store, stop):
    artifacts = (mlflow_store.path.parent / "mlruns" / "handgrad").as_uri()  # as pipeline.tracking sets it
    experiment_id = mlflow_store.client.create_experiment("handgrad", artifact_location=artifacts)
    run = mlflow_store.client.create_run(experiment_id, run_name="softmax lr=0.5 bs=32")
    mlflow_store.client.log_text(run.info.run_id, "W after epoch 1", "W/epoch_1.txt")
    mlflow_store.client.set_terminated(run.info.run_id)
    port = free_port()
    wrapper = subprocess.Popen([sys.executable, "-m", "experiments.ui", "--port", str(port), "--no-browser"],
                               cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env={**os.environ, "DISPLAY": ""}, start_new_session=True)
    try:
        line = wrapper.stdout.readline()  # blocks until the server answers (or the wrapper ends)
        base = f"http://127.0.0.1:{port}"
        assert line.startswith(f"MLflow UI over {mlflow_store.path}, answering after "), line
        assert line.rstrip().endswith(f"{base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"), line
        with urllib.request.urlopen(base + "/", timeout=10) as page:
            assert page.status == 200 and b"<html" in page.read().lower()
        search = urllib.request.Request(base + "/ajax-api/2.0/mlflow/runs/search", method="POST",
                                        data=json.dumps({"experiment_ids": [experiment_id]}).encode(),
                                        headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(search, timeout=10) as answer:
            assert [r["info"]["run_id"] for r in json.load(answer)["runs"]] == [run.info.run_id]
        query = urllib.parse.urlencode({"run_uuid": run.info.run_id, "path": "W/epoch_1.txt"})
        with urllib.request.urlopen(f"{base}/get-artifact?{query}", timeout=10) as artifact:  # what the run page loads
            assert artifact.read() == b"W after epoch 1"
        # One process serves it: no CLI process, no extra workers, no job runners.
        assert subprocess.run(["pgrep", "-P", str(wrapper.pid)], capture_output=True, text=True).stdout == ""

        wrapper.send_signal(stop)
        assert wrapper.wait(30) == 0
        assert wrapper.stdout.read() == "Ctrl-C stops it.\n"
        with pytest.raises(OSError):
            urllib.request.urlopen(base + "/health", timeout=2)
    finally:
        if wrapper.poll() is None:
            os.killpg(wrapper.pid, signal.SIGKILL)
            wrapper.wait()

