"""MLflow behind one small API; the only module of the project that imports mlflow.

Where runs go. ``tracking.uri`` (default ``sqlite:///mlflow.db``), unless the environment sets
``MLFLOW_TRACKING_URI`` (a shared server, say). A relative sqlite path is anchored at the project
root (``$DVC_ROOT`` when DVC runs the stage, which may be in a temporary copy of the repository,
else this repository's root), never at the current directory: runs must not land in a copy that
is deleted afterwards. Artifacts of a sqlite store go to ``mlruns/`` next to its database file,
set explicitly when the experiment is created (MLflow's default is ``./mlruns`` of whichever
directory first created it). Runs go into experiment ``tracking.experiment``, created if absent,
unless the environment sets ``MLFLOW_EXPERIMENT_ID``: a sweep (pipeline.sweep) creates the store
and the experiment once, before its jobs start, and hands its jobs the id this way, since
processes racing to create them break a new sqlite store or land in "Default".

What a run is here: one per process, created with ``start_run`` as a context manager that
always ends it: FINISHED, FAILED (an exception, or ``run.end_status = "FAILED"``: a diverged
training) or KILLED (Ctrl-C). It is never MLflow's global "active run", so a leftover one cannot
break the next job. Metrics are buffered and sent with ``log_batch`` (one synchronous
``log_metric`` costs ~3 ms in sqlite, a batch ~0.06 ms per metric) every FLUSH_SECONDS and at
the end; every write goes through one background thread, so training does not wait for sqlite
commits or PNG encoding.

``mlflow`` (1.2 s to import) and matplotlib are imported only when tracking is enabled:
``tracking.enabled=false`` runs without any MLflow at all.
"""

import fcntl
import getpass
import os
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
SQLITE_PREFIX = "sqlite:///"
UI_ADDRESS = "http://127.0.0.1:5000"
# MLflow 3's UI opens an experiment in its GenAI view unless told this is model training.
RUNS_PAGE = "/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
FLUSH_SECONDS = 2.0
# MLflow's limits per log_batch call.
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_OR_TAGS_PER_BATCH = 100
EXPERIMENT_ID_VARIABLE = "MLFLOW_EXPERIMENT_ID"
MAX_QUEUED_WRITES = 4


class TrackingError(RuntimeError):
    pass


# --- where ---------------------------------------------------------------------------------


def project_root():
    """``$DVC_ROOT`` when set (DVC runs stages there or in temporary copies of it), else the repo."""
    return Path(os.environ.get("DVC_ROOT") or REPO_ROOT)


def resolve_uri(configured_uri):
    """The tracking URI to use: ``$MLFLOW_TRACKING_URI`` or the configured one, with a relative
    sqlite path made absolute against ``project_root()``."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or configured_uri
    if uri.startswith(SQLITE_PREFIX):
        path = Path(uri.removeprefix(SQLITE_PREFIX))
        if not path.is_absolute():
            return SQLITE_PREFIX + str(project_root() / path)
    return uri


def sqlite_path(uri):
    """The database file of a ``sqlite:///`` URI, None for any other store."""
    return Path(uri.removeprefix(SQLITE_PREFIX)) if uri.startswith(SQLITE_PREFIX) else None


def artifact_location(uri, experiment_name):
    """``mlruns/<experiment>`` next to a sqlite database; None (the server decides) otherwise."""
    database = sqlite_path(uri)
    if database is None:
        return None
    folder = re.sub(r"[^A-Za-z0-9._-]+", "_", experiment_name)
    return (database.parent / "mlruns" / folder).as_uri()


def runs_page(uri, experiment_id):
    """The link to the experiment's training-runs table: on the server itself for an http(s)
    store, on a local ``mlflow ui`` (default port) otherwise."""
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else UI_ADDRESS
    return base + RUNS_PAGE.format(experiment_id=experiment_id)


def how_to_open(uri, experiment_id):
    """One line telling a person how to see the runs: the ``mlflow ui`` command, then the link."""
    database = sqlite_path(uri)
    if database is None:
        return runs_page(uri, experiment_id)
    shown = database.relative_to(Path.cwd()) if database.is_relative_to(Path.cwd()) else database
    return f"mlflow ui --backend-store-uri {SQLITE_PREFIX}{shown}, then {runs_page(uri, experiment_id)}"


