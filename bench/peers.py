"""The training loop beside compiled peers: JAX and torch running the same epochs, in the same run.

Optional: the peers need the ``[bench]`` extra (``pip install -e '.[bench]'``: jax, torch). Each
peer trains the same model as pipeline.sgd.SGD on the same uint8 rows, converted to float and
scaled by 1/255 inside its compiled step, in the same batches and the same shuffled order (the
permutations come from the project's own ``seeded_generators``), with the same W₀ and learning
rate. Their gradient is the framework's autodiff of the variant's loss (``jax.grad``,
``torch.func.grad``), not the hand-derived one: the same number, reached independently, so
tests/test_bench_peers.py also checks the hand derivation against two autodiffs.

A peer computes W and nothing else. The project's loop also computes, every step, the batch's
loss (the divergence check reads it and stops before a bad update) and each row's arg max (the
epoch's accuracy), and returns them: ``EXTRA_WORK`` says so beside the figures.

Peers, by key:

- ``jax_scan``: the whole epoch in one ``jax.jit``: ``lax.scan`` over the full batches, then the
  remainder batch, in one compiled program (no full-batch row: a scan of one step is jit per step).
- ``jax_step``: ``jax.jit`` of one step, called from a Python loop over the batches.
- ``torch_compile``: ``torch.compile`` of one step (torch's CPU build), called from a Python loop,
  on torch's default number of threads; ``torch_compile_1``: the same compiled step on one thread,
  as the loop runs its minibatches (torch's OpenMP threads wait for each other at every operation,
  and on a shared machine one of them is often descheduled).

The peers themselves are in bench/peer_models.py.
"""

import time

import numpy as np

from bench.measure import spread
from bench.peer_models import Orders, applies, make_peer
from pipeline.initial import initial_weights, seeded_generators
from pipeline.sgd import SGD

INSTALL_HINT = "pip install -e '.[bench]'"
PEERS = ("jax_scan", "jax_step", "torch_compile", "torch_compile_1")
PEER_MODULES = {"jax_scan": "jax", "jax_step": "jax", "torch_compile": "torch", "torch_compile_1": "torch"}
PEER_LABELS = {
    "jax_scan": "JAX, the epoch in one jit (lax.scan)",
    "jax_step": "JAX, jit per step",
    "torch_compile": "torch.compile per step, torch's default threads",
    "torch_compile_1": "the same on one thread, as the loop runs its minibatches",
}
# A pause before each timed epoch: thread pools (OpenBLAS's, OpenMP's, XLA's) keep spinning for a
# while after their last task, on the core the next runner would use.
SPIN_SECONDS = 0.05
EXTRA_WORK = (
    "pipeline.sgd.SGD also computes, every step, the batch's loss (kept for the epoch, and read by "
    "the divergence check before the update) and each row's predicted class (the epoch's accuracy); "
    "the peers only update W."
)


def missing():
    """``{peer: module}`` for every peer whose framework is not importable here."""
    from importlib.util import find_spec

    return {peer: module for peer, module in PEER_MODULES.items() if find_spec(module) is None}


# --- the benchmark part ----------------------------------------------------------------------------


def thread_counts():
    """How many threads each installed peer computes on, at its default."""
    counts = {}
    if "torch" not in missing().values():
        import torch

        counts["torch"] = torch.get_num_threads()
    if "jax" not in missing().values():
        import os

        import jax

        counts["jax"] = f"XLA CPU on {os.cpu_count()} cores ({jax.__version__}, {jax.devices()[0].device_kind})"
    return counts


def peers(images, labels, settings, epochs, batch_sizes=(32, 256, None)):
    """Seconds per epoch of pipeline.sgd.SGD and of every installed peer, float32, both variants,
    each batch size (None: full batch), epochs interleaved round by round (project, then each
    peer), after one untimed warm-up epoch each (the peers compile in it).

    ``settings``: {variant: the train stage's composed config}. Returns the rows and what is
    missing; a peer that fails to build or run is reported with its error, not timed.
    """
    absent = missing()
    installed = [peer for peer in PEERS if peer not in absent]
    report = {"rows": [], "missing": absent, "install": INSTALL_HINT if absent else None}
    if not installed:
        return report
    rows = report["rows"]
    for batch_size in batch_sizes:
        batch_rows = batch_size or len(images)
        for variant, config in settings.items():
            optim = config.optim
            W0 = initial_weights(optim.init, optim.init_scale, images.shape[1], np.dtype(np.float32), seeded_generators(optim.seed)[0])
            sgd = SGD(images, labels, W0.copy(), variant, optim.lr, batch_rows, seeded_generators(optim.seed)[1], config.divergence.factor)
            runners, failed, built = {"project": lambda: sgd.run_epoch()}, {}, {}
            for peer in installed:
                if not applies(peer, batch_rows, len(images)):
                    continue
                try:
                    built[peer] = make_peer(peer, images, labels, variant, optim.lr, batch_rows, built)
                    runners[peer] = peer_runner(built[peer], W0, optim.seed, batch_rows)
                except Exception as error:  # a framework's own failure: report it, time the rest
                    failed[peer] = f"{type(error).__name__}: {error}"
            times, cpu = {name: [] for name in runners}, {name: [] for name in runners}
            compile_seconds = {}
            for name, run in list(runners.items()):
                started = time.perf_counter()
                try:
                    run()  # warm-up: compiles
                except Exception as error:
                    failed[name] = f"{type(error).__name__}: {error}"
                    del runners[name], times[name], cpu[name]
                    continue
                compile_seconds[name] = time.perf_counter() - started
            for _ in range(epochs):
                for name, run in runners.items():
                    time.sleep(SPIN_SECONDS)
                    started, cpu_started = time.perf_counter(), time.process_time()
                    result = run()
                    times[name].append(time.perf_counter() - started)
                    cpu[name].append(time.process_time() - cpu_started)
                    if name == "project" and result.diverged:
                        raise RuntimeError(f"{variant}, batch {batch_rows} diverged: its epochs would be cut short")
            project = min(times["project"])
            rows.append({
                "variant": variant,
                "batch_size": batch_size or "full",
                "lr": optim.lr,
                "epoch_seconds": {name: spread(t) for name, t in times.items()},
                # CPU seconds of the whole process (every thread) during each epoch: what an epoch
                # costs the machine, whatever else ran; above the wall time when it used two cores.
                "epoch_cpu_seconds": {name: spread(t) for name, t in cpu.items()},
                "first_epoch_seconds": compile_seconds,
                # Best epoch over best epoch: the least disturbed of each on a shared machine.
                "project_over_peer": {name: project / min(t) for name, t in times.items() if name != "project"},
                "project_over_peer_cpu": {name: min(cpu["project"]) / min(t) for name, t in cpu.items() if name != "project"},
                "failed": failed,
            })
    return {**report, "threads": thread_counts(), "gradient": "autodiff (jax.grad, torch.func.grad)", "extra_work": EXTRA_WORK}


def peer_runner(peer, W0, seed, batch_rows):
    """A function running the peer's next epoch from its own W, in the next epoch's order."""
    state = {"W": W0.copy()}
    orders = Orders(seed, peer.n_rows, batch_rows)

    def run():
        state["W"] = peer.epoch(state["W"], orders.next())

    return run
