"""The parts that run the project's commands: stage start-up, a fresh clone's DVC pipeline, a sweep."""

import os
import shutil
import statistics
import sys
import time
from pathlib import Path

from bench import REPO_ROOT
from bench.data import write_dataset
from bench.measure import repeated, run_command, spread

STAGES = ("download", "train", "evaluate")
SWEEP_PRESET = "variant_vs_lr"
INVALID_OVERRIDE = "data.val_fraction=2"  # every stage validates conf/data, and refuses this


class Workspace:
    """Temporary folders for the parts that run commands: the benchmark rows as a dataset, one
    MLflow store (created once, untimed: its migrations take seconds), a clone of the repository
    with its own store and data, as a fresh clone's first ``dvc repro`` makes them. Given
    ``store_template`` (an empty, migrated MLflow database), the store is a copy of it. Given
    ``dvc_target``, the clone's ``dvc repro`` runs that stage and those upstream of it only."""

    def __init__(self, root, images, labels, origin, store_template=None, dvc_target=None):
        self.root = Path(root)
        self.images, self.labels, self.origin = images, labels, origin
        self.store_template = store_template
        self.dvc_target = dvc_target  # a stage the clone's repros stop at; None: the whole pipeline
        self.mlflow_uri = f"sqlite:///{self.root / 'mlflow' / 'mlflow.db'}"
        self._data_dir = self._clone = None
        self.first_repro = None

    def env(self):
        """The environment of the project's commands, on the workspace's MLflow store."""
        return {**self.clone_env(), "MLFLOW_TRACKING_URI": self.mlflow_uri}

    def clone_env(self):
        """The environment of commands in the clone: its own store (conf/tracking), as a user's."""
        # The stages' commands say `python`: this interpreter's comes first on PATH.
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        env = {**os.environ, "PATH": path, "MLFLOW_DISABLE_TELEMETRY": "true", "DVC_NO_ANALYTICS": "1"}
        for name in ("DVC_ROOT", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID"):
            env.pop(name, None)
        return env

    def data_dir(self):
        if self._data_dir is None:
            self._data_dir = self.root / "data"
            write_dataset(self._data_dir, self.images, self.labels, self.origin)
        return self._data_dir

    def mlflow_store(self):
        database = Path(self.mlflow_uri.removeprefix("sqlite:///"))
        if not database.exists():
            database.parent.mkdir(parents=True)
            if self.store_template:
                shutil.copyfile(self.store_template, database)
                return
            code = f"from mlflow import MlflowClient; MlflowClient({self.mlflow_uri!r}).search_experiments()"
            run_command([sys.executable, "-c", code], self.root, self.env())

    def clone(self):
        """A clone of the repository's committed files, after its first ``dvc repro`` (timed): the
        data built offline (no network: the packaged digits), its MLflow store created (a copy of
        the store template when given), both variants trained and evaluated (with a ``dvc_target``,
        what it needs only); this venv reused."""
        if self._clone is None:
            self._clone = self.root / "repo"
            run_command(["git", "clone", "-q", str(REPO_ROOT), str(self._clone)], self.root, self.clone_env())
            if self.store_template:  # where the stages create theirs (conf/tracking): no migrations in the repro
                shutil.copyfile(self.store_template, self._clone / "mlflow.db")
            finished = run_command(dvc_command("repro", *self.dvc_targets()), self._clone, self.clone_env())
            self.first_repro = {"seconds": finished.seconds, "stages": finished.output.count("Running stage"),
                                "store": "copied" if self.store_template else "created", "target": self.dvc_target or "all"}
        return self._clone

    def dvc_targets(self):
        """The arguments that give ``dvc repro`` and ``dvc status`` the workspace's target."""
        return [self.dvc_target] if self.dvc_target else []


def dvc_command(*args):
    return [str(Path(sys.executable).with_name("dvc")), *args]


def train_command(*overrides):
    return [sys.executable, "-m", "pipeline.train", *overrides]


def startup(workspace, repeats):
    """Seconds from process start to a validated config for each stage command, and for scale a
    bare interpreter and ``import numpy``."""
    env = workspace.env()
    results = {
        "python -c pass": repeated([sys.executable, "-c", "pass"], REPO_ROOT, env, repeats),
        "python -c 'import numpy'": repeated([sys.executable, "-c", "import numpy"], REPO_ROOT, env, repeats),
    }
    for stage in STAGES:
        times = []
        for _ in range(repeats):
            finished = run_command([sys.executable, "-m", f"pipeline.{stage}", INVALID_OVERRIDE], REPO_ROOT, env, check=False)
            if finished.status != 2 or "val_fraction" not in finished.output:
                raise RuntimeError(f"pipeline.{stage} {INVALID_OVERRIDE}: expected a validation error, got exit {finished.status}:\n{finished.output[-2000:]}")
            times.append(finished.seconds)
        results[f"python -m pipeline.{stage}"] = spread(times)
    return results


def dvc(workspace, repeats):
    """A fresh clone's first ``dvc repro``; then in it a no-op ``dvc repro`` against ``dvc status``,
    by turns (of the same target)."""
    clone, env = workspace.clone(), workspace.clone_env()
    times = {"status": [], "repro": []}
    for _ in range(repeats):
        for command in times:
            finished = run_command(dvc_command(command, *workspace.dvc_targets()), clone, env)
            if command == "repro" and "Running stage" in finished.output:
                raise RuntimeError(f"a second dvc repro ran a stage: not a no-op\n{finished.output[-3000:]}")
            times[command].append(finished.seconds)
    status, repro = (statistics.median(times[command]) for command in ("status", "repro"))
    return {
        "first_repro_seconds": workspace.first_repro["seconds"],
        "first_repro_stages": workspace.first_repro["stages"],
        "first_repro_store": workspace.first_repro["store"],  # "copied": an empty store given, no migrations timed
        "first_repro_target": workspace.first_repro["target"],  # "all", or the stage it stopped at
        "status_seconds": spread(times["status"]),
        "noop_repro_seconds": spread(times["repro"]),
        "noop_repro_over_status": repro / status,
    }


def sweep(workspace):
    """The preset sweep with joblib in the clone, on its data and store, as a user runs it."""
    clone = workspace.clone()
    if not (clone / "conf" / "experiment" / f"{SWEEP_PRESET}.yaml").exists():
        return {"skipped": f"conf/experiment/{SWEEP_PRESET}.yaml is not committed"}
    sweep_dir = workspace.root / "sweep"
    overrides = [f"+experiment={SWEEP_PRESET}", "hydra/launcher=joblib", f"hydra.sweep.dir={sweep_dir}"]
    started = time.time()
    finished = run_command(train_command("-m", *overrides), clone, workspace.clone_env())
    return {
        "command": f"python -m pipeline.train -m +experiment={SWEEP_PRESET} hydra/launcher=joblib",
        "seconds": finished.seconds,
        "jobs": sum(1 for d in sweep_dir.iterdir() if d.name.isdigit()),
        "workers": joblib_workers(),
        "phases": sweep_phases(f"sqlite:///{clone / 'mlflow.db'}", started, started + finished.seconds),
    }


def joblib_workers():
    """The processes Hydra's joblib launcher starts by default (``n_jobs: -1``): one per core."""
    from joblib import cpu_count

    return cpu_count()


def sweep_phases(uri, started, ended):
    """Where a sweep's time went, from the start and end times of its runs in the store ``uri``
    (the latest sweep there), the command having run from ``started`` to ``ended`` (epoch
    seconds): until the sweep's run exists; from it to the first job's run; the jobs' runs, first
    start to last end, and a job run's median length (its training and tracking; the job's
    evaluation and Hydra's per-job work fall between runs); after the last job's run."""
    from mlflow import MlflowClient

    from pipeline.tracking import schema

    client = MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    [sweep_run] = client.search_runs(experiments, f"tags.`{schema.SWEEP_PARENT}` = 'true'", max_results=1,
                                     order_by=["attributes.start_time DESC"])
    jobs = [run for run in client.search_runs(experiments, f"tags.`{schema.SWEEP_ID}` = '{sweep_run.info.run_id}'")
            if run.info.run_id != sweep_run.info.run_id]  # the sweep's run carries its own id too
    starts = [job.info.start_time / 1000 for job in jobs]
    ends = [job.info.end_time / 1000 for job in jobs]
    return {
        "to_sweep_run": sweep_run.info.start_time / 1000 - started,
        "to_first_job": min(starts) - sweep_run.info.start_time / 1000,
        "jobs": max(ends) - min(starts),
        "job_runs": len(jobs),
        "job_run_seconds": spread(end - start for start, end in zip(starts, ends)),
        "after_last_job": ended - max(ends),
    }
