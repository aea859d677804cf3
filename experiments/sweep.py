"""Sweeps: Hydra multiruns of the train stage, one MLflow run per job, safe in parallel.

    python -m pipeline.train -m model=softmax,linear optim.lr=0.01,0.1,1,10
    python -m pipeline.train -m +experiment=variant_vs_lr hydra/launcher=joblib
    python -m experiments.compare                  # the latest sweep, side by side

``SweepCallback`` (``hydra.callbacks`` in conf/train.yaml) does, around Hydra's jobs:

- before any job starts (``on_multirun_start``, in the launching process): creates the MLflow
  store and experiment if they are new, and the sweep's own run, once; then hands the jobs the
  store, the experiment id and the sweep's run id through the environment, which the jobs'
  processes inherit (joblib starts its workers after this): ``MLFLOW_TRACKING_URI``,
  ``MLFLOW_EXPERIMENT_ID`` (pipeline.tracking uses it instead of looking the experiment up by
  name) and ``HANDGRAD_SWEEP_RUN_ID``. Why: jobs that create a new sqlite store at once leave it
  half-migrated, and jobs racing to create the experiment log into "Default".
- after each job (``on_job_end``, in the job's process): evaluates its W on the test split with
  the evaluate stage itself (pipeline.evaluate.run), so every run of a sweep has its test
  accuracy, and prints the job's one line: its number, run, validation and test accuracy (the
  stages print nothing in a sweep's jobs).
- after the last job (``on_multirun_end``): ends the sweep's run FINISHED, restores the
  environment, prints the one link to the sweep's runs, and registers the best job of each variant by validation accuracy (never test
  accuracy) as a version of ``handgrad-<variant>`` (pipeline.registry; the alias ``champion``
  moves to it only if it beats the version holding it), printing one line per variant. A sweep
  stopped before by a job exiting has its run ended FAILED when the process exits. Interrupted
  (Ctrl-C, SIGTERM; pipeline.exits.on_interrupt): the sweep's run and every job run still
  RUNNING end KILLED (joblib kills its workers before they can end their own), and the stage's
  one line says so. A sweep stopped before its end registers nothing.

Each job's run is tagged ``sweep.id`` (the sweep's run id) and ``mlflow.parentRunId`` (so that
MLflow's UI nests it under the sweep's run) by the train stage itself, from
``HANDGRAD_SWEEP_RUN_ID`` (pipeline.tracking.sweep_job_tags): the stage never imports this
module. Its files go to its own folder, ``multirun/<date>/<time>/<job number>/`` (``out_dir`` in
conf/train.yaml).
"""

import atexit
import functools
import json
import os
import sys
from pathlib import Path

from hydra import compose
from hydra.core.utils import JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import OmegaConf

from pipeline import tracking
from pipeline.exits import on_interrupt
from pipeline.tracking import schema

HANDED_TO_JOBS = ("MLFLOW_TRACKING_URI", schema.EXPERIMENT_ID_VARIABLE, schema.SWEEP_RUN_VARIABLE)


def grid(config):
    """The sweep as typed: the command line's overrides, then ``hydra.sweeper.params`` (a
    preset's)."""
    overrides = list(config.hydra.overrides.task)
    params = config.hydra.sweeper.get("params") or {}
    return " ".join(overrides + [f"{key}={value}" for key, value in params.items()])


