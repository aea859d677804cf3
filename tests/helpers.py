"""Helpers shared by several test modules (a test module never imports another one)."""

import ast
import contextlib
import errno
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from tests.paths import REPO_ROOT

# The project's packages, whose modules the import tests read.
PACKAGES = ("pipeline", "experiments", "bench")


# --- the README ---------------------------------------------------------------------------------


def quick_start_commands():
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S)]


# --- imports ------------------------------------------------------------------------------------


def module_path(name):
    """The source file of module ``name`` (``a.b`` -> a/b.py, or a/b/__init__.py for a package)."""
    base = REPO_ROOT / name.replace(".", "/")
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def project_modules():
    """Every module of the project's packages, by dotted name."""
    names = []
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            parts = path.relative_to(REPO_ROOT).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def imported_modules(name, source=None):
    """The project modules that module ``name`` imports anywhere in its code (in functions too):
    ``from a import b`` counts as importing ``a.b`` when that is a module, else ``a``."""
    tree = ast.parse(source if source is not None else module_path(name).read_text())
    package = name if module_path(name).name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x, from .a import x
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if module_path(submodule).exists() else base)
    return {module for module in found if module.split(".")[0] in PACKAGES and module != name}


def stage_sources(stage):
    """The project's source files that ``pipeline.<stage>`` runs, as repository paths: every
    module it imports, directly or not, and the ``__init__.py`` of each subpackage on the way
    (the top-level ones are empty)."""
    seen, pending = set(), [f"pipeline.{stage}"]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        pending += imported_modules(name)
        parent = name.rpartition(".")[0]
        if "." in parent:
            pending.append(parent)
    return {str(module_path(name).relative_to(REPO_ROOT)) for name in seen}


# --- sweeps -------------------------------------------------------------------------------------

QUICK = ("optim.epochs=2", "tracking.snapshot_every=0")


def sweep(folder, data, *overrides, env=None):
    """``python -m pipeline.train -m ...`` run in ``folder``, where its multirun/ folder goes."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline.train", "-m", f"data.dir={data}", *QUICK, *overrides],
        cwd=folder, capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})},
    )


def job_folders(folder):
    """{job number: its folder} of the one sweep made in ``folder``: multirun/<date>/<time>/<n>/."""
    [sweep_dir] = (folder / "multirun").glob("*/*")
    return {int(job.name): job for job in sweep_dir.iterdir() if job.name.isdigit()}


def split_runs(runs):
    """(the sweep's own run, its jobs' runs) of a list of MLflow runs."""
    [parent] = [r for r in runs if r.data.tags.get("sweep.parent") == "true"]
    return parent, [r for r in runs if r is not parent]


# --- processes that are interrupted, and stores that cannot be used --------------------------


def start_stage(stage, *args, cwd=REPO_ROOT, env=None):
    """``python -m pipeline.<stage> ...`` started in a process group of its own (as a shell runs a
    command), SIGINT and SIGTERM at their defaults, its output in ``.output()``."""
    log = tempfile.TemporaryFile()

    def defaults():
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_DFL)

    process = subprocess.Popen([sys.executable, "-m", f"pipeline.{stage}", *args], cwd=cwd, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=defaults,
                               env={**os.environ, **(env or {})})
    process.output = lambda: (log.seek(0), log.read().decode())[1]
    return process


def wait_until(ready, process, timeout=120):
    """Poll ``ready()`` until true; fails if ``process`` ends first or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, f"ended early ({process.returncode}):\n{process.output()}"
        assert time.monotonic() < deadline, f"not ready after {timeout} s:\n{process.output()}"
        time.sleep(0.02)


def once_changed(path, check):
    """A condition for wait_until: ``check()``, asked again only after the file at ``path`` (an
    MLflow sqlite store a process writes to) changed size or time since it was last asked, or half
    a second passed (file times are coarser than writes): cheap enough to poll, where ``check``
    alone reads the whole store every time."""
    last_state, last_asked = None, 0.0

    def ready():
        nonlocal last_state, last_asked
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            return False
        state = (stat.st_mtime_ns, stat.st_size)
        if state == last_state and time.monotonic() < last_asked + 0.5:
            return False
        last_state, last_asked = state, time.monotonic()
        return check()

    return ready


def interrupt(process, signum, timeout=60):
    """``signum`` to the process's whole group, as Ctrl-C in a terminal sends SIGINT; its exit status."""
    try:
        os.killpg(process.pid, signum)
        return process.wait(timeout=timeout)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


@contextlib.contextmanager
def blocked_reader(path):
    """``path`` made a FIFO that nobody writes: a process opening it to read waits there for good.
    Yields ``is_waiting()``, true once a reader is waiting in it (a deterministic point at which
    to interrupt the reader)."""
    os.mkfifo(path)
    writer = []

    def is_waiting():
        if not writer:
            try:  # succeeds only once the FIFO has a reader; then the reader waits for data
                writer.append(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError as error:
                if error.errno != errno.ENXIO:
                    raise
        return bool(writer)

    try:
        yield is_waiting
    finally:
        for fd in writer:
            os.close(fd)


def closed_port():
    """A port on 127.0.0.1 on which nothing listens: connecting is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def read_only(folder):
    """``folder`` read-only for this process and its children: a read-only bind mount when run as
    root (to whom file modes are no obstacle), else its mode without write bits."""
    if os.geteuid() != 0:
        mode = folder.stat().st_mode
        folder.chmod(mode & 0o555)
        try:
            yield
        finally:
            folder.chmod(mode)
        return
    mounted = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot make a read-only folder as root here: {mounted.stderr.strip()}")
    try:
        remounted = subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], capture_output=True, text=True)
        assert remounted.returncode == 0, remounted.stderr
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


# --- fixtures made once for all pytest-xdist workers ------------------------------------------


def made_once(tmp_path_factory, name, make):
    """``make(folder)`` run once per test session in ``folder`` (a new folder ``name``), also under
    pytest-xdist: the first worker to ask makes it, under a file lock in the folder all workers'
    temporary folders are in, and the others wait for it instead of making their own. Returns
    the folder. What is in it is shared: a test that changes it works on a copy."""
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    folder, done = shared / name, shared / f"{name}.done"
    with FileLock(shared / f"{name}.lock"):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)  # a make that failed midway starts over
            folder.mkdir()
            make(folder)
            done.touch()
    return folder
