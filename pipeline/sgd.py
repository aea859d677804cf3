"""Minibatch SGD with the hand-derived gradient, fast, on the uint8 pixel store: numpy only, no I/O.

The images stay uint8 (N, 784) in memory, as read from disk: a quarter of a float32 copy. Each
batch is gathered into a preallocated uint8 buffer and converted into a preallocated float buffer
holding the raw pixel values ``P = 255·X``. The scaling to [0, 1] never touches that (B, 784)
buffer; it is folded into the (B, k) logits and into the step size:

    Z = X Wᵀ = (P Wᵀ) / 255
    W ← W − lr · ∂L/∂W = W − lr · Δᵀ X / B = W − (lr / (255·B)) · Δᵀ P

with ``Δ = ∂L/∂Z`` from the variant's pieces in pipeline.model (``loss_sum_and_delta``). A step
is the two matrix products, the conversion of the batch and a few operations on (B, k) arrays,
all into preallocated buffers. A batch larger than CHUNK_ROWS (a full batch of 60,000 rows) is
processed in chunks whose buffers stay in cache, the gradient summed over them before W moves. A
batch of at least PARALLEL_ROWS rows is split in two halves computed at the same time by two
threads, each with its own buffers (numpy and BLAS release the GIL), and their gradients added.
docs/derivation.md §9 shows that this is the gradient of pipeline.model, line by line.
"""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from threadpoolctl import ThreadpoolController

from pipeline.constants import PIXEL_MAX
from pipeline import metrics
from pipeline.metrics import one_hot
from pipeline.model import variant as variant_named

# Rows per chunk: the float32 chunk and its uint8 source about fill one core's L2 cache; fewer
# rows cost more per-chunk overhead (measured by the benchmark).
CHUNK_ROWS = 256
# Batches this large use two threads: big enough that handing half to a thread costs little of
# their work, even when another process holds the other core.
PARALLEL_ROWS = 8192
# Chunks this large write Δᵀ P into row-major gradient buffers: OpenBLAS computes the product
# into them faster than into W's column-major layout, by more than ``W -= gradient`` then loses
# across the two layouts; smaller chunks keep W's layout. The same numbers either way
# (tests/test_sgd.py): only where the product writes them changes.
GRADIENT_ROWS = 128
# The weights that multiply the raw pixels P = 255·X: their step carries the 1/255 (see above).
INPUT_WEIGHTS = ("W", "W1")
# BLAS on one thread for the products here, small (B x 784 x 10): split over threads, each product
# waits for any thread another process has descheduled, which on a shared machine costs far more
# than it saves (python -m bench); and idle OpenBLAS threads spin after each call, on the
# core the second half of a large batch runs on.
BLAS = ThreadpoolController()


def one_blas_thread():
    return BLAS.limit(limits=1, user_api="blas")


@dataclass
class Epoch:
    """What one pass over the training rows measured, while W moved."""

    step_losses: np.ndarray  # loss of each batch, before its update (float64)
    accuracy: float  # share of rows whose batch was classified right, before its update
    diverged: bool  # stopped at the last entry of step_losses, whose update was not applied

    @property
    def loss(self):
        return float(np.mean(self.step_losses))


