"""experiments.sweep end to end: real Hydra multiruns of the train stage (in subprocesses, from a
scratch folder), on the tiny synthetic digits of conftest, into real MLflow stores: a new sqlite file,
and a real ``mlflow server`` on 127.0.0.1."""

import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from experiments import ui
from pipeline import train
from pipeline.tracking.schema import SELECTION_METRIC
from tests.helpers import QUICK, interrupt, job_folders, once_changed, split_runs, start_stage, sweep, wait_until

# The linear variant diverges at the two larger rates on these digits, the softmax one does not.
LEARNING_RATES = (0.002, 0.02, 0.5, 10)


def check_job_run(run, parent, folder):
    """A job's run says what the files in its own folder say, under its sweep's run."""
    metrics = json.loads((folder / "metrics.json").read_text())
    test = json.loads((folder / "test_metrics.json").read_text())["test"]
    assert run.data.tags["sweep.id"] == run.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert json.loads((folder / "mlflow_run.json").read_text())["run_id"] == run.info.run_id
    assert run.info.status == ("FAILED" if metrics["diverged"] else "FINISHED")
    assert run.data.tags["diverged"] == str(metrics["diverged"]).lower()
    assert run.info.run_name.startswith("diverged: ") == metrics["diverged"]
    assert run.data.metrics["score/val_accuracy"] == metrics["val"]["accuracy"]
    assert run.data.metrics["test_accuracy"] == test["accuracy"]  # evaluated by the evaluate stage
    return metrics


def check_output(printed, client, rates):
    """What a sweep prints: where it goes, one line per job (its number, run, how it went), one link
    that opens the sweep's runs, how to compare them; nothing of Hydra's or MLflow's own logs."""
    lines = printed.splitlines()
    # At its end, before its link, the registered versions (check_registered reads those lines).
    lines = [line for line in lines if not line.startswith("registered ")]
    [parent] = [r for r in client.search_runs([e.experiment_id for e in client.search_experiments()])
                if r.data.tags.get("sweep.parent") == "true"]
    sweep_id, experiment_id = parent.info.run_id, parent.info.experiment_id
    assert re.fullmatch(rf"sweep {sweep_id} into multirun/[-\d]+/[-\d]+/", lines[0])
    jobs = sorted(lines[1:-2], key=lambda line: int(line.split()[0][1:]))
    expected = [f"#{n} {variant} lr={lr:g} bs=32: " for n, (variant, lr) in enumerate(itertools.product(["softmax", "linear"], rates))]
    assert [line[: len(start)] for line, start in zip(jobs, expected)] == expected and len(jobs) == len(expected)
    assert all(re.search(r": (val \d+\.\d%|DIVERGED at step \d+), test \d+\.\d%$", line) for line in jobs)
    assert re.match(rf"sweep {sweep_id} done: MLFLOW_TRACKING_URI=sqlite:///\S+ python -m experiments\.ui, then ", lines[-2]), lines[-2]
    assert lines[-2].endswith(f", then http://127.0.0.1:5000/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
                              f"&searchFilter=tags.%60sweep.id%60%20%3D%20%27{sweep_id}%27")
    assert lines[-1] == f"side by side: python -m experiments.compare --sweep {sweep_id}"


