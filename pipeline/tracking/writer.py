"""A run being recorded: ``Run`` writes into MLflow, ``DisabledRun`` (``tracking.enabled=false``)
takes the same calls and records nothing.

Metrics are buffered and sent with ``log_batch`` (a batch costs far less per metric than one
synchronous ``log_metric`` in sqlite) every FLUSH_SECONDS and at the end; every write goes through
one background thread, so training does not wait for sqlite commits or PNG encoding. Pictures are
the stages': they hand over the function that draws one (called on that thread, so training does
not wait for the drawing either); this module draws nothing itself. So are models: the stage hands
over the function that logs one.
"""

import getpass
import json
import os
import posixpath
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np

from pipeline.tracking import schema
from pipeline.tracking.store import TrackingError, connect, is_store_failure, store_errors, store_failure, without_store_hint

FLUSH_SECONDS = 2.0
# MLflow's limits per log_batch call.
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_OR_TAGS_PER_BATCH = 100
MAX_QUEUED_WRITES = 4
MAX_ERROR_CHARS = 5000


def system_tags(source):
    """Who ran what, in the tags MLflow's UI shows as the run's user and source."""
    return {"mlflow.user": getpass.getuser(), "mlflow.source.name": source, "mlflow.source.type": "LOCAL"}


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
        self.pictured = False  # whether a snapshot's picture was logged yet (the first goes to step 0 too)

    @classmethod
    def create(cls, uri, experiment_name, run_name, params, tags, source):
        """A new run in ``experiment_name`` (or in ``$MLFLOW_EXPERIMENT_ID``, a sweep's), with
        ``params`` and ``tags`` logged; ended FAILED (KILLED on Ctrl-C) if logging them fails."""
        handed_id = os.environ.get(schema.EXPERIMENT_ID_VARIABLE)
        client, experiment_id = connect(uri, None if handed_id else experiment_name)
        from mlflow.entities import Param  # after connect, which imports MLflow

        experiment_id = handed_id or experiment_id
        # The tags with the run, not queued after it: a sweep's job killed at once must still be
        # found by its sweep.id tag, to be ended KILLED.
        tags = {**system_tags(source), **{key: str(value) for key, value in tags.items()}}
        with store_errors(uri):  # a store that opens but takes no writes (read-only, full)
            run_id = client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id
        run = cls(client, run_id, experiment_id, uri)
        try:
            for batch in batches([Param(k, str(v)) for k, v in params.items()], MAX_PARAMS_OR_TAGS_PER_BATCH):
                client.log_batch(run_id, params=batch)
        except BaseException as error:
            interrupted = isinstance(error, KeyboardInterrupt)
            run.end("KILLED" if interrupted else "FAILED", error=error)
            if interrupted:
                error.add_note(f"MLflow run {run_id} marked KILLED")
            raise
        return run

    def set_tags(self, tags):
        from mlflow.entities import RunTag

        for batch in batches([RunTag(k, str(v)) for k, v in tags.items()], MAX_PARAMS_OR_TAGS_PER_BATCH):
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
        for batch in batches(pending, MAX_METRICS_PER_BATCH):
            self._write(self.client.log_batch, self.run_id, metrics=batch)
        self.last_flush = time.monotonic()

    def log_snapshot(self, params, epoch, draw):
        """Each parameter at ``epoch`` as ``weights/<name>_epoch_<epoch>.npy`` (``params``: a dict
        of arrays, or W alone), and ``draw(params)`` (the stage's pictures, {matrix name: RGB
        array}) as image keys ``weights/<matrix name>`` at step ``epoch``: the UI's step slider.

        The UI's image card opens on step 0 whatever steps were logged (an empty box if none is
        there), so the run's first pictures are logged at step 0 too.
        """
        params = params if isinstance(params, dict) else {"W": params}
        self._write(self._log_snapshot, {key: np.array(P, order="C") for key, P in params.items()}, epoch, draw)

    def _log_snapshot(self, params, epoch, draw):
        with TemporaryDirectory() as folder:
            for key, P in params.items():
                np.save(Path(folder) / f"{key}_epoch_{epoch:04d}.npy", P, allow_pickle=False)
            self.client.log_artifacts(self.run_id, folder, artifact_path=schema.WEIGHTS_DIR)
        steps = sorted({0, epoch} if not self.pictured else {epoch})
        for matrix, image in draw(params).items():
            for step in steps:
                self.client.log_image(self.run_id, image, key=schema.weights_image_key(matrix), step=step)
        self.pictured = True

    def log_picture(self, draw, artifact_file):
        """``draw()`` (the stage's picture, an RGB array) saved as ``artifact_file``, a .png path."""
        self._write(lambda: self.client.log_image(self.run_id, draw(), artifact_file=artifact_file))

    def log_dict(self, mapping, artifact_file):
        self._write(self.client.log_dict, self.run_id, mapping, artifact_file)

    def log_table(self, columns, artifact_file):
        """``columns`` ({name: list of values}) as an MLflow table, a .json ``artifact_file``, in
        place of a table logged there before: MLflow's log_table appends to it, and a run
        evaluated again (DVC reruns evaluate alone) would list every row twice."""
        self._write(self._log_table, columns, artifact_file)

    def _log_table(self, columns, artifact_file):
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        folder = posixpath.dirname(artifact_file) or None
        if any(f.path == artifact_file for f in self.client.list_artifacts(self.run_id, folder)):
            artifact_uri = self.client.get_run(self.run_id).info.artifact_uri
            get_artifact_repository(artifact_uri, tracking_uri=self.tracking_uri).delete_artifacts(artifact_file)
        self.client.log_table(self.run_id, columns, artifact_file)

    def log_dataset(self, name, digest, source_uri, context, profile):
        """A dataset input of the run (the runs table's Dataset column): ``name`` and ``digest``
        shown, ``source_uri`` where it was read, ``context`` its use (training, testing),
        ``profile`` a JSON-able mapping shown with it."""
        from mlflow.entities import Dataset, DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        dataset = Dataset(name, digest, "local", json.dumps({"uri": source_uri}), profile=json.dumps(profile))
        inputs = [DatasetInput(dataset, tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])]
        self._write(self.client.log_inputs, self.run_id, datasets=inputs)

    def rename(self, name):
        self._write(self.client.update_run, self.run_id, name=name)

    def log_model(self, log, *args, **kwargs):
        """``log(run_id, *args, tracking_uri=..., **kwargs)``: the stage's function logging an MLflow
        Model into this run (pipeline.served_model.log_model), after every write queued before it."""
        self._write(log, self.run_id, *args, tracking_uri=self.tracking_uri, **kwargs)

    def end(self, status, error=None):
        """Send what is buffered, wait for every queued write and end the run with ``status``;
        FAILED instead if a write failed."""
        try:
            self.finish_writes()
        except BaseException as write_error:
            status = "KILLED" if isinstance(write_error, KeyboardInterrupt) else "FAILED"
            error = error or write_error
            raise
        finally:
            try:
                if error is not None:
                    self.client.set_tag(self.run_id, schema.ERROR, f"{type(error).__name__}: {error}"[:MAX_ERROR_CHARS])
                self.client.set_terminated(self.run_id, status=status)
            except Exception as end_error:
                if not is_store_failure(end_error):
                    raise
                raise TrackingError(f"MLflow store {self.tracking_uri}: {store_failure(end_error)}; the run "
                                    f"{self.run_id} could not be ended and stays RUNNING") from end_error

    def finish_writes(self):
        """Send what is buffered, stop the writer after every queued write, raise a failed one's
        error; the run's status is left alone."""
        try:
            self.flush()
        finally:
            self.writer.shutdown(wait=True)
        self._raise_failed_write()

    def wait(self):
        """Send what is buffered and block until every write queued so far is done; raise the
        error of one that failed."""
        self.flush()
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
            if not write.cancelled() and (error := write.exception()) is not None:
                if is_store_failure(error):  # a full disk, a store gone: one line, not a traceback
                    raise TrackingError(f"MLflow store {self.tracking_uri}: {store_failure(error)}; "
                                        f"{without_store_hint(self.tracking_uri)}") from error
                raise error


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

    def log_snapshot(self, params, epoch, draw):
        pass

    def log_picture(self, draw, artifact_file):
        pass

    def log_dict(self, mapping, artifact_file):
        pass

    def log_table(self, columns, artifact_file):
        pass

    def log_dataset(self, name, digest, source_uri, context, profile):
        pass

    def rename(self, name):
        pass

    def log_model(self, log, *args, **kwargs):
        pass

    def wait(self):
        pass


def batches(items, size):
    return [items[i : i + size] for i in range(0, len(items), size)]
