"""MLflow behind one small API; the only package of the project that imports mlflow.

    store.py    where runs go: the URI, the sqlite file and its artifacts, the experiment
    writer.py   a run being recorded (Run), or not (DisabledRun): buffered, background writes
    runs.py     a stage's run, always ended; its params and tags
    reports.py  reading runs back (experiments.compare), imported on its own
    training.py what a training run records at its end (train stage), imported on its own
    schema.py   the names of the metrics, params, tags and artifacts the project records

``mlflow`` (slow to import) is imported only when tracking is enabled: ``tracking.enabled=false``
runs without any MLflow at all. Nothing here draws: the stages hand over their pictures.
"""

from pipeline.tracking.runs import (
    continue_run,
    end_sweep_jobs,
    flatten,
    git_tags,
    log_data,
    log_files,
    settings,
    start_run,
    sweep_job_tags,
    where_logged,
)
from pipeline.tracking.schema import EXPERIMENT_ID_VARIABLE, SWEEP_RUN_VARIABLE
from pipeline.tracking.store import (
    REPO_ROOT,
    SQLITE_PREFIX,
    TrackingError,
    absent_database,
    artifact_location,
    connect,
    ensure_experiment,
    how_to_open,
    import_mlflow,
    project_root,
    quiet_mlflow,
    resolve_uri,
    run_page,
    runs_page,
    sqlite_path,
    store_lock,
    ui_command,
)
from pipeline.tracking.writer import MAX_QUEUED_WRITES, DisabledRun, Run, system_tags

__all__ = [
    "EXPERIMENT_ID_VARIABLE", "MAX_QUEUED_WRITES", "REPO_ROOT", "SQLITE_PREFIX", "SWEEP_RUN_VARIABLE",
    "DisabledRun", "Run", "TrackingError", "absent_database", "artifact_location", "connect", "continue_run",
    "end_sweep_jobs", "ensure_experiment", "flatten", "git_tags", "how_to_open", "import_mlflow", "log_data",
    "log_files", "project_root", "quiet_mlflow", "resolve_uri", "run_page", "runs_page", "settings",
    "sqlite_path", "start_run", "store_lock", "sweep_job_tags", "system_tags", "ui_command", "where_logged",
]
