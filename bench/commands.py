"""The parts that run the project's commands: a tracked training, stage start-up, DVC, a sweep."""

import json
import os
import statistics
import sys
from pathlib import Path

from bench import REPO_ROOT
from bench.data import write_dataset
from bench.measure import repeated, run_command, spread

STAGES = ("download", "train", "evaluate")
SWEEP_PRESET = "variant_vs_lr"
INVALID_OVERRIDE = "data.val_fraction=2"  # every stage validates conf/data, and refuses this
# MLflow's start-up in a training run: import it, open the store, create a run and end it.
MLFLOW_STARTUP_PROBE = (
    "import os; from pipeline import tracking; tracking.Run.create(os.environ['MLFLOW_TRACKING_URI'], "
    "'handgrad', 'bench: MLflow start-up', {}, {}, 'bench').end('FINISHED')"
)
WITHOUT_MLFLOW_PROBE = "from pipeline import tracking"


class Workspace:
    """Temporary folders for the parts that run commands: the benchmark rows as a dataset, one
    MLflow store (created once, untimed: its migrations take seconds), a clone of the repository."""

    def __init__(self, root, images, labels, origin):
        self.root = Path(root)
        self.images, self.labels, self.origin = images, labels, origin
        self.mlflow_uri = f"sqlite:///{self.root / 'mlflow' / 'mlflow.db'}"
        self._data_dir = self._clone = None
        self.first_repro_seconds = None

    def env(self):
        # The stages' commands say `python`: this interpreter's comes first on PATH.
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        env = {**os.environ, "PATH": path, "MLFLOW_TRACKING_URI": self.mlflow_uri,
               "MLFLOW_DISABLE_TELEMETRY": "true", "DVC_NO_ANALYTICS": "1"}
        env.pop("DVC_ROOT", None)
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
            code = f"from mlflow import MlflowClient; MlflowClient({self.mlflow_uri!r}).search_experiments()"
            run_command([sys.executable, "-c", code], self.root, self.env())

    def clone(self):
        """A clone of the repository's committed files, after one full ``dvc repro`` (timed)."""
        if self._clone is None:
            self._clone = self.root / "repo"
            run_command(["git", "clone", "-q", str(REPO_ROOT), str(self._clone)], self.root, self.env())
            self.mlflow_store()
            self.first_repro_seconds = run_command(dvc_command("repro"), self._clone, self.env()).seconds
        return self._clone


def dvc_command(*args):
    return [str(Path(sys.executable).with_name("dvc")), *args]


def train_command(*overrides):
    return [sys.executable, "-m", "pipeline.train", *overrides]


def tracking_share(workspace, repeats):
    """A default training run on the benchmark rows, tracking off and on by turns; and MLflow's
    start-up alone: a process creating and ending an empty run, less one importing
    pipeline.tracking."""
    data_dir, env = workspace.data_dir(), workspace.env()
    workspace.mlflow_store()
    runs = {"off": [], "on": []}
    for _ in range(repeats):
        for mode in runs:
            out_dir = workspace.root / f"train_tracking_{mode}"
            overrides = (f"data.dir={data_dir}", f"out_dir={out_dir}", f"tracking.enabled={mode == 'on'}")
            finished = run_command(train_command(*overrides), REPO_ROOT, env, peak_rss=True)
            stage = json.loads((out_dir / "timing.json").read_text())["seconds"]
            runs[mode].append({"wall": finished.seconds, "stage_total": stage["total"], "stage_train": stage["train"], "peak_rss_mb": finished.peak_rss / 2**20})
    with_mlflow = repeated([sys.executable, "-c", MLFLOW_STARTUP_PROBE], REPO_ROOT, env, repeats + 1)
    without = repeated([sys.executable, "-c", WITHOUT_MLFLOW_PROBE], REPO_ROOT, env, repeats + 1)
    startup = with_mlflow["median"] - without["median"]
    on, off = (statistics.median(r["wall"] for r in runs[mode]) for mode in ("on", "off"))
    return {
        "command": "python -m pipeline.train data.dir=<the rows> out_dir=<temp> tracking.enabled=<true|false>",
        "rows": len(workspace.labels),
        "runs": {mode: {key: spread(r[key] for r in rs) for key in rs[0]} for mode, rs in runs.items()},
        "mlflow_seconds": on - off,
        "mlflow_share": (on - off) / on,
        "mlflow_startup_seconds": startup,
        "mlflow_share_after_startup": (on - off - startup) / on,
        "peak_rss_mb": {mode: max(r["peak_rss_mb"] for r in rs) for mode, rs in runs.items()},
    }


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
    """A no-op ``dvc repro`` against ``dvc status``, by turns, in a clone after a full repro."""
    clone, env = workspace.clone(), workspace.env()
    times = {"status": [], "repro": []}
    for _ in range(repeats):
        for command in times:
            finished = run_command(dvc_command(command), clone, env)
            if command == "repro" and "Running stage" in finished.output:
                raise RuntimeError(f"a second dvc repro ran a stage: not a no-op\n{finished.output[-3000:]}")
            times[command].append(finished.seconds)
    status, repro = (statistics.median(times[command]) for command in ("status", "repro"))
    return {
        "first_repro_seconds": workspace.first_repro_seconds,
        "status_seconds": spread(times["status"]),
        "noop_repro_seconds": spread(times["repro"]),
        "noop_repro_over_status": repro / status,
    }


def sweep(workspace):
    """The preset sweep in the clone, on the benchmark rows, once with each launcher."""
    clone = workspace.clone()
    if not (clone / "conf" / "experiment" / f"{SWEEP_PRESET}.yaml").exists():
        return {"skipped": f"conf/experiment/{SWEEP_PRESET}.yaml is not committed"}
    results = {}
    for launcher in ("basic", "joblib"):
        sweep_dir = workspace.root / "sweeps" / launcher
        overrides = [f"+experiment={SWEEP_PRESET}", f"data.dir={workspace.data_dir()}", f"hydra.sweep.dir={sweep_dir}", f"hydra/launcher={launcher}"]
        finished = run_command(train_command("-m", *overrides), clone, workspace.env())
        results[launcher] = {"seconds": finished.seconds, "jobs": sum(1 for d in sweep_dir.iterdir() if d.name.isdigit())}
    return {
        "command": f"python -m pipeline.train -m +experiment={SWEEP_PRESET} data.dir=<the rows> hydra/launcher=<basic|joblib>",
        "sequential": results["basic"],
        "joblib": results["joblib"],
        "joblib_over_sequential": results["joblib"]["seconds"] / results["basic"]["seconds"],
    }
