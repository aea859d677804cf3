"""One hidden layer, and backpropagation through it by hand: pure numpy, no I/O, no config.

    h = act(W₁x + b₁)        W₁ (m, n), b₁ (m,): m hidden units, act from pipeline.activations
    z = W₂h + b₂             W₂ (k, m), b₂ (k,)
    ŷ = out(z), L(ŷ, y)      the output and loss pieces of pipeline.heads, as for one layer

A ``Network`` is a table entry like pipeline.model.Variant (same head: ``loss_sum_and_delta``
gives ``δ₂ = ∂L/∂z``), with two layers' parameters. Backward, docs/derivation.md §14, batched
(rows are samples, ``H`` (B, m), ``Δ₂`` (B, k)):

    ∂L/∂W₂ = Δ₂ᵀ H / B              ∂L/∂b₂ = Σ_b δ₂_b / B
    ∂L/∂H  = Δ₂ W₂                  the chain rule through z = W₂h + b₂
    Δ₁     = act'(A) ⊙ (Δ₂ W₂)      through h = act(a), element-wise
    ∂L/∂W₁ = Δ₁ᵀ X / B              ∂L/∂b₁ = Σ_b δ₁_b / B

With ``bias`` off there is neither b₁ nor b₂.
"""

from dataclasses import dataclass

import numpy as np

from pipeline.model import Variant, check_shapes

INITS = ("auto", "he", "glorot")  # W₁'s initialisation (model.init); auto: the activation's own


@dataclass(frozen=True)
class Network(Variant):
    """``ŷ = output(W₂ act(W₁x + b₁) + b₂)`` scored by ``loss``."""

    activation: object = None  # forward(A, out) -> H; backward(H, G, out) -> Δ (pipeline.activations)
    hidden: int = 1  # m, the hidden units
    init: str = "auto"  # W₁'s initialisation: he, glorot, or auto (the activation's own)

    WEIGHTS = ("W1", "W2")

    @property
    def is_least_squares(self):
        return False  # the hidden layer makes the loss non-quadratic in W₁

    def parameter_shapes(self, n_inputs, n_classes):
        shapes = {"W1": (self.hidden, n_inputs), "b1": (self.hidden,), "W2": (n_classes, self.hidden), "b2": (n_classes,)}
        return {key: shape for key, shape in shapes.items() if self.bias or key.startswith("W")}

    def initial_params(self, n_inputs, n_classes, dtype, rng):
        """Random weights, zero biases. W₁: He, ``N(0, 2/n)``, which keeps the variance of ``a``
        through relu units that zero half their inputs; or Glorot, ``N(0, 2/(n + m))``, which
        keeps it through sigmoid and tanh near 0. W₂ feeds no activation: Glorot."""
        init = self.activation.init if self.init == "auto" else self.init
        std = {"he": np.sqrt(2 / n_inputs), "glorot": np.sqrt(2 / (n_inputs + self.hidden))}[init]
        params = {}
        for key, shape in self.parameter_shapes(n_inputs, n_classes).items():
            if key == "W1":
                params[key] = rng.normal(0.0, std, size=shape).astype(dtype)
            elif key == "W2":
                params[key] = rng.normal(0.0, np.sqrt(2 / sum(shape)), size=shape).astype(dtype)
            else:
                params[key] = np.zeros(shape, dtype=dtype)
        return params

    def hidden_layer(self, params, X, out=None, scale=None):
        """``H = act(X W₁ᵀ (·scale) + b₁)`` (B, m); ``out`` receives it without allocating."""
        H = np.matmul(X, params["W1"].T, out=out)
        if scale is not None:
            H *= scale
        if self.bias:
            H += params["b1"]
        return self.activation.forward(H, out=H)

    def output_logits(self, params, H, out=None):
        """``Z = H W₂ᵀ + b₂`` (B, k)."""
        Z = np.matmul(H, params["W2"].T, out=out)
        if self.bias:
            Z += params["b2"]
        return Z

    def logits(self, params, X, out=None, scale=None):
        return self.output_logits(params, self.hidden_layer(params, X, scale=scale), out=out)

    def hidden_delta(self, params, H, Delta, out=None):
        """``Δ₁ = act'(A) ⊙ (Δ₂ W₂)``: ``∂L/∂A`` from ``Δ₂ = ∂L/∂Z``; ``out`` (B, m) receives it."""
        G = np.matmul(Delta, params["W2"], out=out)
        return self.activation.backward(H, G, out=G)

    def gradients(self, params, X, H, Delta):
        """Every parameter's gradient of one batch, from its inputs, hidden units and ``Δ₂``."""
        B = X.shape[0]
        Delta1 = self.hidden_delta(params, H, Delta)
        grads = {"W1": (Delta1.T @ X) / B, "W2": (Delta.T @ H) / B}
        if self.bias:
            grads.update(b1=Delta1.sum(axis=0) / B, b2=Delta.sum(axis=0) / B)
        return grads

    def loss_and_grad(self, params, X, Y, weight_decay=0.0):
        """``(L + λ(||W₁||² + ||W₂||²), {"W1": ..., "b1": ..., "W2": ..., "b2": ...})``."""
        params, X, Y = self.checked(params, X, Y)
        H = self.hidden_layer(params, X)
        Z = self.output_logits(params, H)
        logits = Z.copy()
        _, Delta = self.loss_sum_and_delta(Z, Y)  # Z now holds Ŷ
        L = self.loss_value(logits, Z, Y) + self.penalty(params, weight_decay)
        return L, self.decayed(self.gradients(params, X, H, Delta), params, weight_decay)

    def checked(self, params, X, Y):
        W1 = np.asarray(params["W1"])
        X, Y = np.asarray(X, dtype=W1.dtype), np.asarray(Y, dtype=W1.dtype)
        check_shapes(W1, X, np.zeros((X.shape[0], W1.shape[0]) if X.ndim == 2 else (0, 0)), name="W1")
        expected = self.parameter_shapes(X.shape[1], Y.shape[-1] if Y.ndim == 2 else -1)
        expected["W1"] = W1.shape
        checked = {}
        for key, shape in expected.items():
            checked[key] = np.asarray(params[key], dtype=W1.dtype)
            if checked[key].shape != shape:
                raise ValueError(f"{key} must be {shape} to match W1 {W1.shape} and Y {Y.shape}, got shape {checked[key].shape}")
        return checked, X, Y
