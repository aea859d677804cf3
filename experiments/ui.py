"""python -m experiments.ui: MLflow's UI over the project's runs, answering in seconds, runs page opened.

    python -m experiments.ui                    # http://127.0.0.1:5000, opens the runs page
    python -m experiments.ui --port 5001 --no-browser

Serves MLflow's own server application (the one ``mlflow ui`` serves) on 127.0.0.1 over the
project's store (``tracking.uri`` of conf/tracking/mlflow.yaml, or ``$MLFLOW_TRACKING_URI``), set up
for one person browsing their own runs rather than for a shared service. ``mlflow ui`` starts a
command-line process that opens the store, then four web workers that each import MLflow and open
it again, then four job runners (huey consumers, for GenAI scorers and periodic tasks no run here
uses): nine processes importing MLflow on a 2-core machine. Here one process imports it once and
serves the app with uvicorn, as MLflow's own workers do, configured through MLflow's own settings
(the variables its command line hands its workers), with job execution and telemetry off.

Once the server answers, it prints the link to the experiment's runs table (``tracking.experiment``)
and opens it in a browser when there is a display (not with ``--no-browser``). Ctrl-C stops it. A
store that is an MLflow server already (``http(s)://``) is not served again: its link is printed.
Exit status: 0 stopped (Ctrl-C, SIGTERM) or nothing to start; 1 no store yet, the port in use, an
MLflow without the settings used here, or the server failed to start; 2 bad arguments.
"""

import argparse
import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.parse
import urllib.request
import webbrowser
from pathlib import Path

from omegaconf import OmegaConf

from pipeline.exits import exit_without_collecting
from pipeline.tracking.store import RUNS_PAGE, resolve_uri, sqlite_path

TRACKING_CONFIG = Path(__file__).resolve().parent.parent / "conf" / "tracking" / "mlflow.yaml"
HOST = "127.0.0.1"
DEFAULT_PORT = 5000
# MLflow's server application, as `mlflow ui` has uvicorn serve it.
APP = "mlflow.server.fastapi_app:app"
# What a local browsing session does not use (see the module docstring).
LOCAL_SESSION = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
# Plain `mlflow ui` with MLflow's options for the same: one worker, no job runners. Slower (two
# processes import MLflow, one after the other), but needs nothing of this project.
FALLBACK = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false mlflow ui --workers 1 --backend-store-uri {uri}"


class Unsupported(RuntimeError):
    pass


def server_environment(uri):
    """The settings ``mlflow server`` hands its web workers, for the sqlite store ``uri``: the
    store (runs and registered models), artifacts served by the server, new experiments' artifacts
    in ``mlruns/`` next to the database (where pipeline.tracking puts them); plus LOCAL_SESSION.

    The names are MLflow's own constants (``mlflow.server``): a version without them raises
    Unsupported rather than start a server configured wrongly.
    """
    try:
        from mlflow import server
        from mlflow.environment_variables import _MLFLOW_SGI_NAME

        names = (server.BACKEND_STORE_URI_ENV_VAR, server.REGISTRY_STORE_URI_ENV_VAR, server.ARTIFACT_ROOT_ENV_VAR,
                 server.SERVE_ARTIFACTS_ENV_VAR, _MLFLOW_SGI_NAME.name)
    except (ImportError, AttributeError) as error:
        raise Unsupported(f"this MLflow has no {getattr(error, 'name', None) or error}") from error
    artifacts = (sqlite_path(uri).parent / "mlruns").as_uri()
    return {**LOCAL_SESSION, **dict(zip(names, (uri, uri, artifacts, "true", "uvicorn")))}


def parse_arguments(argv):
    parser = argparse.ArgumentParser(prog="python -m experiments.ui", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port on {HOST} (default {DEFAULT_PORT})")
    parser.add_argument("--no-browser", action="store_true", help="print the link only")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_arguments(argv)
    exit_without_collecting()
    config = OmegaConf.load(TRACKING_CONFIG)
    uri = resolve_uri(config.uri)
    if uri.startswith(("http://", "https://")):
        print(f"the store is an MLflow server already: {uri.rstrip('/')}/#/experiments")
        return 0
    database = sqlite_path(uri)
    if database is None or not database.is_file():
        print(f"no MLflow store at {database or uri}: `dvc repro` or `python -m pipeline.train` records the first runs", file=sys.stderr)
        return 1
    if not port_free(args.port):
        print(f"port {args.port} on {HOST} is in use (another mlflow ui?): choose one with --port", file=sys.stderr)
        return 1
    started = time.monotonic()
    try:
        os.environ.update(server_environment(uri))
    except Unsupported as error:
        print(f"{error}: start the UI with `{FALLBACK.format(uri=uri)}`", file=sys.stderr)
        return 1
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(APP, host=HOST, port=args.port, log_level="warning"))
    announce = threading.Thread(target=announce_when_started, daemon=True,
                                args=(server, f"http://{HOST}:{args.port}", config.experiment, database, started, not args.no_browser))
    announce.start()
    # uvicorn shuts down cleanly on Ctrl-C or SIGTERM, then raises the signal again for whoever
    # handled it before: here, both end in KeyboardInterrupt, a normal stop.
    signal.signal(signal.SIGTERM, interrupted)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    return 0 if server.started else 1


def interrupted(signum, frame):
    raise KeyboardInterrupt


def announce_when_started(server, base, experiment, database, started, open_browser):
    """Once uvicorn is serving: the runs page's link printed, and opened if ``open_browser``."""
    while not server.started:
        if server.should_exit:
            return
        time.sleep(0.05)
    answered = time.monotonic() - started
    url = base + runs_path(base, experiment)
    print(f"MLflow UI over {database}, answering after {answered:.1f} s: {url}", flush=True)
    print("Ctrl-C stops it.", flush=True)
    if open_browser and has_display():
        webbrowser.open(url)


def port_free(port):
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def runs_path(base, experiment):
    """The runs page of ``experiment`` on the server at ``base``; the list of experiments if it
    has none of that name (no run recorded into it yet)."""
    query = urllib.parse.urlencode({"experiment_name": experiment})
    try:
        with urllib.request.urlopen(f"{base}/api/2.0/mlflow/experiments/get-by-name?{query}", timeout=30) as answer:
            experiment_id = json.load(answer)["experiment"]["experiment_id"]
    except (OSError, KeyError, ValueError):
        return "/#/experiments"
    return RUNS_PAGE.format(experiment_id=experiment_id)


def has_display():
    """A browser can show a page here: macOS, Windows, or a desktop session. Without one,
    webbrowser may pick a text browser that takes over the terminal."""
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


if __name__ == "__main__":
    sys.exit(main())
