"""How long MLflow's UI takes to answer: from the command's start until the runs page can be shown.

Answering means both what the browser needs first: the UI's page (``GET /``) and the runs of an
experiment (``POST /ajax-api/2.0/mlflow/runs/search``, what the runs table asks for). Each command
runs over the clone's store (the runs its ``dvc repro`` and sweep recorded), in a session of its
own, and is stopped with SIGTERM to that session once it answered (or after TIMEOUT_SECONDS).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench import REPO_ROOT
from bench.measure import run_command, spread

APP_IMPORT_PROBE = "import time; t = time.perf_counter(); import mlflow.server.fastapi_app; print(time.perf_counter() - t)"

TIMEOUT_SECONDS = 90
POLL_SECONDS = 0.05
# The commands timed, by key: the project's (the README's) first, then MLflow's own; each as
# (environment it sets, its words).
COMMANDS = {
    "experiments.ui": ({}, "python -m experiments.ui --no-browser --port {port}"),
    "mlflow ui --workers 1": ({"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}, "mlflow ui --workers 1 --backend-store-uri {uri} --port {port}"),
    "mlflow ui": ({}, "mlflow ui --backend-store-uri {uri} --port {port}"),
}


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(base):
    """Whether the server at ``base`` serves the UI's page and searches runs."""
    search = urllib.request.Request(base + "/ajax-api/2.0/mlflow/runs/search", method="POST",
                                    data=json.dumps({"experiment_ids": ["0"], "max_results": 1}).encode(),
                                    headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(base + "/", timeout=5) as page:
            if page.status != 200:
                return False
        with urllib.request.urlopen(search, timeout=5) as answer:
            return answer.status == 200
    except (OSError, urllib.error.URLError):
        return False


def shown(key):
    """The command called ``key`` as a person types it."""
    settings, words = COMMANDS[key]
    return " ".join([*(f"{k}={v}" for k, v in settings.items()), words.format(uri="<store>", port="<port>")])


def command_args(key, uri, port):
    """``(argv, environment it sets)`` of the command called ``key``; ``python`` and ``mlflow``
    are this venv's."""
    settings, words = COMMANDS[key]
    argv = words.format(uri=uri, port=port).split()
    program = {"python": sys.executable, "mlflow": str(Path(sys.executable).with_name("mlflow"))}
    return [program.get(argv[0], argv[0]), *argv[1:]], settings


def time_to_answer(key, uri, cwd, env):
    """Seconds from the start of the command called ``key`` until it answers; None if it did not
    within TIMEOUT_SECONDS (or exited)."""
    port = free_port()
    argv, extra = command_args(key, uri, port)
    started = time.perf_counter()
    process = subprocess.Popen(argv, cwd=cwd, env={**env, **extra, "MLFLOW_TRACKING_URI": uri, "DISPLAY": ""},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while time.perf_counter() - started < TIMEOUT_SECONDS and process.poll() is None:
            if answers(f"http://127.0.0.1:{port}"):
                return time.perf_counter() - started
            time.sleep(POLL_SECONDS)
        return None
    finally:
        stop(process)


def stop(process):
    """SIGTERM to the command's session (its workers too), SIGKILL if it lingers."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def ui(workspace, repeats, keys=tuple(COMMANDS)):
    """Seconds until each command answers over the clone's store: the project's ``repeats`` times,
    MLflow's own (several times slower) once, by turns; and, for the bound, importing MLflow's
    server application alone in a fresh process."""
    clone = workspace.clone()
    uri = f"sqlite:///{clone / 'mlflow.db'}"
    times = {key: [] for key in keys}
    for turn in range(repeats):
        for key in keys:
            if turn == 0 or key == keys[0]:
                times[key].append(time_to_answer(key, uri, REPO_ROOT, workspace.clone_env()))
    probe = run_command([sys.executable, "-c", APP_IMPORT_PROBE], REPO_ROOT, workspace.clone_env())
    return {
        "store": uri,
        "commands": {key: shown(key) for key in keys},
        "seconds": {key: spread(t) if None not in t else {"failed": t.count(None), "samples": t} for key, t in times.items()},
        "app_import_seconds": float(probe.output.split()[-1]),
    }
