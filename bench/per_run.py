"""What tracking costs a training run: in one process, as a sweep's worker runs job after job, and
in a fresh process, as ``python -m pipeline.train`` runs once.

In-process (``python -m bench.per_run``, a child of the benchmark so that nothing it imported
counts): the train stage's ``run`` on its composed config, one run after another, untracked and
tracked by turns: first an untracked run (it pays the first-run costs that tracking has nothing
to do with), then the first tracked run of the process (MLflow's import, opening the store), then
``repeats`` pairs. Overheads: the first tracked run against the later untracked runs' median; a
later tracked run against the untracked run beside it, the median over the pairs.

Fresh process: ``python -m pipeline.train`` with tracking on and off by turns, the medians' gap.
Both against an existing MLflow store (its one-time creation is not a run's cost).
"""

import json
import statistics
import sys
import time
from pathlib import Path

from bench import REPO_ROOT
from bench.measure import run_command, spread

# MLflow's start-up in a fresh process, timed in it: import it; open the store, create a run, end it.
MLFLOW_STARTUP_PROBE = """
import json, os, time
from pipeline import tracking
started = time.perf_counter()
import mlflow
imported = time.perf_counter()
tracking.Run.create(os.environ["MLFLOW_TRACKING_URI"], "handgrad", "bench: MLflow start-up", {}, {}, "bench").end("FINISHED")
print(json.dumps({"import": imported - started, "open": time.perf_counter() - imported}))
"""


def overheads(workspace, data_dir, repeats):
    """Both figures for the default training run on ``data_dir``."""
    env = workspace.env()
    workspace.mlflow_store()
    out = workspace.root / "per_run"
    report = out / "in_process.json"
    command = [sys.executable, "-m", "bench.per_run", str(data_dir), str(out), str(report), str(repeats)]
    run_command(command, REPO_ROOT, env)
    in_process = summary(json.loads(report.read_text()))
    probes = [run_command([sys.executable, "-c", MLFLOW_STARTUP_PROBE], REPO_ROOT, env, check=False) for _ in range(repeats)]
    startup = [json.loads(p.output.splitlines()[-1]) for p in probes if p.status == 0]  # a changed API: no figure
    fresh, peak = {"off": [], "on": []}, []
    for turn in range(repeats):
        for mode in fresh:
            overrides = (f"data.dir={data_dir}", f"out_dir={out / f'fresh_{mode}_{turn}'}", f"tracking.enabled={mode == 'on'}")
            finished = run_command([sys.executable, "-m", "pipeline.train", *overrides], REPO_ROOT, env, peak_rss=mode == "on")
            fresh[mode].append(finished.seconds)
            peak += [finished.peak_rss] if finished.peak_rss else []
    on, off = (statistics.median(fresh[mode]) for mode in ("on", "off"))
    return {
        "command": "python -m pipeline.train data.dir=<data> out_dir=<temp> tracking.enabled=<true|false>",
        "data_dir": str(data_dir),
        "in_process": in_process,
        "fresh_process": {"tracked": spread(fresh["on"]), "untracked": spread(fresh["off"]), "overhead": on - off,
                          "peak_rss_mb": max(peak) / 2**20},
        "mlflow_startup": {key: statistics.median(s[key] for s in startup) for key in ("import", "open")} if startup else {},
    }


def summary(times):
    """Overheads from the run times of ``in_process``: ``{"untracked": [...], "tracked": [...]}``,
    each in the order they ran (untracked first)."""
    untracked, tracked = times["untracked"], times["tracked"]
    later_untracked = untracked[1:]
    baseline = statistics.median(later_untracked)
    return {
        "first_untracked_seconds": untracked[0],
        "untracked_seconds": spread(later_untracked),
        "first_tracked_seconds": tracked[0],
        "later_tracked_seconds": spread(tracked[1:]),
        "first_overhead": tracked[0] - baseline,
        # Pair by pair: the tracked run against the untracked run just before it.
        "later_overhead": statistics.median(t - u for t, u in zip(tracked[1:], later_untracked)),
    }


def in_process(data_dir, out_root, repeats):
    """Run times of the train stage's ``run`` in this process: ``{"untracked", "tracked"}``."""
    from hydra import compose, initialize_config_dir

    from pipeline import train

    times = {"untracked": [], "tracked": []}
    for turn, tracked in enumerate([False, True] + [False, True] * repeats):
        overrides = [f"data.dir={data_dir}", f"out_dir={Path(out_root) / f'run_{turn}'}", f"tracking.enabled={tracked}"]
        with initialize_config_dir(str(REPO_ROOT / "conf"), version_base=None):
            cfg = compose("train", overrides=overrides)
        started = time.perf_counter()
        status = train.run(cfg)
        times["tracked" if tracked else "untracked"].append(time.perf_counter() - started)
        if status:
            raise RuntimeError(f"pipeline.train.run with {' '.join(overrides)} exited {status}")
    return times


if __name__ == "__main__":
    data_dir, out_root, report, repeats = sys.argv[1:]
    Path(report).write_text(json.dumps(in_process(data_dir, out_root, int(repeats))))
