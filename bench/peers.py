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

The model's pieces are translated by the table below, keyed by pipeline.model's objects, so a
variant built from pieces a peer lacks fails with one clear KeyError rather than being mistimed.
"""

import copy
import time

import numpy as np

from bench.measure import spread
from pipeline import model
from pipeline.constants import N_CLASSES, PIXEL_MAX
from pipeline.metrics import one_hot
from pipeline.sgd import SGD, initial_weights, seeded_generators

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


# --- the model's pieces in each framework ---------------------------------------------------------


def jax_pieces():
    import jax.numpy as jnp
    from jax.nn import softmax

    outputs = {model.SOFTMAX: lambda Z: softmax(Z, axis=-1), model.IDENTITY: lambda Z: Z}
    losses = {model.SQUARED_ERROR: lambda Y_hat, Y: jnp.mean(jnp.sum((Y_hat - Y) ** 2, axis=-1))}
    return outputs, losses


def torch_pieces():
    import torch

    outputs = {model.SOFTMAX: lambda Z: torch.softmax(Z, dim=-1), model.IDENTITY: lambda Z: Z}
    losses = {model.SQUARED_ERROR: lambda Y_hat, Y: torch.mean(torch.sum((Y_hat - Y) ** 2, dim=-1))}
    return outputs, losses


def batch_loss(pieces, variant):
    """``L(W, X, Y) = loss(output(X Wᵀ), Y)``, the batch mean, in the framework of ``pieces``."""
    outputs, losses = pieces
    variant = model.variant(variant)
    output, loss = outputs[variant.output], losses[variant.loss]
    return lambda W, X, Y: loss(output(X @ W.T), Y)


# --- the peers: each an object with epoch(W, order) -> W, on rows it was given once ---------------


class JaxPeer:
    """``images`` and the one-hot targets placed on JAX's CPU device once; ``epoch`` takes W and
    the epoch's row order (None: stored order) and returns W after it, as numpy."""

    def __init__(self, images, labels, variant, lr, batch_size, whole_epoch):
        import jax
        import jax.numpy as jnp

        self.jax, self.jnp = jax, jnp
        self.n_rows = len(images)
        self.batch_size = min(batch_size, self.n_rows)
        self.images = jax.device_put(images)
        self.targets = jax.device_put(one_hot(labels, N_CLASSES, np.float32))
        gradient = jax.grad(batch_loss(jax_pieces(), variant))

        def step(W, raw, Y):
            X = raw.astype(jnp.float32) * np.float32(1 / PIXEL_MAX)
            return W - lr * gradient(W, X, Y)

        def gathered_step(W, images, targets, rows):
            return step(W, images[rows], targets[rows])

        full_batches = self.n_rows // self.batch_size

        def scanned_epoch(W, images, targets, order):
            body = lambda W, rows: (gathered_step(W, images, targets, rows), None)  # noqa: E731
            W, _ = jax.lax.scan(body, W, order[: full_batches * self.batch_size].reshape(full_batches, -1))
            if full_batches * self.batch_size < self.n_rows:
                W = gathered_step(W, images, targets, order[full_batches * self.batch_size :])
            return W

        self.step, self.gathered_step = jax.jit(step), jax.jit(gathered_step)
        self.scanned_epoch = jax.jit(scanned_epoch) if whole_epoch else None

    def epoch(self, W, order):
        W = self.jnp.asarray(W)
        if order is None:
            if self.batch_size < self.n_rows:
                raise ValueError("a minibatch epoch needs an order")
            return np.asarray(self.step(W, self.images, self.targets).block_until_ready())
        order = self.jnp.asarray(order.astype(np.int32))
        if self.scanned_epoch is not None:
            return np.asarray(self.scanned_epoch(W, self.images, self.targets, order).block_until_ready())
        for start in range(0, self.n_rows, self.batch_size):
            W = self.gathered_step(W, self.images, self.targets, order[start : start + self.batch_size])
        return np.asarray(W.block_until_ready())


class TorchPeer:
    """The same as JaxPeer for torch: ``torch.compile`` of one step (its default inductor backend,
    static shapes: the remainder batch is a second graph), a Python loop over the batches."""

    def __init__(self, images, labels, variant, lr, batch_size, threads=None):
        import torch
        from torch.func import grad

        # Every peer compiles the same two functions: without a reset, earlier peers' graphs
        # count towards dynamo's recompile limit, past which it silently runs them eagerly.
        torch._dynamo.reset()
        self.torch, self.threads = torch, threads
        self.n_rows = len(images)
        self.batch_size = min(batch_size, self.n_rows)
        self.images = torch.from_numpy(np.ascontiguousarray(images))
        self.targets = torch.from_numpy(one_hot(labels, N_CLASSES, np.float32))
        gradient = grad(batch_loss(torch_pieces(), variant))

        def step(W, raw, Y):
            X = raw.to(torch.float32) * (1 / PIXEL_MAX)
            return W - lr * gradient(W, X, Y)

        def gathered_step(W, images, targets, rows):
            return step(W, images[rows], targets[rows])

        self.step = torch.compile(step, dynamic=False)
        self.gathered_step = torch.compile(gathered_step, dynamic=False)

    def on_threads(self, threads):
        """This peer, its compiled graphs shared, computing on ``threads`` threads."""
        peer = copy.copy(self)
        peer.threads = threads
        return peer

    def epoch(self, W, order):
        torch = self.torch
        if self.threads is None:
            return self._epoch(W, order)
        default = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            return self._epoch(W, order)
        finally:
            torch.set_num_threads(default)

    def _epoch(self, W, order):
        torch = self.torch
        W = torch.from_numpy(np.array(W, dtype=np.float32))
        with torch.no_grad():
            if order is None:
                if self.batch_size < self.n_rows:
                    raise ValueError("a minibatch epoch needs an order")
                return self.step(W, self.images, self.targets).numpy()
            order = torch.from_numpy(order)
            for start in range(0, self.n_rows, self.batch_size):
                W = self.gathered_step(W, self.images, self.targets, order[start : start + self.batch_size])
        return W.numpy()


def make_peer(peer, images, labels, variant, lr, batch_size, built=None):
    """The peer called ``peer``; ``built``: {peer: object} already made for the same rows and
    settings, whose compiled graphs it may share."""
    if peer.startswith("torch_compile"):
        threads = 1 if peer == "torch_compile_1" else None
        if built and "torch_compile" in built:
            return built["torch_compile"].on_threads(threads)
        return TorchPeer(images, labels, variant, lr, batch_size, threads)
    return JaxPeer(images, labels, variant, lr, batch_size, whole_epoch=peer == "jax_scan")


def applies(peer, batch_size, n_rows):
    """A scan over one full batch is jit per step: jax_scan has no full-batch row."""
    return not (peer == "jax_scan" and batch_size >= n_rows)


class Orders:
    """The row order of each epoch, drawn as pipeline.sgd.SGD draws it from the same seed."""

    def __init__(self, seed, n_rows, batch_size):
        self.rng = seeded_generators(seed)[1]
        self.n_rows, self.shuffle = n_rows, batch_size < n_rows

    def next(self):
        return self.rng.permutation(self.n_rows) if self.shuffle else None


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
