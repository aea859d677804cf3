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
    max_stable_lr: float  # 2 / λ_max of the Hessian (2/N) XᵀX
    W: np.ndarray  # the least-squares fit (k, n), float64 (with the tiny ridge)
    loss: float  # its loss on the training rows: the floor of the linear variant's loss


def gram_matrices(images, labels, n_classes=N_CLASSES):
    """``(XᵀX / N, XᵀY / N)`` in float64, with ``X = images / 255``, accumulated chunk by chunk.

    Raw pixel values are integers below 256, so every product and partial sum is exact in float64
    until the final scaling.
    """
    n_rows, n_inputs = images.shape
    XtX = np.zeros((n_inputs, n_inputs))
    XtY = np.zeros((n_inputs, n_classes))
    for start in range(0, n_rows, CHUNK_ROWS):
        P = images[start : start + CHUNK_ROWS].astype(np.float64)
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


def linear_optimum(images, labels, variant, n_classes=N_CLASSES):
    """The largest stable full-batch learning rate and the least-squares fit of ``variant``, a
    pipeline.model.Variant whose ``is_least_squares`` (ŷ = Wx under squared error)."""
    if not variant.is_least_squares:
        raise ValueError(f"variant {variant.name!r} is not a least-squares problem (ŷ = Wx, squared error)")
    gram, XtY = gram_matrices(images, labels, n_classes)
    gram_max = largest_eigenvalue(gram)
    hessian_max = 2 * gram_max
    W = np.ascontiguousarray(np.linalg.solve(gram + RIDGE * gram_max * np.eye(len(gram)), XtY).T)
    floor, _ = loss_and_accuracy(W, images, labels, variant)
    return LinearOptimum(max_stable_lr=2 / hessian_max, W=W, loss=floor)
