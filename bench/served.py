"""The logged MLflow Model (pipeline.served_model): logging it, loading it, and predicting 10,000
digits through the loaded pyfunc against the bare forward pass on the same rows."""

import statistics
import sys
import time

import numpy as np

from bench import EVALUATION_ROWS, REPO_ROOT
from bench.measure import blas_threads, run_command, seconds, spread
from pipeline.classifier import INPUT_DTYPE, scores
from pipeline.constants import N_CLASSES
from pipeline.model import VARIANTS

EXPERIMENT = "bench"
EXAMPLE_DIGITS = 3
# A fresh process: import MLflow's pyfunc; then each model loaded in a child forked right after
# the import (a process that has loaded no model yet, as a fresh one after its import). Prints,
# per model, the import's time and the load's.
COLD_LOAD_PROBE = """
import os, sys, time
started = time.perf_counter()
import mlflow.pyfunc
imported = time.perf_counter() - started
for model_uri in sys.argv[1:]:
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        started = time.perf_counter()
        mlflow.pyfunc.load_model(model_uri)
        print(imported, time.perf_counter() - started, flush=True)
        os._exit(0)
    if os.waitpid(pid, 0)[1]:
        sys.exit(f"loading {model_uri} failed")
"""


def served(workspace, images, repeats, cold_loads):
    """For each variant, a model of a fixed W logged into the workspace's store; then seconds to
    log it (the first log of a process also pays MLflow's one-off scan of the installed
    packages), to load it in this process and in ``cold_loads`` fresh ones (MLflow's import, then
    the load: each fresh process imports once and loads each variant's model in a child forked
    after the import, so that no load follows another), and to predict EVALUATION_ROWS float32
    pixel rows through the pyfunc's ``predict`` against the bare forward pass
    ``classifier.scores`` (x = pixel/255, the model table's forward) on the same rows, by turns,
    with BLAS on one thread and on its default. ``ratio``: the median over those turns of a
    pyfunc prediction's time over the bare pass's just before it; ``fastest_ratio``: fastest
    over fastest."""
    import mlflow

    from pipeline import served_model, tracking

    workspace.mlflow_store()
    uri, env = workspace.mlflow_uri, workspace.env()
    client, experiment_id = tracking.connect(uri, EXPERIMENT)
    pixels = np.ascontiguousarray(images[:EVALUATION_ROWS], dtype=INPUT_DTYPE)
    params = {"W": np.random.default_rng(0).normal(0, 0.01, (N_CLASSES, pixels.shape[1])).astype(np.float32)}
    logged = {}
    for variant in VARIANTS:
        run_id = client.create_run(experiment_id, run_name=f"bench: {variant} model").info.run_id
        log_times = []
        for _ in range(repeats):
            started = time.perf_counter()
            model_uri = served_model.log_model(run_id, params, variant, images[:EXAMPLE_DIGITS], uri)
            log_times.append(time.perf_counter() - started)
        client.set_terminated(run_id)
        logged[variant] = model_uri, log_times
    # Each fresh process imports once, then loads every variant's model in a child of its own.
    uris = [model_uri for model_uri, _ in logged.values()]
    probes = [run_command([sys.executable, "-c", COLD_LOAD_PROBE, *uris], REPO_ROOT, env).output.splitlines()[-len(uris):]
              for _ in range(cold_loads)]
    results = []
    for index, (variant, (model_uri, log_times)) in enumerate(logged.items()):
        load_times = [seconds(mlflow.pyfunc.load_model, model_uri) for _ in range(repeats)]
        cold = [probe[index].split() for probe in probes]
        model = mlflow.pyfunc.load_model(model_uri)

        answer = model.predict(pixels)
        if not np.array_equal(answer["scores"], scores(params, pixels, variant)):
            raise RuntimeError(f"{variant}: the pyfunc's scores are not the forward pass's")
        bare, pyfunc = [], []
        for _ in range(5 * repeats):  # ~10 ms each: more samples, by turns
            for threads in (1, None):  # as the loop's floor: a BLAS thread another process holds stalls a product
                with blas_threads(threads):
                    bare.append(seconds(scores, params, pixels, variant))
                    pyfunc.append(seconds(model.predict, pixels))
        results.append({
            "variant": variant,
            "rows": len(pixels),
            "log_seconds": {"first": log_times[0], "again": spread(log_times[1:] or log_times)},
            "load_seconds": spread(load_times),
            "cold_load_seconds": {"import": spread(float(c[-2]) for c in cold), "load": spread(float(c[-1]) for c in cold)},
            "forward_seconds": spread(bare),
            "pyfunc_seconds": spread(pyfunc),
            # Each prediction against the bare pass timed just before it: the machine's drift cancels.
            "ratio": statistics.median(p / b for p, b in zip(pyfunc, bare)),
            "fastest_ratio": min(pyfunc) / min(bare),
        })
    return results
