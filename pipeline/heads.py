"""A variant's head: its output function and its loss, each a small object holding its forward
beside its hand-written derivative (as micrograd keeps each operation's ``_backward`` beside it),
and the numpy functions they are made of. Pure numpy, no I/O, no config, no tracking.

Notation, as in docs/derivation.md. Logits ``Z`` (B, k), one row per sample, prediction
``Ŷ = out(Z)``, one-hot targets ``Y`` (B, k), loss ``L(Ŷ, Y)``, the mean over the rows:

    Softmax       ŷ = S(z)                 backward: δ = S ⊙ (g − (g·S) 1)
    Identity      ŷ = z                    backward: δ = g
    SquaredError  L = ||ŷ − y||²           gradient: g = 2(ŷ − y)
    CrossEntropy  L = −Σ_i y_i log ŷ_i     after the softmax only, jointly: δ = ŷ − y

pipeline.model pairs an output with a loss into a variant and chains their derivatives.
"""

import numpy as np


def softmax(Z, out=None, row_max=None):
    """``S(z)_i = exp(z_i − m) / Σ_j exp(z_j − m)`` row-wise, with ``m = max_j z_j``.

    S is invariant to adding a constant to all logits, so subtracting the row maximum changes
    nothing but keeps every exponent <= 0: no overflow even for logits of ±1e4. ``out`` (may be
    ``Z`` itself) receives the result without allocating. ``row_max`` (B, 1) is ``m`` when the
    caller already has it (numpy's max over a short last axis is slow).
    """
    if row_max is None:
        row_max = Z.max(axis=-1, keepdims=True)
    E = np.subtract(Z, row_max, out=out)
    np.exp(E, out=E)
    E /= row_sums(E)
    return E


def log_softmax(Z):
    """``log S(z)_i = (z_i − m) − log Σ_j exp(z_j − m)`` row-wise, never ``log(0)``.

    Taking the log of the softmax's output would give −inf once a probability underflows to 0
    (a logit ~87 below the largest in float32); the shifted logits keep every term finite.
    """
    shifted = Z - Z.max(axis=-1, keepdims=True)
    return shifted - np.log(row_sums(np.exp(shifted)))


def softmax_jvp(S, G, out=None):
    """Backpropagate ``G = ∂L/∂S`` through the softmax: ``δ = J_Sᵀ g`` row by row.

    With the Jacobian ``∂S_i/∂z_j = S_i(δ_ij − S_j)``:
    ``δ_j = Σ_i g_i S_i(δ_ij − S_j) = S_j (g_j − Σ_i g_i S_i)``. This is O(k) per sample; the
    (B, k, k) Jacobian is never built. ``out`` (may be ``G`` itself) receives ``δ`` without
    allocating a (B, k) array.
    """
    projection = row_sums(G * S)
    delta = np.subtract(G, projection, out=out)
    delta *= S
    return delta


def row_sums(A):
    """``Σ_j A_bj`` for each row b, kept as a column (B, 1): ``A @ 1``, which BLAS does faster than
    numpy's sum over a short last axis."""
    return A @ ones_column(A.shape[-1], A.dtype)


def into(out, A):
    """``A``, written into ``out`` unless ``out`` is None or ``A`` itself."""
    return A if out is None or out is A else np.copyto(out, A) or out


class Softmax:
    """``ŷ = S(z)``: ``forward`` is ``softmax``, ``backward`` its Jacobian product ``softmax_jvp``."""

    def forward(self, Z, out=None, argmax=None):
        """``Ŷ = S(Z)``; ``argmax`` (B,), the column of each row's largest logit, if known."""
        row_max = None if argmax is None else Z[row_numbers(len(Z)), argmax][:, None]
        return softmax(Z, out=out, row_max=row_max)

    def backward(self, Y_hat, G, out=None):
        """``Δ = ∂L/∂Z`` from ``G = ∂L/∂Ŷ``: ``δ = S ⊙ (g − (g·S) 1)`` row by row."""
        return softmax_jvp(Y_hat, G, out=out)


