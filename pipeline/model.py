"""The model and its hand-derived gradient, as a table: pure numpy, no I/O, no config, no tracking.

Notation, as in docs/derivation.md. One sample: weights ``W`` (k, n), input ``x`` (n,), logits
``z = Wx``, prediction ``ŷ = out(z)``, one-hot target ``y`` (k,), loss ``L(ŷ, y)``. A variant is
one entry of ``VARIANTS``: an output function and a loss (pipeline.heads), each a small object
holding its forward beside its hand-written derivative, as micrograd keeps each operation's
``_backward`` beside it:

    softmax      ŷ = S(z)   L = ||ŷ − y||²
    linear       ŷ = z      L = ||ŷ − y||²
    (a config)   ŷ = S(z)   L = −Σ_i y_i log ŷ_i      the softmax with cross-entropy: δ = ŷ − y

and, per entry, a bias ``b`` (``z = Wx + b``) or not. Weight decay adds ``λ||W||²`` to the loss
(``penalty``; never on a bias). A hidden layer (pipeline.mlp) is an entry of the same shape.

Batched, every sample is a row: ``X`` (B, n), ``Z = X Wᵀ`` (B, k), ``Ŷ`` and ``Y`` (B, k), and the
loss is the mean over the batch, so one sample gives exactly ``((ŷ − y)**2).sum()``. Parameters
are a dict of arrays (``{"W": W}``, ``{"W": W, "b": b}``) and gradients come back under the same
keys. The dtype of ``W`` wins: inputs are cast to it.
"""

from dataclasses import dataclass

import numpy as np

from pipeline.heads import IDENTITY, SOFTMAX, SQUARED_ERROR

