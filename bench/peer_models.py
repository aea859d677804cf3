"""The project's training written for JAX and torch: the peers bench/peers.py times beside the loop.

Each peer trains the model of pipeline.model on uint8 rows given once, converted to float and
scaled by 1/255 inside its compiled step, in the batches and order it is given (``Orders`` draws
them as pipeline.sgd.SGD does, from the same seed); ``epoch(W, order)`` returns W after one epoch,
as numpy. The gradient is the framework's autodiff of the variant's loss (``jax.grad``,
``torch.func.grad``), not the hand-derived one. jax and torch are imported only when a peer is made.

- ``JaxPeer``: ``jax.jit`` of one step called from a Python loop, or (``whole_epoch``) the whole
  epoch in one ``jax.jit``: ``lax.scan`` over the full batches, then the remainder batch.
- ``TorchPeer``: ``torch.compile`` of one step, called from a Python loop, on torch's default
  threads or on ``threads``.

The model's pieces are translated by a table keyed by pipeline.model's objects, so a variant built
from pieces a peer lacks fails with one clear KeyError rather than being mistimed.
"""

import copy

import numpy as np

from pipeline import model
from pipeline.constants import N_CLASSES, PIXEL_MAX
from pipeline.metrics import one_hot
from pipeline.initial import seeded_generators


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
