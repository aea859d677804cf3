"""Where runs go: the store's URI, its sqlite file and artifacts, opening it, the experiment.

``tracking.uri`` (default ``sqlite:///mlflow.db``), unless the environment sets
``MLFLOW_TRACKING_URI`` (a shared server, say). A relative sqlite path is anchored at the project
root (``$DVC_ROOT`` when DVC runs the stage, which may be in a temporary copy of the repository,
else this repository's root), never at the current directory: runs must not land in a copy that
is deleted afterwards. Artifacts of a sqlite store go to ``mlruns/`` next to its database file,
set explicitly when the experiment is created (MLflow's default is ``./mlruns`` of whichever
directory first created it).

The first contact with a store (``connect``) is a check that fails fast and in one line: a
server is asked with MLflow's own HTTP settings shortened (CHECK_SETTINGS: one try, a few
seconds; MLflow's defaults retry for minutes), and any failure to open or write the store
becomes a TrackingError naming the URI, the cause and how to run without it.
"""

import errno
import fcntl
import gc
import importlib
import logging
import os
import re
import sys
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

REPO_ROOT = Path(__file__).resolve().parents[2]
SQLITE_PREFIX = "sqlite:///"
UI_ADDRESS = "http://127.0.0.1:5000"
# MLflow's HTTP settings while a stage checks a server, unless the environment sets them: one
# attempt, answered within a few seconds. Later requests use MLflow's defaults again.
CHECK_SETTINGS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0",
}
# MLflow 3's UI opens a run or an experiment in its GenAI view unless told this is model training.
MODEL_TRAINING = "workflowType=machine_learning"
RUN_PAGE = "/#/experiments/{experiment_id}/runs/{run_id}?" + MODEL_TRAINING
RUNS_PAGE = "/#/experiments/{experiment_id}/runs?" + MODEL_TRAINING
# MLflow logs at INFO ("Creating initial MLflow database tables..."): not for a user's terminal.
# An MLFLOW_LOGGING_LEVEL set by the user wins.
MLFLOW_LOGGING_LEVEL = "WARNING"
# MLflow prints links to a server's run and experiment as each run ends; the stage's own last line
# says where the run is. The user's setting wins.
MLFLOW_SUPPRESS_URLS = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"


class TrackingError(RuntimeError):
    """A store that cannot be used, said in one line; a stage exits with ``exit_status``."""

    exit_status = 1


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


def absent_database(uri):
    """The database file of a sqlite ``uri`` that does not exist (yet), None otherwise: what only
    reads a store must not open it, as MLflow would create it to find nothing there."""
    database = sqlite_path(uri)
    return database if database is not None and not database.exists() else None


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
    """The command that starts a UI on the store ``uri`` (a sqlite file), None for a server's: the
    project's ``python -m experiments.ui`` (one process; ``mlflow ui`` starts nine, several times
    slower to answer), given the store as it reads one, relative to ``project_root()``."""
    database = sqlite_path(uri)
    if database is None:
        return None
    root = project_root()
    shown = database.relative_to(root) if database.is_relative_to(root) else database
    return f"MLFLOW_TRACKING_URI={SQLITE_PREFIX}{shown} python -m experiments.ui"


def how_to_open(uri, experiment_id, search=None):
    """One line telling a person how to see runs: the command starting the UI (for a sqlite store),
    then the link to the runs table."""
    command = ui_command(uri)
    link = runs_page(uri, experiment_id, search)
    return f"{command}, then {link}" if command else link


def quiet_mlflow():
    """MLflow's own log lines at WARNING and above only (unless MLFLOW_LOGGING_LEVEL says
    otherwise): before mlflow is imported through the environment variable it reads, after it
    through its loggers. And none of the links it prints to a server's runs (MLFLOW_SUPPRESS_URLS)."""
    level = os.environ.setdefault("MLFLOW_LOGGING_LEVEL", MLFLOW_LOGGING_LEVEL)
    os.environ.setdefault(MLFLOW_SUPPRESS_URLS, "true")
    if "mlflow" in sys.modules:
        logging.getLogger("mlflow").setLevel(level.upper())