# --- parallel jobs on a new store --------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.xdist_group("swept")  # with the comparison tests that read the same sweep
def test_parallel_jobs_on_a_new_store_all_land_complete_in_one_experiment(swept, session_data_dir, tmp_path, compose_config):
    # conftest's shared sweep: four jobs on two joblib workers onto a store that did not exist,
    # tracking.register=true (the sweep still registers once, at its end, not each job's evaluation).
    made = json.loads((swept / "sweep.json").read_text())
    uri, rates = made["uri"], tuple(made["rates"])
    assert made["returncode"] == 0, made["stderr"]
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    check_output(made["stdout"], client, rates)
    assert "INFO" not in made["stderr"] and "[HYDRA]" not in made["stderr"], made["stderr"]
    experiments = {e.name: e.experiment_id for e in client.search_experiments()}
    assert sorted(experiments) == ["Default", "handgrad"]
    assert client.search_runs([experiments["Default"]]) == []
    parent, jobs = split_runs(client.search_runs([experiments["handgrad"]]))
    assert parent.info.status == "FINISHED"
    assert parent.data.params["sweep.grid"].endswith(f"model=softmax,linear optim.lr={','.join(map(str, rates))}")
    assert len(jobs) == 4
    combinations = sorted((r.data.params["model.name"], float(r.data.params["optim.lr"])) for r in jobs)
    assert combinations == sorted(itertools.product(["softmax", "linear"], rates))

    folders = job_folders(swept)
    assert sorted(folders) == list(range(4))
    outcomes = {}
    for run in jobs:
        folder = folders[int(run.data.tags["hydra.job.num"])]
        metrics = check_job_run(run, parent, folder)
        outcomes[run.data.params["model.name"], float(run.data.params["optim.lr"])] = metrics["diverged"]

        # The same weights as the stage run on its own, one job after another.
        overrides = [f"data.dir={session_data_dir}", *QUICK, f"model={run.data.params['model.name']}",
                     f"optim.lr={run.data.params['optim.lr']}", f"out_dir={tmp_path / 'alone'}", "tracking.enabled=false"]
        assert train.run(compose_config("train", overrides)) == 0
        assert (folder / "params.npz").read_bytes() == (tmp_path / "alone" / "params.npz").read_bytes()

    assert outcomes[("linear", 10)] and not outcomes[("linear", 0.002)] and not any(outcomes[("softmax", lr)] for lr in rates)
    assert not (swept / "results").exists()  # the DVC pipeline's outputs are never a sweep's
    check_registered(client, jobs, made["stdout"])


def check_registered(client, jobs, printed):
    """Each variant's best finished job by validation accuracy is version 1 of handgrad-<variant>,
    holding the alias, and the sweep said so in one line; a diverged job has no model."""
    for variant in ("softmax", "linear"):
        finished = [r for r in jobs if r.data.tags["variant"] == variant and r.info.status == "FINISHED"]
        best = max(json.loads((Path(r.data.tags["out_dir"]) / "metrics.json").read_text())["val"]["accuracy"] for r in finished)
        champion = client.get_model_version_by_alias(f"handgrad-{variant}", "champion")
        [registered] = [r for r in finished if r.info.run_id == champion.run_id]
        assert (str(champion.version), registered.data.metrics[SELECTION_METRIC]) == ("1", best)
        assert len(client.search_model_versions(f"name = 'handgrad-{variant}'")) == 1
        assert f"registered handgrad-{variant} version 1 (run {champion.run_id}, val accuracy {best:.2%}): now @champion" in printed
    assert all(r.outputs.model_outputs == [] for r in jobs if r.info.status == "FAILED")
    assert all(len(r.outputs.model_outputs) == 1 for r in jobs if r.info.status == "FINISHED")


@pytest.mark.slow
def test_a_sweep_stopped_by_a_failing_job_ends_its_run_failed(tmp_path, mlflow_store):
    result = sweep(tmp_path, tmp_path / "no data here", "optim.lr=0.1,0.5")

    assert result.returncode == 1
    assert "cannot train" in result.stderr
    [run] = mlflow_store.runs()  # the sweep's own; the job failed before starting one
    assert run.data.tags["sweep.parent"] == "true"
    assert run.info.status == "FAILED"
    assert run.data.tags["error"] == "RuntimeError: the sweep stopped before its last job ended"


@pytest.mark.slow
@pytest.mark.parametrize(
    "launcher, signum, exit_status, how, running",
    [("joblib", signal.SIGINT, 130, "Ctrl-C (SIGINT)", 2), ("basic", signal.SIGTERM, 143, "SIGTERM", 1)],
)
def test_an_interrupted_sweep_ends_its_run_and_every_running_job_killed_in_one_line(
        launcher, signum, exit_status, how, running, data_dir, tmp_path, mlflow_store):
    # Before: a KeyboardInterrupt traceback, "leaked semaphore" warnings, the sweep's run FAILED
    # and the job runs RUNNING for good (joblib SIGKILLs its workers before they can end them).
    process = start_stage("train", "-m", f"data.dir={data_dir}", "model=softmax,linear", "optim.lr=0.01,0.1",
                          "optim.epochs=1000000", "tracking.snapshot_every=0", f"hydra/launcher={launcher}",
                          *(["hydra.launcher.n_jobs=2"] if launcher == "joblib" else []), cwd=tmp_path)

    def jobs_started():  # the earliest moment: a job's run exists, it has logged nothing yet
        return len([r for r in mlflow_store.runs() if "sweep.parent" not in r.data.tags]) == running

    wait_until(once_changed(mlflow_store.path, jobs_started), process)
    assert interrupt(process, signum) == exit_status

    parent, jobs = split_runs(mlflow_store.runs())
    assert parent.info.status == "KILLED" and "error" not in parent.data.tags
    assert [job.info.status for job in jobs] == ["KILLED"] * running
    output = process.output()
    [sweep_dir] = (tmp_path / "multirun").glob("*/*")
    assert output.splitlines()[-1] == (
        f"interrupted by {how}: sweep {parent.info.run_id} marked KILLED, its job runs: {running} KILLED; "
        f"the finished jobs' outputs are in {sweep_dir.relative_to(tmp_path)}/"
    )
    for noise in ("Traceback", "KeyboardInterrupt", "leaked semaphore", "Error"):
        assert noise not in output


