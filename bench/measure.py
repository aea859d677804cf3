"""Timing a function or a command: wall seconds, their spread, a child's peak memory."""

import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass

# Runs a command in a child forked from this small process, then prints the child's peak RSS in
# bytes. Measured from the benchmark's own (large) process, the figure would start at that
# process's peak: Linux carries the memory high-water mark across the exec into the new program.
PEAK_RSS_PROBE = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def seconds(function, *args):
    started = time.perf_counter()
    function(*args)
    return time.perf_counter() - started


def spread(samples):
    """``{"median", "min", "max", "samples"}`` of a list of numbers."""
    samples = list(samples)
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples), "samples": samples}


def blas_threads(count):
    """A context limiting BLAS to ``count`` threads; None leaves its default."""
    from threadpoolctl import threadpool_limits

    return nullcontext() if count is None else threadpool_limits(count, user_api="blas")


def default_blas_threads():
    """The most threads a BLAS numpy calls runs on by default (1 if threadpoolctl finds none)."""
    import numpy  # noqa: F401  threadpoolctl sees the libraries loaded: numpy's BLAS
    from threadpoolctl import threadpool_info

    return max((info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"), default=1)


@dataclass
class Finished:
    seconds: float
    status: int
    output: str
    peak_rss: int | None = None  # bytes, when asked for


def run_command(args, cwd, env, check=True, peak_rss=False):
    """Run ``args`` to the end: its wall time, exit status, output, and peak RSS if ``peak_rss``."""
    command = [sys.executable, "-c", PEAK_RSS_PROBE, *args] if peak_rss else args
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    finished = Finished(time.perf_counter() - started, completed.returncode, completed.stdout)
    if peak_rss:
        finished.output, _, last_line = finished.output.rstrip("\n").rpartition("\n")
        finished.peak_rss = int(last_line)
    if check and finished.status != 0:
        raise RuntimeError(f"{' '.join(args)} exited {finished.status}:\n{finished.output[-3000:]}")
    return finished


def repeated(args, cwd, env, repeats):
    """Wall seconds of ``args`` run ``repeats`` times."""
    return spread(run_command(args, cwd, env).seconds for _ in range(repeats))