def import_mlflow(uri=None):
    """``import mlflow``, quietly (``quiet_mlflow``), and its sqlite store's module when ``uri`` is
    a sqlite one, with the garbage collector paused while they run and what they built frozen
    after: they create hundreds of thousands of long-lived objects, and every full collection
    would scan them again, during the imports and after."""
    quiet_mlflow()
    modules = ["mlflow", *(["mlflow.store.tracking.sqlalchemy_store"] if uri and sqlite_path(uri) else [])]
    if all(module in sys.modules for module in modules):
        return
    collecting = gc.isenabled()
    gc.disable()
    try:
        for module in modules:
            importlib.import_module(module)
    finally:
        if collecting:
            gc.enable()
    gc.freeze()


def connect(uri, experiment_name=None):
    """An MlflowClient on ``uri`` whose store is open and writable, and the id of
    ``experiment_name`` (got or created) when one is named. TrackingError if the store does not
    answer or cannot be written (see ``store_errors``).

    Opening a sqlite store creates or migrates its schema, and processes doing that at once
    (a ``dvc queue start -j 2`` on a new store) leave it half-migrated for good; processes racing
    to create an experiment land in "Default". So for sqlite both happen under an exclusive lock
    on ``<database>.lock``; a server store serialises them itself.
    """
    import_mlflow(uri)
    from mlflow import MlflowClient

    # Its ERROR log prints, as a traceback, each SQLAlchemy error that reaches us anyway and that
    # the stage reports in one line (a read-only or full store).
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    database = sqlite_path(uri)
    with store_errors(uri), store_lock(database):
        if database is not None and database.exists() and not os.access(database, os.W_OK):
            raise PermissionError(errno.EACCES, "the database file is read-only", str(database))
        client = MlflowClient(uri)
        with _environment(CHECK_SETTINGS):
            client.search_experiments(max_results=1)  # opens (creates, migrates) the store
        return client, experiment_name and ensure_experiment(client, uri, experiment_name)


@contextmanager
def store_errors(uri):
    """Any failure to reach, open or write the store at ``uri`` inside the block, raised again
    as one TrackingError: ``MLflow store <uri>: <cause>; <how to run without it>``."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except TrackingError:
        raise
    except (MlflowException, OSError) as error:
        raise TrackingError(f"MLflow store {uri}: {store_failure(error)}; {without_store_hint(uri)}") from error
    except Exception as error:  # sqlalchemy's errors, raised through MLflow's sqlite store
        if type(error).__module__.split(".")[0] != "sqlalchemy":
            raise
        raise TrackingError(f"MLflow store {uri}: {store_failure(error)}; {without_store_hint(uri)}") from error


def is_store_failure(error):
    """Whether ``error`` comes from the store's disk, database or network rather than from what
    was asked of it (an invalid artifact path, say)."""
    causes, cause = [], error
    while cause is not None and cause not in causes:
        causes.append(cause)
        cause = cause.__cause__ or cause.__context__
    return any(isinstance(c, OSError) or type(c).__name__ in ("OperationalError", "ConnectionError") for c in causes)


def store_failure(error):
    """What went wrong, in a few words: the innermost cause of ``error``'s chain."""
    causes = [error]
    while (cause := causes[-1].__cause__ or causes[-1].__context__) is not None and cause not in causes:
        causes.append(cause)
    root = causes[-1]
    if isinstance(root, TimeoutError) or any(type(c).__name__ in ("ReadTimeoutError", "ConnectTimeoutError") for c in causes):
        return f"no answer within {os.environ.get('MLFLOW_HTTP_REQUEST_TIMEOUT') or CHECK_SETTINGS['MLFLOW_HTTP_REQUEST_TIMEOUT']} s"
    if isinstance(root, ConnectionRefusedError):
        return "connection refused (no server listening there)"
    if isinstance(root, OSError) and root.strerror:
        return f"{root.filename + ': ' if root.filename else ''}{root.strerror}"
    message = getattr(root, "message", None) or getattr(root, "orig", None) or root
    return _first_line(message)


def without_store_hint(uri):
    """How to run the stage anyway: without tracking, or with the local store."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return "run without tracking with tracking.enabled=false, or unset MLFLOW_TRACKING_URI to log into the local store"
    if sqlite_path(uri) is None:
        return "run without tracking with tracking.enabled=false, or log into the local store with tracking.uri=sqlite:///mlflow.db"
    return "run without tracking with tracking.enabled=false, or point MLFLOW_TRACKING_URI at another store"


def _first_line(text):
    return next((line.strip() for line in str(text).splitlines() if line.strip()), type(text).__name__)


@contextmanager
def _environment(settings):
    """The variables of ``settings`` set for the block where the environment does not set them."""
    added = {name: value for name, value in settings.items() if name not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


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
