"""What a stage's run is here: one per process, opened as a context manager that always ends it,
and the params and tags it carries.

``start_run`` ends its run FINISHED, FAILED (an exception, or ``run.end_status = "FAILED"``: a
diverged training) or KILLED (Ctrl-C). It is never MLflow's global "active run", so a leftover
one cannot break the next job. Runs go into experiment ``tracking.experiment``, created if
absent, unless the environment sets ``MLFLOW_EXPERIMENT_ID``: a sweep (experiments.sweep)
creates the store and the experiment once, before its jobs start, and hands its jobs the id (and
its own run's id) this way, since processes racing to create them break a new sqlite store or
land in "Default".
"""

import hashlib
import os
import subprocess
from contextlib import contextmanager
from pathlib import Path

from pipeline.tracking import schema
from pipeline.tracking.store import REPO_ROOT, connect, resolve_uri, run_page, store_errors
from pipeline.tracking.writer import DisabledRun, Run


@contextmanager
def start_run(tracking, run_name, params, tags, source=schema.SOURCE_TRAIN):
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
    except KeyboardInterrupt as interrupt:
        run.end("KILLED")
        interrupt.add_note(f"MLflow run {run.run_id} marked KILLED")
        raise
    except BaseException as error:
        run.end("FAILED", error=error)
        raise
    run.end(run.end_status)


@contextmanager
def continue_run(tracking, trained_run, run_name, params, tags, source=schema.SOURCE_EVALUATE):
    """The run that trained W, to log more into it; a DisabledRun when ``tracking.enabled`` is
    false.

    ``trained_run``: the train stage's record (``run_id``, None if training was not tracked).
    That run is not ended here: its status stays what training made it (FAILED for a diverged
    training). If it is not in the store (a deleted database or run, another store), a new run
    is started as ``start_run`` does, tagged ``trained_by_run`` with the old id, and ended on exit.
    """
    if not tracking.enabled:
        yield DisabledRun()
        return
    uri = resolve_uri(tracking.uri)
    client, _ = connect(uri)
    from mlflow.exceptions import MlflowException  # after connect, which imports MLflow
    old_id = trained_run.get("run_id")
    with store_errors(uri):
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
        run.wait()
        return
    link = {
        schema.TRAINED_BY_RUN: old_id or "none",
        schema.TRAINED_BY_RUN_NOTE: (
            f"the training run {old_id} is not in {uri}; this run holds the evaluation of its W"
            if old_id
            else "the training was not tracked; this run holds the evaluation of its W"
        ),
    }
    with start_run(tracking, run_name, params, {**tags, **link}, source) as run:
        yield run


def end_sweep_jobs(sweep_run, status):
    """End every job run of the sweep whose run is ``sweep_run`` still RUNNING (a worker process
    killed before it could end its own) with ``status``; return how many job runs of the sweep
    are in each status, ``{"KILLED": 2, "FINISHED": 1}``."""
    client = sweep_run.client
    jobs = [run for run in client.search_runs([sweep_run.experiment_id], f"tags.`{schema.SWEEP_ID}` = '{sweep_run.run_id}'")
            if run.info.run_id != sweep_run.run_id]
    counts = {}
    for job in jobs:
        if job.info.status == "RUNNING":
            client.set_terminated(job.info.run_id, status=status)
        final = status if job.info.status == "RUNNING" else job.info.status
        counts[final] = counts.get(final, 0) + 1
    return counts


def log_files(run, paths, artifact_path):
    """Each file of ``paths`` as an artifact under ``artifact_path``; nothing with tracking off."""
    if run.enabled:
        for path in paths:
            run.client.log_artifact(run.run_id, str(path), artifact_path=artifact_path)


def where_logged(run):
    """The link that opens ``run`` in the UI, or ``MLflow off``: for a stage's final line."""
    if not run.enabled:
        return "MLflow off"
    return run_page(run.tracking_uri, run.experiment_id, run.run_id)


def log_data(run, provenance, sha256, data_dir, context, profile):
    """The data files ``sha256`` ({file name: SHA-256}, the files read) of ``data_dir`` as the
    run's dataset input for ``context`` (schema.TRAINING or TESTING): named for provenance.json's
    source, its digest from the files' hashes, ``profile`` (rows and such) shown with it."""
    digest = hashlib.sha256("".join(f"{name} {sha256[name]}\n" for name in sorted(sha256)).encode()).hexdigest()[:8]
    run.log_dataset(schema.dataset_name(provenance.get("source", "unknown")), digest, Path(data_dir).resolve().as_uri(),
                    context, {**profile, "files": sorted(sha256), "origin": provenance.get("origin")})


# --- params and tags ---------------------------------------------------------------------------


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


def settings(config, keys):
    """The params of a run: the values of ``config`` (a nested mapping) under each dotted key of
    ``keys`` (schema.TRAIN_SETTINGS), flattened with dots."""
    flat = flatten(config)
    return {name: value for name, value in flat.items() if any(name == key or name.startswith(key + ".") for key in keys)}


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


def sweep_job_tags():
    """The tags grouping a job's run under its sweep's run (whose id the sweep put in the
    environment); none outside a tracked sweep."""
    sweep_run_id = os.environ.get(schema.SWEEP_RUN_VARIABLE)
    return {schema.SWEEP_ID: sweep_run_id, schema.PARENT_RUN_ID: sweep_run_id} if sweep_run_id else {}