class SweepCallback(Callback):
    def __init__(self):
        self.run = None  # the sweep's run, in the launching process
        self.saved_environment = {}
        self.sweep_dir = None
        self.cancel_on_interrupt = lambda: None

    def __getstate__(self):
        # Launchers ship the callbacks to the jobs' processes, which need nothing of the sweep run.
        return {"run": None, "saved_environment": {}, "sweep_dir": None, "cancel_on_interrupt": None}

    def __setstate__(self, state):
        self.__init__()

    def on_multirun_start(self, config, **kwargs):
        if not config.tracking.enabled:
            return
        uri = tracking.resolve_uri(config.tracking.uri)
        sweep_dir = self.sweep_dir = config.hydra.sweep.dir
        self.run = tracking.Run.create(
            uri, config.tracking.experiment, f"sweep {grid(config)}",
            params={schema.SWEEP_GRID: grid(config), schema.SWEEP_DIR: sweep_dir},
            tags={**tracking.git_tags(), schema.SWEEP_PARENT: "true", schema.HYDRA_SWEEP_DIR: sweep_dir},
            source=schema.SOURCE_SWEEP,
        )
        self.run.set_tags({schema.SWEEP_ID: self.run.run_id})
        self.run.wait()  # the sweep's run complete before any job starts
        atexit.register(self._end, "FAILED", RuntimeError("the sweep stopped before its last job ended"))
        self.cancel_on_interrupt = on_interrupt(self._interrupted)
        self.saved_environment = {name: os.environ.get(name) for name in HANDED_TO_JOBS}
        os.environ.update(dict(zip(HANDED_TO_JOBS, (uri, self.run.experiment_id, self.run.run_id))))
        print(f"sweep {self.run.run_id} into {sweep_dir}/", flush=True)

    def on_job_end(self, config, job_return, **kwargs):
        if config.hydra.mode != RunMode.MULTIRUN or job_return.status != JobStatus.COMPLETED:
            return
        from pipeline import evaluate  # not at the top: only sweep jobs need it, and it imports matplotlib

        status = evaluate.run(evaluation_config(config), quiet=True)
        if status:
            print(f"job {config.hydra.job.num}: evaluation failed (exit status {status})", file=sys.stderr)
        print(job_line(config), flush=True)

    def on_multirun_end(self, config, **kwargs):
        if self.run is None:
            return
        run_id, uri, experiment_id = self.run.run_id, self.run.tracking_uri, self.run.experiment_id
        self._end("FINISHED")
        for name, value in self.saved_environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        register(uri, run_id)
        its_runs = f"tags.`{schema.SWEEP_ID}` = '{run_id}'"
        print(f"sweep {run_id} done: {tracking.how_to_open(uri, experiment_id, search=its_runs)}")
        print(f"side by side: python -m experiments.compare --sweep {run_id}")

    def _interrupted(self):
        """The sweep's runs ended KILLED; the note for the stage's message."""
        if self.run is None:
            return None
        run_id, sweep_dir = self.run.run_id, self.sweep_dir
        jobs = tracking.end_sweep_jobs(self.run, "KILLED")
        self._end("KILLED")
        shown = ", ".join(f"{count} {status}" for status, count in sorted(jobs.items())) or "none started"
        return f"sweep {run_id} marked KILLED, its job runs: {shown}; the finished jobs' outputs are in {sweep_dir}/"

    def _end(self, status, error=None):
        atexit.unregister(self._end)
        self.cancel_on_interrupt()
        run, self.run = self.run, None
        run.end(status, error=error)


def job_line(config):
    """A job's one line: its number, its run's name, how it went (from the files it wrote)."""
    from pipeline.train import run_name

    out_dir = Path(config.out_dir)
    metrics = json.loads((out_dir / "metrics.json").read_text())
    test = out_dir / "test_metrics.json"
    test_accuracy = f"{json.loads(test.read_text())['test']['accuracy']:.1%}" if test.exists() else "-"
    outcome = f"DIVERGED at step {metrics['diverged_at_step']:,}" if metrics["diverged"] else f"val {metrics['val']['accuracy']:.1%}"
    return f"#{config.hydra.job.num} {run_name(config)}: {outcome}, test {test_accuracy}"
def register(uri, sweep_run_id):
    """The best job of each variant of the sweep as a registered model version, one line each."""
    from mlflow.exceptions import MlflowException

    from pipeline.registry import register_best

    try:
        registrations = register_best(uri, sweep_run_id=sweep_run_id)
    except MlflowException as error:
        print(f"sweep {sweep_run_id}: registering its best models failed: {error.message.splitlines()[0]}", file=sys.stderr)
        return
    for registration in registrations:
        print(f"registered {registration}")
    if not registrations:
        print(f"sweep {sweep_run_id}: nothing registered, no job finished with a model")


@functools.cache
def evaluate_config(model):
    """conf/evaluate.yaml composed with ``model=<model>``: once per worker process and model, not
    after every job (the conf files do not change during a sweep; the job's values are merged
    into a copy)."""
    return compose("evaluate", overrides=[f"model={model}"])


def evaluation_config(config):
    """The evaluate stage's config (conf/evaluate.yaml) for the parameters a job wrote: the job's
    data, model (its overrides too: model.hidden=256) and tracking (registering nothing),
    ``train_dir`` the job's ``out_dir``."""
    evaluation = evaluate_config(config.hydra.runtime.choices.model)
    job = {key: OmegaConf.to_container(config[key], resolve=True) for key in ("data", "model", "tracking")}
    job["tracking"]["register"] = False  # the sweep registers its best jobs at its end, not every job
    return OmegaConf.merge(evaluation, {**job, "train_dir": config.out_dir})