# --- configs ---------------------------------------------------------------------------------


@pytest.fixture
def compose_train(compose_config):
    return lambda *overrides: compose_config("train", overrides, hydra_config=True)


def test_the_preset_sweeps_both_variants_across_rates_on_both_sides_of_linear_stability(compose_train):
    cfg = compose_train("+experiment=variant_vs_lr")

    grid = cfg.hydra.sweeper.params
    assert grid["model"] == "softmax,linear"
    rates = [float(lr) for lr in grid["optim.lr"].split(",")]
    # ≈ 0.026 on the packaged data: linear/max_stable_lr
    assert min(rates) < 0.026 / 2 and max(rates) > 100 * 0.026
    assert cfg.tracking.experiment == "variant_vs_lr"
    assert re.fullmatch(r"multirun/\d{4}-\d\d-\d\d/\d\d-\d\d-\d\d", cfg.hydra.sweep.dir)


def test_a_jobs_evaluation_registers_nothing_even_when_the_pipeline_would(compose_train):
    from hydra import initialize_config_dir

    from experiments.sweep import evaluation_config
    from tests.paths import CONF_DIR

    cfg = compose_train("model=linear", "tracking.register=true", "out_dir=multirun/x/3")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        evaluation = evaluation_config(cfg)
    assert (evaluation.model.name, evaluation.train_dir, evaluation.tracking.register) == ("linear", "multirun/x/3", False)
    assert evaluation.tracking.experiment == cfg.tracking.experiment


def test_each_jobs_evaluation_has_its_own_values_though_evaluate_is_composed_once(compose_train):
    # evaluate.yaml is composed once per worker process and model: no job's values may leak
    # into the next job's evaluation through it.
    from hydra import initialize_config_dir

    from experiments.sweep import evaluation_config
    from tests.paths import CONF_DIR

    jobs = [compose_train("model=softmax", "optim.lr=0.1", "out_dir=multirun/x/0", "model.bias=true"),
            compose_train("model=linear", "out_dir=multirun/x/1"),
            compose_train("model=softmax", "optim.lr=0.3", "out_dir=multirun/x/2")]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        evaluations = [evaluation_config(job) for job in jobs]
    assert [(e.model.name, e.model.bias, e.train_dir) for e in evaluations] == [
        ("softmax", True, "multirun/x/0"), ("linear", False, "multirun/x/1"), ("softmax", False, "multirun/x/2")]


def test_the_slurm_launcher_config_is_composed_and_validated(compose_train):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="the [slurm] extra is not installed")

    launcher = compose_train("hydra/launcher=slurm", "hydra.launcher.partition=gpu").hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.partition, launcher.timeout_min, launcher.cpus_per_task) == ("gpu", 30, 2)
    with pytest.raises(ConfigCompositionException, match="partitionn"):
        compose_train("hydra/launcher=slurm", "hydra.launcher.partitionn=gpu")


# --- Optuna -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_optuna_searches_the_learning_rate_for_the_best_validation_accuracy(data_dir, tmp_path, mlflow_store):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="the [optuna] extra is not installed")
    result = sweep(tmp_path, data_dir, "+experiment=lr_search", "model=softmax", "hydra.sweeper.n_trials=2")

    assert result.returncode == 0, result.stderr
    parent, trials = split_runs(mlflow_store.runs())
    assert len(trials) == 2
    assert {mlflow_store.client.get_experiment(r.info.experiment_id).name for r in (parent, *trials)} == {"lr_search"}
    [sweep_dir] = (tmp_path / "multirun").glob("*/*")
    best = OmegaConf.load(sweep_dir / "optimization_results.yaml")
    best_value = max(r.data.metrics["score/val_accuracy"] for r in trials)
    assert best.best_value == best_value
    best_rates = [float(r.data.params["optim.lr"]) for r in trials if r.data.metrics["score/val_accuracy"] == best_value]
    assert any(best.best_params["optim.lr"] == pytest.approx(lr) for lr in best_rates)
    assert all(1e-4 <= float(r.data.params["optim.lr"]) <= 10 for r in trials)


