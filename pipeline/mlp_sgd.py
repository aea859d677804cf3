"""The training loop of a hidden-layer network (pipeline.mlp.Network): pipeline.sgd.SGD's epochs,
batches, chunks, halves and divergence, with the network's products in each chunk.

Per chunk of raw pixels ``P = 255·X`` (B rows), into preallocated buffers, five products:

    H  = act(P W₁ᵀ / 255 + b₁)        Network.hidden_layer
    Z  = H W₂ᵀ + b₂                   Network.output_logits
    Δ₂ = head's δ (ŷ − y, or the chain)   Network.loss_sum_and_delta
    ∂W₂ ← Δ₂ᵀ H,  Δ₁ = act'(A) ⊙ (Δ₂ W₂),  ∂W₁ ← Δ₁ᵀ P     Network.hidden_delta
    ∂b₂ ← Σ Δ₂,   ∂b₁ ← Σ Δ₁

and the step (pipeline.sgd.SGD._apply_gradient) divides ∂W₁ by 255·B and the others by B, as
for one layer. docs/derivation.md §14 derives each line. ``trainer`` and ``initial_params`` pick
the loop and the starting parameters of any table entry.
"""

import numpy as np

from pipeline.constants import N_CLASSES, PIXEL_MAX
from pipeline.mlp import Network
from pipeline.initial import initial_weights
from pipeline.sgd import SGD, accumulate


class HiddenLayerSGD(SGD):
    """pipeline.sgd.SGD for a Network: ``params`` {"W1", "b1", "W2", "b2"} (no biases with
    ``bias`` off), updated in place."""

    def make_buffers(self, rows):
        return HiddenBuffers(rows, self.params)

    def _rows_loss_and_gradient(self, buffers, order, start, stop):
        """``Σ_b L_b`` over rows ``start:stop`` (of ``order``), and every parameter's gradient sum
        (∂W₁ still times 255) over them into ``buffers.gradients``."""
        params, network, gradients, partials = self.params, self.variant, buffers.gradients, buffers.partials
        loss_sum = 0.0
        for chunk_start in range(start, stop, buffers.rows):
            chunk_stop = min(chunk_start + buffers.rows, stop)
            raw, pixels, H, Z, G, targets, hidden_delta = buffers.views(chunk_stop - chunk_start)
            raw, targets = self._chunk(order, chunk_start, chunk_stop, raw, targets)
            np.copyto(pixels, raw)  # uint8 -> float: P = 255·X
            H = network.hidden_layer(params, pixels, out=H, scale=1 / PIXEL_MAX)
            Z = network.output_logits(params, H, out=Z)
            predicted = np.argmax(Z, axis=1, out=self.predicted[chunk_start:chunk_stop])
            rows_loss, delta = network.loss_sum_and_delta(Z, targets, out=G, argmax=predicted)
            loss_sum += rows_loss
            first = chunk_start == start
            sum_into(gradients["W2"], partials["W2"], delta.T, H, first)
            delta1 = network.hidden_delta(params, H, delta, out=hidden_delta)
            sum_into(gradients["W1"], partials["W1"], delta1.T, pixels, first)
            if "b1" in gradients:
                accumulate(gradients["b2"], delta, first)
                accumulate(gradients["b1"], delta1, first)
        return loss_sum


def sum_into(total, partial, A, B, first):
    """``total = A B`` on a batch's first chunk, else ``total += A B`` (through ``partial``)."""
    np.matmul(A, B, out=total if first else partial)
    if not first:
        total += partial


class HiddenBuffers:
    """Preallocated arrays for chunks of up to ``rows`` rows of a Network, and views for fewer."""

    def __init__(self, rows, params):
        W1, W2 = params["W1"], params["W2"]
        (m, n), k, dtype = W1.shape, W2.shape[0], W1.dtype
        self.rows = rows
        self.raw = np.empty((rows, n), dtype=np.uint8)
        self.arrays = [np.empty((rows, n), dtype=dtype), np.empty((rows, m), dtype=dtype)]  # pixels, H
        self.arrays += [np.empty((rows, k), dtype=dtype) for _ in range(3)]  # Z, G, targets
        self.arrays.append(np.empty((rows, m), dtype=dtype))  # Δ₁
        self.gradients = {key: np.empty_like(P) for key, P in params.items()}
        self.partials = {key: np.empty_like(params[key]) for key in ("W1", "W2")}
        self.full = self._slice(rows)

    def views(self, rows):
        return self.full if rows == self.rows else self._slice(rows)

    def _slice(self, rows):
        return (self.raw[:rows], *(array[:rows] for array in self.arrays))


def initial_params(model, init, init_scale, n_inputs, dtype, rng, n_classes=N_CLASSES):
    """The parameters training starts from. One layer: W from ``init`` (optim.init: zeros, ones,
    normal with std ``init_scale``), b zeros. A hidden layer: He or Glorot (pipeline.mlp),
    ``init`` unused."""
    if isinstance(model, Network):
        return model.initial_params(n_inputs, n_classes, np.dtype(dtype), rng)
    params = {"W": initial_weights(init, init_scale, n_inputs, np.dtype(dtype), rng, n_classes)}
    if model.bias:
        params["b"] = np.zeros(n_classes, dtype=dtype)
    return params


def trainer(images, labels, params, model, lr, batch_size, shuffle_rng, divergence_factor, weight_decay=0.0):
    """The training loop for ``model``: pipeline.sgd.SGD, or pipeline.mlp_sgd.HiddenLayerSGD."""
    loop = HiddenLayerSGD if isinstance(model, Network) else SGD
    return loop(images, labels, params, model, lr, batch_size, shuffle_rng, divergence_factor, weight_decay)
