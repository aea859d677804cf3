"""python -m bench's command line: which parts to measure, the table printed, the JSON written."""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

import bench
from bench import REPO_ROOT, ROWS
from bench.commands import Workspace, dvc, startup, sweep
from bench.data import benchmark_rows, train_settings
from bench.hidden import hidden_loop, hidden_memory
from bench.loop import evaluation, loop
from bench.machine import machine
from bench.peers import peers
from bench.per_run import overheads
from bench.report import table
from bench.served import served
from bench.targets import all_checks, target_table
from bench.ui import ui
from pipeline.files import atomic_write
from pipeline.model import VARIANTS

# In this order: dvc makes the clone (its first repro timed) that tracking, sweep and ui use.
PARTS = ("loop", "hidden", "peers", "evaluate", "pyfunc", "dvc", "tracking", "startup", "sweep", "ui")


def parse_arguments(argv):
    parser = argparse.ArgumentParser(prog="python -m bench", description=bench.__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS), metavar="PART", help=f"parts to run, of: {' '.join(PARTS)} (default: all)")
    parser.add_argument("--quick", action="store_true",
                        help="fewer epochs and repeats: each command-running part once (one cold load, one fresh-process pair)")
    parser.add_argument("--epochs", type=int, help="timed epochs per loop configuration (default 5; --quick 3)")
    parser.add_argument("--rows", type=int, default=ROWS, help=f"rows of the benchmark data (default {ROWS:,})")
    parser.add_argument("--mlflow-store", type=Path, metavar="DB",
                        help="an empty MLflow sqlite database, already migrated, to copy as the workspace's store "
                             "instead of creating one (seconds of migrations; not a run's cost either way)")
    parser.add_argument("--dvc-target", metavar="STAGE",
                        help="the clone's dvc repro (and no-op repro, status) of STAGE and the stages upstream of it only, "
                             "e.g. train@softmax: a smaller real pipeline, not the figure issue 15's goal is about (default: all)")
    parser.add_argument("--json", type=Path, default=REPO_ROOT / "results" / "bench.json", help="where to write the report (default results/bench.json)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_arguments(argv)
    repeats = 3 if args.quick else 5
    commands = 1 if args.quick else 3  # repeats of each part that starts processes
    images, labels, origin = benchmark_rows(args.rows)
    report = {
        "machine": machine(args.quick),
        "data": {"origin": origin, "rows": len(images), "mean_pixel": float(images.mean()), "nonzero_share": np.count_nonzero(images) / images.size},
    }
    with tempfile.TemporaryDirectory(prefix="handgrad-bench-") as folder:
        workspace = Workspace(folder, images, labels, origin, args.mlflow_store, args.dvc_target)
        measure = {
            "loop": lambda: loop(images, labels, args.epochs or repeats, args.quick),
            "hidden": lambda: {"loop": hidden_loop(images, labels, args.epochs or repeats, args.quick),
                               "memory": hidden_memory(workspace)},
            "peers": lambda: peers(images, labels, {v: train_settings(v) for v in VARIANTS}, args.epochs or repeats),
            "evaluate": lambda: evaluation(images, labels, repeats),
            "pyfunc": lambda: served(workspace, images, repeats, cold_loads=1 if args.quick else repeats),
            "tracking": lambda: overheads(workspace, workspace.clone() / "data" / "mnist", repeats=commands),
            "startup": lambda: startup(workspace, repeats=commands),
            "dvc": lambda: dvc(workspace, repeats=commands),
            "sweep": lambda: sweep(workspace),
            "ui": lambda: ui(workspace, repeats=1 if args.quick else 2),
        }
        report["bench_seconds"], report["load"] = {}, {}
        for part in PARTS:
            if part in args.only:
                started, load = time.perf_counter(), os.getloadavg()[0]
                report[part] = measure[part]()
                report["bench_seconds"][part] = time.perf_counter() - started
                report["load"][part] = (load, os.getloadavg()[0])
                print(f"{part}: {report['bench_seconds'][part]:.0f} s", flush=True)
    report["targets"] = all_checks(report)
    print(table(report))
    print("\n" + "\n".join(target_table(report)))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.json) as f:
        f.write((json.dumps(report, indent=2) + "\n").encode())
    print(f"\nreport: {args.json}")


if __name__ == "__main__":
    main()