# --- a shared tracking server -----------------------------------------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rest(url, path, payload=None):
    """GET (or POST ``payload``) an MLflow REST endpoint; the parsed JSON answer."""
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def server_environment(database, artifacts):
    """What ``mlflow server --backend-store-uri sqlite:///<database> --artifacts-destination
    <artifacts>`` hands the uvicorn process that serves MLflow's app: the settings of the README's
    UI (experiments.ui, MLflow's own names), but artifacts proxied by the server into ``artifacts``."""
    from mlflow import server

    return {**ui.server_environment(f"sqlite:///{database}"),
            server.ARTIFACT_ROOT_ENV_VAR: "mlflow-artifacts:/", server.ARTIFACTS_DESTINATION_ENV_VAR: str(artifacts)}


@pytest.fixture
def tracking_server(tmp_path, mlflow_template):
    """MLflow's server application on a free 127.0.0.1 port (sqlite backend and artifacts in
    tmp_path), answering /health; stopped whatever the test does. Served by uvicorn as ``mlflow
    server --workers 1`` has it served, without the command-line process that would import MLflow
    first only to start that one (the store is a copy of the migrated template: nothing to set up)."""
    shutil.copyfile(mlflow_template, tmp_path / "server.db")
    port = free_port()
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "mlflow.server.fastapi_app:app"],
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True,
        env={**os.environ, **server_environment(tmp_path / "server.db", tmp_path / "artifacts")},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (tmp_path / "server.log").read_text()
            try:
                with urllib.request.urlopen(url + "/health", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                assert time.monotonic() < deadline, "mlflow server did not answer /health in 60 s"
                time.sleep(0.1)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


@pytest.mark.slow
def test_a_sweep_against_a_tracking_server_records_every_job_over_http(data_dir, tmp_path, tracking_server):
    result = sweep(tmp_path, data_dir, "model=softmax,linear", "optim.lr=0.002", env={"MLFLOW_TRACKING_URI": tracking_server})

    assert result.returncode == 0, result.stderr
    experiment = rest(tracking_server, "/api/2.0/mlflow/experiments/get-by-name?experiment_name=handgrad")["experiment"]
    runs = rest(tracking_server, "/api/2.0/mlflow/runs/search", {"experiment_ids": [experiment["experiment_id"]]})["runs"]
    assert len(runs) == 3
    tags = [{t["key"]: t["value"] for t in run["data"].get("tags", [])} for run in runs]
    [parent_id] = [run["info"]["run_id"] for run, t in zip(runs, tags) if t.get("sweep.parent") == "true"]
    jobs = [(run, t) for run, t in zip(runs, tags) if t.get("sweep.parent") != "true"]
    assert sorted(t["variant"] for _, t in jobs) == ["linear", "softmax"]
    for run, job_tags in jobs:
        assert run["info"]["status"] == "FINISHED"
        assert job_tags["mlflow.parentRunId"] == parent_id
        metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
        test = json.loads((Path(job_tags["out_dir"]) / "test_metrics.json").read_text())["test"]
        assert metrics["test_accuracy"] == test["accuracy"]
        query = urllib.parse.urlencode({"run_id": run["info"]["run_id"], "path": "evaluation"})
        files = rest(tracking_server, f"/api/2.0/mlflow/artifacts/list?{query}")["files"]
        assert "evaluation/confusion.png" in {f["path"] for f in files}
    assert list((tmp_path / "artifacts").rglob("confusion.png"))  # uploaded to the server's artifact store
    # Each job's model went there too, and the sweep registered both through the server.
    assert len(list((tmp_path / "artifacts").rglob("MLmodel"))) == 2
    registered = rest(tracking_server, "/api/2.0/mlflow/registered-models/search")["registered_models"]
    assert sorted((m["name"], [a["alias"] for a in m["aliases"]]) for m in registered) == [
        ("handgrad-linear", ["champion"]), ("handgrad-softmax", ["champion"])]
    assert all(f"registered handgrad-{variant} version 1 (run " in result.stdout for variant in ("softmax", "linear"))
    # The sweep's own lines only: MLflow prints two links of its own as each run on a server ends.
    assert "View run" not in result.stdout and "View experiment" not in result.stdout