# --- a variant: the pieces composed --------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """``ŷ = output(Wx + b)`` scored by ``loss``; the gradient is the pieces' derivatives chained.

    A loss with a simpler joint derivative with its output (cross-entropy after the softmax:
    ``δ = ŷ − y``) has its own ``loss_sum_and_delta``, used instead of the chain. ``bias``: whether
    ``params`` holds ``b`` (k,). A hidden layer (pipeline.mlp.Network) overrides ``logits``,
    ``gradients`` and the parameters.
    """

    name: str
    output: object  # forward(Z, out, argmax) -> Ŷ; backward(Ŷ, G, out) -> Δ
    loss: object  # value(Ŷ, Y, Z) -> L; gradient(Ŷ, Y, out) -> G; row_sum(Ŷ, Y, G) -> Σ_b L_b
    bias: bool = False

    WEIGHTS = ("W",)  # the parameters weight decay applies to: never a bias

    def __post_init__(self):
        fused = getattr(self.loss, "loss_sum_and_delta", None)
        if fused is not None and self.output is not SOFTMAX:
            raise ValueError(f"variant {self.name!r}: cross-entropy is defined after a softmax output only")
        object.__setattr__(self, "_fused", fused)

    @property
    def is_least_squares(self):
        """``ŷ = Wx (+ b)`` under squared error: the loss is a quadratic in W (pipeline.least_squares)."""
        return self.output is IDENTITY and self.loss is SQUARED_ERROR

    def parameter_shapes(self, n_inputs, n_classes):
        return {"W": (n_classes, n_inputs), **({"b": (n_classes,)} if self.bias else {})}

    def logits(self, params, X, out=None, scale=None):
        """``Z = X Wᵀ (·scale) + b``: row b is ``z_b = W x_b + b``. ``out`` (B, k) receives it
        without allocating; ``scale`` multiplies ``X Wᵀ`` (the loop's 1/255, pipeline.sgd)."""
        Z = np.matmul(X, params["W"].T, out=out)
        if scale is not None:
            Z *= scale
        if self.bias:
            Z += params["b"]
        return Z

    def forward(self, params, X):
        """``Ŷ = output(X Wᵀ + b)``."""
        return self.output.forward(self.logits(params, X))

    def predict(self, params, X):
        """``(Z, Ŷ)``: the logits (a forward without ``out`` leaves Z as it is) and the prediction."""
        Z = self.logits(params, X)
        return Z, self.output.forward(Z)

    def loss_value(self, Z, Y_hat, Y):
        """``L`` of a batch (the mean) from its logits and prediction."""
        return self.loss.value(Y_hat, Y, Z)

    def loss_sum_and_delta(self, Z, Y, out=None, argmax=None):
        """``(Σ_b L_b, Δ)`` with ``Δ = ∂L/∂Z`` row by row (``δ_b = ∂L_b/∂z_b``), from logits Z.

        Z is overwritten with ``Ŷ``; ``out`` (may be None) receives ``G = ∂L/∂Ŷ`` and then ``Δ``.
        ``argmax`` (B,) is each row's largest logit, if known. The chain rule, ``δ = J_outᵀ g``.
        """
        if self._fused is not None:
            return self._fused(self.output, Z, Y, out=out, argmax=argmax)
        Y_hat = self.output.forward(Z, out=Z, argmax=argmax)
        G = self.loss.gradient(Y_hat, Y, out=out)
        loss_sum = self.loss.row_sum(Y_hat, Y, G)
        return loss_sum, self.output.backward(Y_hat, G, out=G)

    def gradients(self, params, X, Delta):
        """``∂L/∂W = (1/B) Σ_b outer(δ_b, x_b) = Δᵀ X / B`` and ``∂L/∂b = (1/B) Σ_b δ_b``."""
        grads = {"W": (Delta.T @ X) / X.shape[0]}
        if self.bias:
            grads["b"] = Delta.sum(axis=0) / X.shape[0]
        return grads

    def penalty(self, params, weight_decay):
        """``λ Σ ||W||²`` over the weight matrices (not the biases): weight decay's term of the loss."""
        return float(weight_decay * sum(np.vdot(params[key], params[key]) for key in self.WEIGHTS)) if weight_decay else 0.0

    def loss_and_grad(self, params, X, Y, weight_decay=0.0):
        """Loss and gradient of one batch: ``(L + λΣ||W||², {"W": ∂/∂W, ...})``, each gradient
        shaped like its parameter, ``2λW`` added to each weight's. Raises ValueError on
        mismatched shapes."""
        params, X, Y = self.checked(params, X, Y)
        Z = self.logits(params, X)
        logits = Z.copy()
        _, Delta = self.loss_sum_and_delta(Z, Y)  # Z now holds Ŷ
        L = self.loss_value(logits, Z, Y) + self.penalty(params, weight_decay)
        return L, self.decayed(self.gradients(params, X, Delta), params, weight_decay)

    def decayed(self, grads, params, weight_decay):
        """``∂/∂W (λ||W||²) = 2λW`` added to each weight's gradient."""
        return {key: g + 2 * weight_decay * params[key] if weight_decay and key in self.WEIGHTS else g for key, g in grads.items()}

    def objective(self, params, X, Y, weight_decay=0.0):
        """``L + λΣ||W||²`` of one batch from the forward pass alone: what ``loss_and_grad``
        differentiates."""
        Z, Y_hat = self.predict(params, X)
        return self.loss_value(Z, Y_hat, Y) + self.penalty(params, weight_decay)

    def checked(self, params, X, Y):
        """``params``, X and Y as arrays of the weights' dtype; ValueError naming a bad shape."""
        W = np.asarray(params["W"])
        X, Y = np.asarray(X, dtype=W.dtype), np.asarray(Y, dtype=W.dtype)
        check_shapes(W, X, Y)
        checked = {key: np.asarray(params[key], dtype=W.dtype) for key in self.parameter_shapes(*W.shape[::-1])}
        if self.bias and checked["b"].shape != (W.shape[0],):
            raise ValueError(f"b must be ({W.shape[0]},) to match W {W.shape}, got shape {checked['b'].shape}")
        return checked, X, Y


# The design's two variants by name (any other is built from its conf fields: pipeline.variants).
VARIANTS = {entry.name: entry for entry in (Variant("softmax", SOFTMAX, SQUARED_ERROR), Variant("linear", IDENTITY, SQUARED_ERROR))}


def variant(name):
    """The table entry called ``name`` (a Variant passes through). Raises ValueError if unknown."""
    if isinstance(name, Variant):
        return name
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}: expected one of {', '.join(VARIANTS)}")
    return VARIANTS[name]


# --- the single-layer model by variant name: what the stages and the seed example call ----------


def forward(W, X, name):
    """``Ŷ`` for a batch: ``output(X Wᵀ)`` of the variant called ``name``."""
    return variant(name).forward({"W": W}, X)


def loss_and_grad(W, X, Y, name):
    """``(L, ∂L/∂W)`` of one batch for the variant called ``name``; ``W`` (k, n), ``X`` (B, n),
    ``Y`` (B, k). Raises ValueError on an unknown variant or mismatched shapes."""
    L, grads = variant(name).loss_and_grad({"W": W}, X, Y)
    return L, grads["W"]


def check_shapes(W, X, Y, name="W"):
    """ValueError naming the first of ``W`` (k, n) — called ``name`` —, X (B, n), Y (B, k) that
    does not fit."""
    if not np.issubdtype(W.dtype, np.floating):
        # X and Y are cast to W's dtype: an integer W would silently round pixels to 0.
        raise ValueError(f"{name} must be a floating-point array, got dtype {W.dtype}")
    if W.ndim != 2:
        raise ValueError(f"{name} must be 2-D (k, n), got shape {W.shape}")
    k, n = W.shape
    if X.ndim != 2 or X.shape[1] != n:
        raise ValueError(f"X must be (B, {n}) to match {name} {W.shape}, got shape {X.shape}")
    if Y.shape != (X.shape[0], k):
        raise ValueError(f"Y must be (B, k) = ({X.shape[0]}, {k}) to match X {X.shape} and {name} {W.shape}, got shape {Y.shape}")
    if X.shape[0] == 0:
        raise ValueError("X is an empty batch (B = 0)")
