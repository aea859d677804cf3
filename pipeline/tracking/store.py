"""Where runs go: the store's URI, its sqlite file and artifacts, opening it, the experiment.

``tracking.uri`` (default ``sqlite:///mlflow.db``), unless the environment sets
``MLFLOW_TRACKING_URI`` (a shared server, say). A relative sqlite path is anchored at the project
root (``$DVC_ROOT`` when DVC runs the stage, which may be in a temporary copy of the repository,
else this repository's root), never at the current directory: runs must not land in a copy that
is deleted afterwards. Artifacts of a sqlite store go to ``mlruns/`` next to its database file,
set explicitly when the experiment is created (MLflow's default is ``./mlruns`` of whichever
directory first created it).
"""

import fcntl
import os
import re
import sys
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

REPO_ROOT = Path(__file__).resolve().parents[2]
SQLITE_PREFIX = "sqlite:///"
UI_ADDRESS = "http://127.0.0.1:5000"
# MLflow 3's UI opens a run or an experiment in its GenAI view unless told this is model training.
MODEL_TRAINING = "workflowType=machine_learning"
RUN_PAGE = "/#/experiments/{experiment_id}/runs/{run_id}?" + MODEL_TRAINING
RUNS_PAGE = "/#/experiments/{experiment_id}/runs?" + MODEL_TRAINING
# MLflow logs at INFO ("Creating initial MLflow database tables..."): not for a user's terminal.
# An MLFLOW_LOGGING_LEVEL set by the user wins.
MLFLOW_LOGGING_LEVEL = "WARNING"


class TrackingError(RuntimeError):
    pass


def project_root():
    """``$DVC_ROOT`` when set (DVC runs stages there or in temporary copies of it), else the
    repository."""
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


def ui_address(uri):
    """Where the MLflow UI of ``uri`` answers: the server itself for an http(s) store, a local
    ``mlflow ui`` (default port) otherwise."""
    return uri.rstrip("/") if uri.startswith(("http://", "https://")) else UI_ADDRESS


def run_page(uri, experiment_id, run_id, tab=""):
    """The link that opens one run in the UI, in model-training mode; ``tab``: a path below the
    run's page (``artifacts/W_final.png``)."""
    page = RUN_PAGE.format(experiment_id=experiment_id, run_id=run_id)
    return ui_address(uri) + (page.replace("?", f"/{tab}?") if tab else page)


def runs_page(uri, experiment_id, search=None):
    """The link to the experiment's training-runs table, showing only the runs that match
    ``search`` (MLflow's search syntax) if given."""
    page = ui_address(uri) + RUNS_PAGE.format(experiment_id=experiment_id)
    return page + "&searchFilter=" + quote(search, safe="") if search else page


def ui_command(uri):
    """The command that starts a UI on the store ``uri`` (a sqlite file), None for a server's."""
    database = sqlite_path(uri)
    if database is None:
        return None
    shown = database.relative_to(Path.cwd()) if database.is_relative_to(Path.cwd()) else database
    return f"mlflow ui --backend-store-uri {SQLITE_PREFIX}{shown}"


def how_to_open(uri, experiment_id, search=None):
    """One line telling a person how to see runs: the ``mlflow ui`` command (for a sqlite store),
    then the link to the runs table."""
    command = ui_command(uri)
    link = runs_page(uri, experiment_id, search)
    return f"{command}, then {link}" if command else link


def quiet_mlflow():
    """MLflow's own log lines at WARNING and above only (unless MLFLOW_LOGGING_LEVEL says
    otherwise): before mlflow is imported through the environment variable it reads, after it
    through its loggers."""
    import logging

    level = os.environ.setdefault("MLFLOW_LOGGING_LEVEL", MLFLOW_LOGGING_LEVEL)
    if "mlflow" in sys.modules:
        logging.getLogger("mlflow").setLevel(level.upper())


def connect(uri, experiment_name=None):
    """An MlflowClient on ``uri`` whose store is open, and the id of ``experiment_name`` (got or
    created) when one is named.

    Opening a sqlite store creates or migrates its schema, and processes doing that at once
    (a ``dvc queue start -j 2`` on a new store) leave it half-migrated for good; processes racing
    to create an experiment land in "Default". So for sqlite both happen under an exclusive lock
    on ``<database>.lock``; a server store serialises them itself.
    """
    quiet_mlflow()
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