class SGD:
    """Minibatch SGD over shuffled epochs; W is updated in place.

    ``images`` uint8 (N, n_inputs), ``labels`` (N,) in 0..k-1, ``W`` float (k, n_inputs): its dtype
    is the dtype of all arithmetic. A ``batch_size`` >= N is full-batch gradient descent, which
    visits the rows in their stored order (shuffling cannot change a full-batch gradient). The
    last batch of an epoch holds the remaining N mod batch_size rows.

    Divergence: a batch loss that is NaN, infinite or above ``divergence_factor`` times the first
    batch loss stops training before that batch's update.
    """

    def __init__(self, images, labels, params, variant, lr, batch_size, shuffle_rng, divergence_factor, weight_decay=0.0):
        params = params if isinstance(params, dict) else {"W": params}
        self.variant = variant_named(variant)
        first, last = self.variant.WEIGHTS[0], self.variant.WEIGHTS[-1]
        n_inputs, n_classes, dtype = params[first].shape[1], params[last].shape[0], params[first].dtype
        if images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != n_inputs:
            raise ValueError(f"images must be uint8 (N, {n_inputs}), got {images.dtype} {images.shape}")
        if len(labels) != len(images) or len(images) == 0:
            raise ValueError(f"need as many labels as images, at least one: got {len(labels)} and {len(images)}")
        # Column-major weights: P Wᵀ reads Wᵀ row-major (and a row-major W gives other bits at
        # small batches). The gradient buffers are made like them below GRADIENT_ROWS rows, where
        # ``W -= gradient`` at memory speed (same layouts) matters more than the product.
        self.params = {key: np.asfortranarray(P) if P.ndim == 2 else P.copy() for key, P in params.items()}
        self.W = self.params.get("W")  # the same array: updates to W are seen through it
        self.images, self.labels = images, labels
        self.lr, self.rng, self.weight_decay = lr, shuffle_rng, weight_decay
        self.n_rows = len(images)
        self.batch_size = min(batch_size, self.n_rows)
        self.shuffle = self.batch_size < self.n_rows
        self.divergence_factor = divergence_factor
        self.loss_limit = np.inf  # set by the first batch
        self.targets = one_hot(labels, n_classes, dtype)
        halves = 2 if self.batch_size >= PARALLEL_ROWS else 1
        self.buffers = [self.make_buffers(min(self.batch_size, CHUNK_ROWS)) for _ in range(halves)]
        self.helper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sgd-half") if halves == 2 else None
        self.predicted = np.empty(self.n_rows, dtype=np.intp)
        self._steps = {}  # batch rows -> _step_factors

    def make_buffers(self, rows):
        return Buffers(rows, self.params)

    @property
    def steps_per_epoch(self):
        return -(-self.n_rows // self.batch_size)

    def run_epoch(self, on_steps=None, report_every=1):
        """One pass over the rows in a fresh random order; returns its Epoch.

        ``on_steps(n)`` is called after every ``report_every`` steps (and the last) with the
        number of steps since its previous call: a progress bar's update.
        """
        order = self.rng.permutation(self.n_rows) if self.shuffle else None
        step_losses = np.empty(self.steps_per_epoch)
        step, reported, diverged = 0, 0, False
        # Looked up once an epoch: a step of a small batch is a few microseconds of numpy each.
        n_rows, batch_size, loss_limit = self.n_rows, self.batch_size, self.loss_limit
        batch_loss_and_gradient = self._one_chunk_step() or self._batch_loss_and_gradient
        apply_gradient = self._apply_gradient
        with one_blas_thread():
            for step, start in enumerate(range(0, n_rows, batch_size)):
                stop = min(start + batch_size, n_rows)
                step_losses[step] = batch_loss = batch_loss_and_gradient(order, start, stop)
                if not batch_loss <= loss_limit:  # also true for NaN
                    diverged = True
                    break
                if loss_limit == np.inf:
                    loss_limit = self.loss_limit = self.divergence_factor * batch_loss
                apply_gradient(stop - start)
                if on_steps and (step + 1) % report_every == 0:
                    on_steps(step + 1 - reported)
                    reported = step + 1
        if on_steps and step + 1 > reported:
            on_steps(step + 1 - reported)
        rows_seen = stop
        labels_seen = self.labels[order[:rows_seen]] if self.shuffle else self.labels[:rows_seen]
        accuracy = np.count_nonzero(self.predicted[:rows_seen] == labels_seen) / rows_seen
        return Epoch(step_losses[: step + 1], accuracy, diverged)

    def _batch_loss_and_gradient(self, order, start, stop):
        """Loss of rows ``start:stop`` (of ``order``) and ``Δᵀ P`` summed over them into the first
        buffers' gradient."""
        if self.helper is None:
            return self._rows_loss_and_gradient(self.buffers[0], order, start, stop) / (stop - start)
        middle = (start + stop) // 2
        second_half = self.helper.submit(self._rows_loss_and_gradient, self.buffers[1], order, middle, stop)
        loss_sum = self._rows_loss_and_gradient(self.buffers[0], order, start, middle) + second_half.result()
        for key, gradient in self.buffers[0].gradients.items():
            gradient += self.buffers[1].gradients[key]
        return loss_sum / (stop - start)

    def _rows_loss_and_gradient(self, buffers, order, start, stop):
        """``Σ_b L_b`` over rows ``start:stop`` (of ``order``), and ``Δᵀ P`` summed over them into
        ``buffers.gradient``."""
        params, variant, bias_gradient = self.params, self.variant, buffers.gradients.get("b")
        loss_sum = 0.0
        for chunk_start in range(start, stop, buffers.rows):
            chunk_stop = min(chunk_start + buffers.rows, stop)
            raw, pixels, Z, G, targets, partial = buffers.views(chunk_stop - chunk_start)
            raw, targets = self._chunk(order, chunk_start, chunk_stop, raw, targets)
            np.copyto(pixels, raw)  # uint8 -> float: P = 255·X
            Z = variant.logits(params, pixels, out=Z, scale=1 / PIXEL_MAX)  # X Wᵀ (+ b)
            predicted = np.argmax(Z, axis=1, out=self.predicted[chunk_start:chunk_stop])
            rows_loss, delta = variant.loss_sum_and_delta(Z, targets, out=G, argmax=predicted)
            loss_sum += rows_loss
            # The batch's first chunk writes the gradient sum, later ones add to it.
            first = chunk_start == start
            np.matmul(delta.T, pixels, out=buffers.gradient if first else partial)
            if not first:
                buffers.gradient += partial
            if bias_gradient is not None:  # Σ_b δ_b, as the product 1ᵀ Δ
                accumulate(bias_gradient, delta, first)
        return loss_sum

    def _chunk(self, order, start, stop, raw, targets):
        """The images and targets of rows ``start:stop`` of the epoch's ``order``: gathered into
        ``raw`` and ``targets`` when shuffled, else views of the data."""
        if not self.shuffle:
            return self.images[start:stop], self.targets[start:stop]
        # mode="clip": the rows are valid indices, and "raise" would copy through a temporary.
        # The arrays' own take: np.take is a Python wrapper around it, felt at small batches.
        rows = order[start:stop]
        self.images.take(rows, axis=0, out=raw, mode="clip")
        self.targets.take(rows, axis=0, out=targets, mode="clip")
        return raw, targets

    def _one_chunk_step(self):
        """``_batch_loss_and_gradient`` for a batch that is one chunk on one thread: the same
        operations in the same order, its arrays and functions looked up once rather than at
        every step. None for batches of several chunks or halves, and for a subclass with its
        own gradient (pipeline.mlp_sgd)."""
        if self.helper is not None or self.batch_size > CHUNK_ROWS or type(self)._rows_loss_and_gradient is not SGD._rows_loss_and_gradient:
            return None
        buffers, params, chunk, predicted = self.buffers[0], self.params, self._chunk, self.predicted
        logits, loss_sum_and_delta = self.variant.logits, self.variant.loss_sum_and_delta
        gradient, bias_gradient = buffers.gradient, buffers.gradients.get("b")
        # A 0-d array: the same float as 1/255 cast to the dtype, which numpy multiplies by
        # faster than by a Python float.
        scale = np.asarray(1 / PIXEL_MAX, dtype=buffers.pixels.dtype)
        copyto, matmul = np.copyto, np.matmul

        def batch_loss_and_gradient(order, start, stop):
            raw, pixels, Z, G, targets, _ = buffers.views(stop - start)
            raw, targets = chunk(order, start, stop, raw, targets)
            copyto(pixels, raw)  # uint8 -> float: P = 255·X
            Z = logits(params, pixels, out=Z, scale=scale)  # X Wᵀ (+ b)
            rows_loss, delta = loss_sum_and_delta(Z, targets, out=G, argmax=Z.argmax(axis=1, out=predicted[start:stop]))
            matmul(delta.T, pixels, out=gradient)
            if bias_gradient is not None:
                accumulate(bias_gradient, delta, True)
            return rows_loss / (stop - start)

        return batch_loss_and_gradient

    def _apply_gradient(self, batch_rows):
        """``W ← W − (lr / (255·B)) · Δᵀ P``, i.e. ``W − lr · ∂L/∂W``; with weight decay first
        ``W ← (1 − 2·lr·λ) W`` (the step along ``2λW``); ``b ← b − (lr / B) Σ_b δ_b``."""
        steps = self._steps.get(batch_rows)
        if steps is None:
            steps = self._steps[batch_rows] = self._step_factors(batch_rows)
        for param, gradient, factor, decay in steps:
            if decay is not None:
                param *= decay
            np.multiply(gradient, factor, out=gradient)
            param -= gradient

    def _step_factors(self, batch_rows):
        """``(parameter, gradient, step factor, decay factor or None)`` for each parameter, the
        factors as 0-d arrays of its dtype: the Python floats' values, cast as numpy would."""
        steps = []
        for key, gradient in self.buffers[0].gradients.items():
            param = self.params[key]
            factor = np.asarray(self.lr / ((PIXEL_MAX if key in INPUT_WEIGHTS else 1) * batch_rows), dtype=param.dtype)
            decayed = self.weight_decay and key in self.variant.WEIGHTS
            decay = np.asarray(1 - 2 * self.lr * self.weight_decay, dtype=param.dtype) if decayed else None
            steps.append((param, gradient, factor, decay))
        return steps


def accumulate(total, Delta, first):
    """``total = Σ_b Δ_b`` (first chunk of a batch) or ``total += Σ_b Δ_b``, rows summed by BLAS."""
    ones = np.ones((1, len(Delta)), dtype=Delta.dtype)
    if first:
        np.matmul(ones, Delta, out=total[None, :])
    else:
        total += (ones @ Delta)[0]


class Buffers:
    """Preallocated arrays for chunks of up to ``rows`` rows, and views of them for fewer."""

    def __init__(self, rows, params):
        W = params["W"]
        k, n = W.shape
        self.rows = rows
        self.raw = np.empty((rows, n), dtype=np.uint8)
        self.pixels = np.empty((rows, n), dtype=W.dtype)
        self.Z = np.empty((rows, k), dtype=W.dtype)
        self.G = np.empty((rows, k), dtype=W.dtype)
        self.targets = np.empty((rows, k), dtype=W.dtype)
        # Chunks of GRADIENT_ROWS rows or more get row-major gradients (see GRADIENT_ROWS).
        order = "C" if rows >= GRADIENT_ROWS else "K"
        self.gradients = {key: np.empty_like(P, order=order) for key, P in params.items()}
        self.gradient = self.gradients["W"]
        self.partial = np.empty_like(W, order=order)
        self.full = self._slice(rows)

    def views(self, rows):
        return self.full if rows == self.rows else self._slice(rows)

    def _slice(self, rows):
        return (self.raw[:rows], self.pixels[:rows], self.Z[:rows], self.G[:rows], self.targets[:rows], self.partial)


def loss_and_accuracy(params, images, labels, variant, chunk_rows=CHUNK_ROWS * 4):
    """pipeline.metrics.loss_and_accuracy with BLAS on one thread, as the loop runs."""
    with one_blas_thread():
        return metrics.loss_and_accuracy(params, images, labels, variant, chunk_rows)