class Identity:
    """``ŷ = z``: its Jacobian is the identity, so ``backward`` passes ``G`` through."""

    def forward(self, Z, out=None, argmax=None):
        """``Ŷ = Z`` (Z itself when ``out`` is None or Z)."""
        return into(out, Z)

    def backward(self, Y_hat, G, out=None):
        """``Δ = G``: ``J = I``."""
        return into(out, G)


class SquaredError:
    """``L = ||ŷ − y||²`` per sample; a batch's loss is the mean over its rows."""

    def value(self, Y_hat, Y, Z=None):
        """``L = (1/B) Σ_b ||ŷ_b − y_b||²`` (the logits ``Z`` are not needed)."""
        E = Y_hat - Y
        return float(np.mean(np.sum(E * E, axis=-1)))

    def gradient(self, Y_hat, Y, out=None):
        """``G = ∂L_b/∂ŷ_b = 2(ŷ_b − y_b)``, one row per sample (the 1/B of the mean comes later)."""
        G = np.subtract(Y_hat, Y, out=out)
        np.add(G, G, out=G)  # 2G exactly, without converting a Python 2 at every step
        return G

    def row_sum(self, Y_hat, Y, G):
        """``Σ_b ||ŷ_b − y_b||²``, read off ``G = 2(Ŷ − Y)`` without another pass over Ŷ."""
        return float(np.vdot(G, G)) / 4


class CrossEntropy:
    """``L = −Σ_i y_i log ŷ_i`` with ``ŷ = S(z)``: defined after the softmax only, so both are one
    head, computed from the logits. Targets are distributions (one-hot rows, summing to 1)."""

    def value(self, Y_hat, Y, Z=None):
        """``L = −(1/B) Σ_b Σ_i y_bi log ŷ_bi``: from the logits ``Z`` (``log_softmax``) when
        given, as every caller in the project does; else from the probabilities ``Ŷ``."""
        log_Y_hat = log_softmax(Z) if Z is not None else np.log(Y_hat)
        return float(-np.mean(np.sum(Y * log_Y_hat, axis=-1)))

    def loss_sum_and_delta(self, output, Z, Y, out=None, argmax=None):
        """``(Σ_b L_b, Δ)`` with ``δ = ŷ − y`` (docs §11): the softmax Jacobian times
        ``g = −y / ŷ`` collapses to it, and no Jacobian or ``1/ŷ`` is formed. Z becomes ``Ŷ``.

        ``L_b = (Σ_i y_i) log Σ_j exp(z_j − m) − Σ_i y_i (z_i − m)``, read off on the way.
        """
        row_max = Z.max(axis=-1, keepdims=True) if argmax is None else Z[row_numbers(len(Z)), argmax][:, None]
        Z -= row_max
        target_logits = np.vdot(Y, Z)  # Σ_b Σ_i y_bi (z_bi − m_b)
        np.exp(Z, out=Z)
        sums = row_sums(Z)
        Z /= sums
        loss_sum = float(np.vdot(row_sums(Y), np.log(sums))) - float(target_logits)
        return loss_sum, np.subtract(Z, Y, out=out)


SOFTMAX, IDENTITY, SQUARED_ERROR, CROSS_ENTROPY = Softmax(), Identity(), SquaredError(), CrossEntropy()
# The pieces by the names conf/model/*.yaml gives them (model.output, model.loss).
OUTPUTS = {"softmax": SOFTMAX, "identity": IDENTITY}
LOSSES = {"squared_error": SQUARED_ERROR, "cross_entropy": CROSS_ENTROPY}


# --- constants of the small arrays a step uses, made once (read-only) ---------------------------

CONSTANTS = {}


def ones_column(k, dtype):
    """The column ``1`` (k, 1): a small step feels allocating it each time."""
    return constant(("ones", k, dtype), lambda: np.ones((k, 1), dtype=dtype))


def row_numbers(n):
    """``0 … n−1``: the rows of a fancy index ``Z[rows, cols]``."""
    return constant(("rows", n), lambda: np.arange(n))


def constant(key, make):
    array = CONSTANTS.get(key)
    if array is None:
        array = CONSTANTS[key] = make()
        array.flags.writeable = False
    return array
