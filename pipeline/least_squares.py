"""The linear variant's loss is a quadratic in W: its curvature and its minimum, exactly.

With ``X`` (N, n) the training inputs and ``Y`` (N, k) their one-hot targets,

    L(W) = (1/N) Σ_b ||W x_b − y_b||² = (1/N) Σ_c ||X w_c − Y[:, c]||²

sums one least-squares problem per output row ``w_c`` of W, all with the same Hessian
``H = (2/N) XᵀX`` (n x n). Two facts follow, each from the Gram matrix ``XᵀX / N``:

- Full-batch gradient descent multiplies the error along H's top eigenvector by
  ``(1 − lr·λ_max)`` each step, so it converges only for ``lr < 2 / λ_max(H)``: the largest
  stable learning rate. λ_max comes from power iteration on the Gram matrix (milliseconds).
- The minimum is the least-squares fit ``Wᵀ = (XᵀX)⁻¹ XᵀY``: the floor the linear variant's
  loss curve can approach. XᵀX is singular for MNIST (pixels that are 0 in every image), so a
  tiny ridge makes it invertible: ``Wᵀ = (XᵀX/N + ε·λ_max·I)⁻¹ XᵀY/N`` with ε = RIDGE. Its loss
  is above the exact minimum by ~1e-9 of it (measured on the packaged data against
  ``np.linalg.lstsq``, which takes 5-30x longer).

With a bias (``z = Wx + b``) the same holds for the augmented input ``x̃ = (x, 1)`` and
``W̃ = (W | b)``: the bias is one more column of weights whose input is always 1. Weight decay
``λ||W||²`` adds ``λD`` to the Gram matrix (D: the identity, except 0 for the bias column, which
is not penalised): the Hessian is ``2(X̃ᵀX̃/N + λD)`` and the minimum the ridge regression
``W̃ᵀ = (X̃ᵀX̃/N + λD)⁻¹ X̃ᵀY/N``. The floor reported is the data term of that minimum, the loss the
training curve shows; its penalty is reported beside it.

Pure numpy on the uint8 images; pixels are scaled to [0, 1] as in training.
"""

from dataclasses import dataclass

import numpy as np

from pipeline.constants import N_CLASSES, PIXEL_MAX
from pipeline.metrics import loss_and_accuracy, one_hot

# Each chunk's float64 copy of the pixels stays a few MB.
CHUNK_ROWS = 2048
RIDGE = 1e-12


@dataclass(frozen=True)
class LinearOptimum:
    max_stable_lr: float  # 2 / λ_max of the Hessian 2(X̃ᵀX̃/N + λD)
    W: np.ndarray  # the least-squares fit (k, n), float64 (with the tiny ridge)
    loss: float  # its data loss on the training rows: the floor of the linear variant's loss
    b: np.ndarray | None = None  # its bias (k,), for a variant with one
    penalty: float = 0.0  # λ||W||² of the fit, with weight decay


def gram_matrices(images, labels, n_classes=N_CLASSES, bias=False):
    """``(XᵀX / N, XᵀY / N)`` in float64, with ``X = images / 255`` (and a last column of ones
    with ``bias``), accumulated chunk by chunk.

    Raw pixel values are integers below 256, so every product and partial sum is exact in float64
    until the final scaling.
    """
    n_rows, n_inputs = images.shape
    n_inputs += bias
    XtX = np.zeros((n_inputs, n_inputs))
    XtY = np.zeros((n_inputs, n_classes))
    for start in range(0, n_rows, CHUNK_ROWS):
        P = images[start : start + CHUNK_ROWS].astype(np.float64)
        if bias:  # the constant input 1, as a pixel of value 255
            P = np.hstack([P, np.full((len(P), 1), float(PIXEL_MAX))])
        XtX += P.T @ P
        XtY += P.T @ one_hot(labels[start : start + CHUNK_ROWS], n_classes, np.float64)
    return XtX / (PIXEL_MAX**2 * n_rows), XtY / (PIXEL_MAX * n_rows)


def largest_eigenvalue(A, tolerance=1e-7, max_iterations=10_000):
    """λ_max of a symmetric positive semi-definite matrix A by power iteration.

    ``v ← A v / ||A v||`` until the Rayleigh quotient ``vᵀ A v`` changes by less than
    ``tolerance`` relative to itself. Starts from the all-ones vector, which has a large
    component along the top eigenvector of a Gram matrix of non-negative pixels.
    """
    v = np.ones(A.shape[0]) / np.sqrt(A.shape[0])
    eigenvalue = 0.0
    for _ in range(max_iterations):
        Av = A @ v
        previous, eigenvalue = eigenvalue, float(v @ Av)
        norm = np.linalg.norm(Av)
        if norm == 0:
            return 0.0
        v = Av / norm
        if abs(eigenvalue - previous) <= tolerance * eigenvalue:
            return eigenvalue
    raise ArithmeticError(f"power iteration did not converge in {max_iterations} iterations")


def linear_optimum(images, labels, variant, n_classes=N_CLASSES, weight_decay=0.0):
    """The largest stable full-batch learning rate and the least-squares fit of ``variant``, a
    pipeline.model.Variant whose ``is_least_squares`` (ŷ = Wx (+ b) under squared error), with
    weight decay ``λ = weight_decay``."""
    if not variant.is_least_squares:
        raise ValueError(f"variant {variant.name!r} is not a least-squares problem (ŷ = Wx, squared error)")
    gram, XtY = gram_matrices(images, labels, n_classes, variant.bias)
    if weight_decay:  # λD: every weight but the bias column
        gram = gram + weight_decay * np.diag(np.r_[np.ones(images.shape[1]), np.zeros(int(variant.bias))])
    gram_max = largest_eigenvalue(gram)
    hessian_max = 2 * gram_max
    fit = np.ascontiguousarray(np.linalg.solve(gram + RIDGE * gram_max * np.eye(len(gram)), XtY).T)
    params = {"W": np.ascontiguousarray(fit[:, : images.shape[1]])}
    if variant.bias:
        params["b"] = fit[:, -1].copy()
    floor, _ = loss_and_accuracy(params, images, labels, variant)
    return LinearOptimum(max_stable_lr=2 / hessian_max, W=params["W"], loss=floor, b=params.get("b"),
                         penalty=variant.penalty(params, weight_decay))