def connect(uri, experiment_name=None):
    """An MlflowClient on ``uri`` whose store is open, and the id of ``experiment_name`` (got or
    created) when one is named.

    Opening a sqlite store creates or migrates its schema, and processes doing that at once
    (a ``dvc queue start -j 2`` on a new store) leave it half-migrated for good; processes racing
    to create an experiment land in "Default". So for sqlite both happen under an exclusive lock
    on ``<database>.lock``; a server store serialises them itself.
    """
    from mlflow import MlflowClient

    with store_lock(sqlite_path(uri)):
        client = MlflowClient(uri)
        client.search_experiments(max_results=1)  # opens (creates, migrates) the store
        return client, experiment_name and ensure_experiment(client, uri, experiment_name)


@contextmanager
def store_lock(database):
    """An exclusive lock on ``<database>.lock`` for a sqlite store; nothing for a server's."""
    if database is None:
        yield
        return
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_name(database.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


# --- what ----------------------------------------------------------------------------------


def flatten(tree, prefix=""):
    """A nested mapping as ``{"a.b.c": value}``; lists become their string form."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat


def git_tags(directory=REPO_ROOT):
    """The commit checked out in ``directory`` and whether tracked files differ from it."""

    def git(*args):
        return subprocess.run(["git", *args], cwd=directory, capture_output=True, text=True, check=True).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        dirty = bool(git("status", "--porcelain", "--untracked-files=no").strip())
    except (OSError, subprocess.CalledProcessError):
        return {"git.commit": "unknown"}
    return {"git.commit": commit, "git.dirty": str(dirty).lower(), "mlflow.source.git.commit": commit}


def system_tags(source):
    """Who ran what, in the tags MLflow's UI shows as the run's user and source."""
    return {"mlflow.user": getpass.getuser(), "mlflow.source.name": source, "mlflow.source.type": "LOCAL"}


# --- the run -------------------------------------------------------------------------------


@contextmanager
def start_run(tracking, run_name, params, tags, source="pipeline.train"):
    """A Run for one training (or a DisabledRun when ``tracking.enabled`` is false), ended on exit.

    ``tracking``: the config group (enabled, uri, experiment). ``params`` and ``tags``: flat
    mappings, logged at once. The run ends FINISHED, or ``run.end_status`` if the caller set it;
    FAILED on an exception (its message in tag ``error``), KILLED on KeyboardInterrupt.
    """
    if not tracking.enabled:
        yield DisabledRun()
        return
    run = Run.create(resolve_uri(tracking.uri), tracking.experiment, run_name, params, tags, source)
    try:
        yield run
    except KeyboardInterrupt:
        run.end("KILLED")
        raise
    except BaseException as error:
        run.end("FAILED", error=error)
        raise
    run.end(run.end_status)


def ensure_experiment(client, uri, name):
    """The id of experiment ``name``, created (with its artifacts next to a sqlite store) if absent.

    Safe against another process creating it at the same moment.
    """
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name, artifact_location=artifact_location(uri, name))
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            experiment = client.get_experiment_by_name(name)
    if experiment.lifecycle_stage != "active":
        raise TrackingError(
            f"MLflow experiment {name!r} (id {experiment.experiment_id}) is deleted: restore it with "
            f"`mlflow experiments restore --experiment-id {experiment.experiment_id}` or set tracking.experiment"
        )
    return experiment.experiment_id


class Run:
    """An MLflow run being recorded. Writes go through one background thread, in order, so
    training does not wait for sqlite commits or PNG encoding; ``end`` waits for them."""

    enabled = True

    def __init__(self, client, run_id, experiment_id, tracking_uri):
        self.client, self.run_id = client, run_id
        self.experiment_id, self.tracking_uri = experiment_id, tracking_uri
        self.end_status = "FINISHED"
        self.pending_metrics = []
        self.last_flush = time.monotonic()
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow-writer")
        self.writes = []

    @classmethod
    def create(cls, uri, experiment_name, run_name, params, tags, source):
        from mlflow.entities import Param

        handed_id = os.environ.get(EXPERIMENT_ID_VARIABLE)
        client, experiment_id = connect(uri, None if handed_id else experiment_name)
        experiment_id = handed_id or experiment_id
        run_id = client.create_run(experiment_id, run_name=run_name, tags=system_tags(source)).info.run_id
        run = cls(client, run_id, experiment_id, uri)
        try:
            for batch in _batches([Param(k, str(v)) for k, v in params.items()], MAX_PARAMS_OR_TAGS_PER_BATCH):
                client.log_batch(run_id, params=batch)
            run.set_tags(tags)
        except BaseException as error:
            run.end("KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED", error=error)
            raise
        return run

    def set_tags(self, tags):
        from mlflow.entities import RunTag

        for batch in _batches([RunTag(k, str(v)) for k, v in tags.items()], MAX_PARAMS_OR_TAGS_PER_BATCH):
            self._write(self.client.log_batch, self.run_id, tags=batch)

    def log_metrics(self, metrics, step):
        """Buffer ``{key: value}`` at ``step``; sent every FLUSH_SECONDS and at the end."""
        from mlflow.entities import Metric

        timestamp = int(time.time() * 1000)
        self.pending_metrics.extend(Metric(key, float(value), timestamp, step) for key, value in metrics.items())
        if time.monotonic() - self.last_flush >= FLUSH_SECONDS:
            self.flush()

    def log_series(self, key, steps, values):
        """Buffer one metric at many steps (e.g. the per-step loss of an epoch)."""
        from mlflow.entities import Metric

        timestamp = int(time.time() * 1000)
        self.pending_metrics.extend(Metric(key, float(v), timestamp, int(s)) for s, v in zip(steps, values))

    def flush(self):
        pending, self.pending_metrics = self.pending_metrics, []
        for batch in _batches(pending, MAX_METRICS_PER_BATCH):
            self._write(self.client.log_batch, self.run_id, metrics=batch)
        self.last_flush = time.monotonic()

    def log_snapshot(self, W, epoch):
        """W at ``epoch`` as ``weights/W_epoch_<epoch>.npy`` and as the tiled picture of its rows
        (image key ``W``: the UI's step slider shows the templates forming)."""
        self._write(self._log_snapshot, np.array(W, order="C"), epoch)

    def _log_snapshot(self, W, epoch):
        from pipeline.pictures import templates_image

        with TemporaryDirectory() as folder:
            path = Path(folder) / f"W_epoch_{epoch:04d}.npy"
            np.save(path, W, allow_pickle=False)
            self.client.log_artifact(self.run_id, str(path), artifact_path="weights")
        self.client.log_image(self.run_id, templates_image(W), key="W", step=epoch)

    def log_loss_curve(self, **curve):
        """The loss-curve figure (pipeline.pictures.loss_curve_figure's arguments) as plots/loss_curve.png."""
        self._write(self._log_loss_curve, curve)

    def _log_loss_curve(self, curve):
        from pipeline.pictures import loss_curve_figure

        self.client.log_figure(self.run_id, loss_curve_figure(**curve), "plots/loss_curve.png")

    def log_dict(self, mapping, artifact_file):
        self._write(self.client.log_dict, self.run_id, mapping, artifact_file)

    def end(self, status, error=None):
        """Send what is buffered, wait for every queued write and end the run with ``status``;
        FAILED instead if a write failed."""
        try:
            try:
                self.flush()
            finally:
                self.writer.shutdown(wait=True)
            self._raise_failed_write()
        except BaseException as write_error:
            status = "KILLED" if isinstance(write_error, KeyboardInterrupt) else "FAILED"
            error = error or write_error
            raise
        finally:
            if error is not None:
                self.client.set_tag(self.run_id, "error", f"{type(error).__name__}: {error}"[:5000])
            self.client.set_terminated(self.run_id, status=status)

    def wait(self):
        """Block until every write queued so far is done; raise the error of one that failed."""
        for write in self.writes:
            write.exception()  # waits, raises nothing
        self._raise_failed_write()

    def _write(self, function, *args, **kwargs):
        """Queue a write, after raising the error of any earlier write that failed.

        At most MAX_QUEUED_WRITES wait at once: when epochs are shorter than their writes, the
        training waits for the oldest rather than queueing without bound (memory, and an end,
        or a Ctrl-C, that would wait for the whole backlog).
        """
        self._raise_failed_write()
        while len(self.writes) >= MAX_QUEUED_WRITES:
            self.writes[0].exception()  # waits for it; raises nothing
            self._raise_failed_write()
        self.writes.append(self.writer.submit(function, *args, **kwargs))

    def _raise_failed_write(self):
        finished = [w for w in self.writes if w.done()]
        self.writes = [w for w in self.writes if not w.done()]
        for write in finished:
            if not write.cancelled():
                write.result()


class DisabledRun:
    """Run's interface doing nothing: ``tracking.enabled=false``."""

    enabled = False
    run_id = experiment_id = tracking_uri = None
    end_status = "FINISHED"

    def set_tags(self, tags):
        pass

    def log_metrics(self, metrics, step):
        pass

    def log_series(self, key, steps, values):
        pass

    def flush(self):
        pass

    def log_snapshot(self, W, epoch):
        pass

    def log_loss_curve(self, **curve):
        pass

    def log_dict(self, mapping, artifact_file):
        pass


def _batches(items, size):
    return [items[i : i + size] for i in range(0, len(items), size)]


# --- logging into the training's run (the evaluate stage) ----------------------------------


@contextmanager
def continue_run(tracking, trained_run, run_name, params, tags, source="pipeline.evaluate"):
    """The run that trained W, to log more into it; a DisabledRun when ``tracking.enabled`` is false.

    ``trained_run``: the train stage's record (``run_id``, None if training was not tracked).
    That run is not ended here: its status stays what training made it (FAILED for a diverged
    training). If it is not in the store (a deleted database or run, another store), a new run
    is started as ``start_run`` does, tagged ``trained_by_run`` with the old id, and ended on exit.
    """
    if not tracking.enabled:
        yield DisabledRun()
        return
    from mlflow.exceptions import MlflowException

    uri = resolve_uri(tracking.uri)
    client, _ = connect(uri)
    old_id = trained_run.get("run_id")
    try:
        found = client.get_run(old_id) if old_id else None
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        found = None
    if found is not None and found.info.lifecycle_stage == "active":
        run = Run(client, old_id, found.info.experiment_id, uri)
        try:
            yield run
        finally:
            run.flush()
            run.writer.shutdown(wait=True)
        run._raise_failed_write()
        return
    link = {
        "trained_by_run": old_id or "none",
        "trained_by_run.note": (
            f"the training run {old_id} is not in {uri}; this run holds the evaluation of its W"
            if old_id
            else "the training was not tracked; this run holds the evaluation of its W"
        ),
    }
    with start_run(tracking, run_name, params, {**tags, **link}, source) as run:
        yield run


def log_files(run, paths, artifact_path):
    """Each file of ``paths`` as an artifact under ``artifact_path``; nothing when tracking is off."""
    if run.enabled:
        for path in paths:
            run.client.log_artifact(run.run_id, str(path), artifact_path=artifact_path)


def where_logged(run):
    """``MLflow run <id>: <how to open it>``, or ``MLflow off``: for a stage's final line."""
    if not run.enabled:
        return "MLflow off"
    return f"MLflow run {run.run_id}: {how_to_open(run.tracking_uri, run.experiment_id)}"


# --- reading runs back (experiments.compare) -----------------------------------------------


def search_runs(uri, filter_string="", experiment_name=None):
    """The runs matching ``filter_string`` (MLflow's search syntax) in experiment
    ``experiment_name``, or in every experiment when None, as ``mlflow.search_runs`` gives them:
    a pandas DataFrame, one row per run, with columns ``run_id``, ``experiment_id``, ``status``,
    ``start_time``, ``end_time``, ``params.<key>``, ``metrics.<key>`` (latest value) and
    ``tags.<key>``. TrackingError if ``experiment_name`` does not exist."""
    import mlflow

    experiment_ids, everywhere = None, True
    if experiment_name is not None:
        experiment = connect(uri)[0].get_experiment_by_name(experiment_name)
        if experiment is None:
            raise TrackingError(f"there is no MLflow experiment {experiment_name!r} in {uri}")
        experiment_ids, everywhere = [experiment.experiment_id], False
    mlflow.set_tracking_uri(uri)  # mlflow.search_runs reads the process-wide URI
    return mlflow.search_runs(experiment_ids, filter_string, search_all_experiments=everywhere)


def metric_histories(uri, run_ids, key):
    """Every logged value of metric ``key`` of each run: a pandas DataFrame with columns
    ``run_id``, ``step``, ``value``, sorted by run and step (none for a run that has not logged it)."""
    import pandas as pd

    client, _ = connect(uri)
    rows = [(run_id, m.step, m.value) for run_id in run_ids for m in client.get_metric_history(run_id, key)]
    return pd.DataFrame(rows, columns=["run_id", "step", "value"]).sort_values(["run_id", "step"], ignore_index=True)


def log_summary(uri, paths, artifact_path, run_id=None, experiment_id=None, run_name=None, tags=None):
    """Log ``paths`` as artifacts under ``artifact_path`` of run ``run_id`` (its status untouched)
    or, when None, of a new run ``run_name`` with ``tags`` in ``experiment_id``, ended FINISHED
    (FAILED if the logging fails). Returns the run's id."""
    client, _ = connect(uri)
    created = run_id is None
    if created:
        run_id = client.create_run(experiment_id, run_name=run_name, tags={**system_tags("experiments.compare"), **(tags or {})}).info.run_id
    status = "FAILED"
    try:
        for path in paths:
            client.log_artifact(run_id, str(path), artifact_path=artifact_path)
        status = "FINISHED"
    finally:
        if created:
            client.set_terminated(run_id, status=status)
    return run_id
