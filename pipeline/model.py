"""The model and its hand-derived gradient: pure numpy, no I/O, no config, no tracking.

Notation, as in docs/derivation.md. One sample: weights ``W`` (k, n), input ``x`` (n,),
logits ``z = Wx``, prediction ``ŷ = S(z)`` (variant ``softmax``) or ``ŷ = z`` (variant
``linear``), one-hot target ``y`` (k,), loss ``L = ||ŷ − y||²``.

Batched, every sample is a row: ``X`` (B, n), ``Z = X Wᵀ`` (B, k), ``Ŷ`` and ``Y`` (B, k),
and the loss is the mean over the batch, so one sample gives exactly ``((ŷ − y)**2).sum()``.
The dtype of ``W`` wins: inputs are cast to it.
"""

import numpy as np

VARIANTS = ("softmax", "linear")


def softmax(Z, out=None, row_max=None):
    """``S(z)_i = exp(z_i − m) / Σ_j exp(z_j − m)`` row-wise, with ``m = max_j z_j``.

    S is invariant to adding a constant to all logits, so subtracting the row maximum changes
    nothing but keeps every exponent <= 0: no overflow even for logits of ±1e4.
    ``out`` (may be ``Z`` itself) receives the result without allocating. ``row_max`` (B, 1) is
    ``m`` when the caller already has it: numpy's max over a short last axis is slow (~40 ns a
    row), picking ``Z[b, argmax_b]`` is not.
    """
    if row_max is None:
        row_max = Z.max(axis=-1, keepdims=True)
    E = np.subtract(Z, row_max, out=out)
    np.exp(E, out=E)
    E /= row_sums(E)
    return E


def row_sums(A):
    """``Σ_j A_bj`` for each row b, kept as a column (B, 1).

    Computed as ``A @ 1``: BLAS does it ~4x faster than numpy's sum over a short last axis.
    """
    return A @ np.ones((A.shape[-1], 1), dtype=A.dtype)


def logits(W, X, out=None):
    """``Z = X Wᵀ``: row b is ``z_b = W x_b``. ``out`` (B, k) receives it without allocating."""
    return np.matmul(X, W.T, out=out)


def predict(Z, variant, out=None):
    """``Ŷ = S(Z)`` for variant ``softmax``, ``Ŷ = Z`` for variant ``linear``.

    With ``out=Z`` the softmax is taken in place; the linear variant returns ``Z`` itself.
    """
    check_variant(variant)
    return softmax(Z, out=out) if variant == "softmax" else Z


def forward(W, X, variant):
    """``Ŷ`` for a batch: ``S(X Wᵀ)`` or ``X Wᵀ``."""
    return predict(logits(W, X), variant)


def loss(Y_hat, Y):
    """``L = (1/B) Σ_b ||ŷ_b − y_b||²``."""
    E = Y_hat - Y
    return float(np.mean(np.sum(E * E, axis=-1)))


def dL_dy_hat(Y_hat, Y, out=None):
    """``∂L_b/∂ŷ_b = 2(ŷ_b − y_b)``, one row per sample (the 1/B of the mean is in ``dL_dW``)."""
    G = np.subtract(Y_hat, Y, out=out)
    G *= 2
    return G


def softmax_jvp(S, G, out=None):
    """Backpropagate ``G = ∂L/∂S`` through the softmax: ``δ = J_Sᵀ g`` row by row.

    With the Jacobian ``∂S_i/∂z_j = S_i(δ_ij − S_j)``:
    ``δ_j = Σ_i g_i S_i(δ_ij − S_j) = S_j (g_j − Σ_i g_i S_i)``.
    This is O(k) per sample; the (B, k, k) Jacobian is never built. ``out`` (may be ``G``
    itself) receives ``δ`` without allocating a (B, k) array.
    """
    projection = row_sums(G * S)
    delta = np.subtract(G, projection, out=out)
    delta *= S
    return delta


def dL_dz(Y_hat, Y, variant):
    """``δ = ∂L/∂z`` per sample: ``J_Sᵀ · 2(ŷ − y)`` for ``softmax``, ``2(ŷ − y)`` for ``linear``."""
    G = dL_dy_hat(Y_hat, Y)
    return softmax_jvp(Y_hat, G) if variant == "softmax" else G


def dL_dW(Delta, X):
    """``∂L/∂W = (1/B) Σ_b outer(δ_b, x_b) = Δᵀ X / B``."""
    return (Delta.T @ X) / X.shape[0]


def loss_and_grad(W, X, Y, variant):
    """Loss and gradient of one batch: returns ``(L, ∂L/∂W)`` with ``∂L/∂W`` shaped like W.

    ``W`` (k, n), ``X`` (B, n), ``Y`` (B, k), ``variant`` in ``VARIANTS``. Raises ValueError on
    an unknown variant or mismatched shapes.
    """
    check_variant(variant)
    W = np.asarray(W)
    X = np.asarray(X, dtype=W.dtype)
    Y = np.asarray(Y, dtype=W.dtype)
    check_shapes(W, X, Y)
    Y_hat = forward(W, X, variant)
    return loss(Y_hat, Y), dL_dW(dL_dz(Y_hat, Y, variant), X)


def check_variant(variant):
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}: expected one of {', '.join(VARIANTS)}")


def check_shapes(W, X, Y):
    if not np.issubdtype(W.dtype, np.floating):
        # X and Y are cast to W's dtype: an integer W would silently round pixels to 0.
        raise ValueError(f"W must be a floating-point array, got dtype {W.dtype}")
    if W.ndim != 2:
        raise ValueError(f"W must be 2-D (k, n), got shape {W.shape}")
    k, n = W.shape
    if X.ndim != 2 or X.shape[1] != n:
        raise ValueError(f"X must be (B, {n}) to match W {W.shape}, got shape {X.shape}")
    if Y.shape != (X.shape[0], k):
        raise ValueError(f"Y must be (B, k) = ({X.shape[0]}, {k}) to match X {X.shape} and W {W.shape}, got shape {Y.shape}")
    if X.shape[0] == 0:
        raise ValueError("X is an empty batch (B = 0)")
