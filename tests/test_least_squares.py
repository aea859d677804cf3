"""The linear variant's stability limit and least-squares floor, checked against their meaning."""

import numpy as np
import pytest

from pipeline.heads import IDENTITY, SQUARED_ERROR
from pipeline.least_squares import gram_matrices, largest_eigenvalue, linear_optimum
from pipeline.metrics import one_hot
from pipeline.model import VARIANTS, Variant
from pipeline.initial import seeded_generators
from pipeline.sgd import SGD, loss_and_accuracy


def problem(rows=300, seed=0):
    """Images whose pixels are 0 in every row at the borders: XᵀX is singular, as for MNIST."""
    rng = np.random.default_rng(seed)
    images = np.zeros((rows, 28, 28), dtype=np.uint8)
    images[:, 4:24, 4:24] = rng.integers(0, 256, (rows, 20, 20)) * (rng.random((rows, 20, 20)) < 0.3)
    return images.reshape(rows, 784), rng.integers(0, 10, rows).astype(np.uint8)


def test_gram_matrices_are_the_products_of_the_scaled_pixels():
    images, labels = problem()
    X, Y = images / 255, one_hot(labels, 10, np.float64)

    XtX, XtY = gram_matrices(images, labels)

    np.testing.assert_allclose(XtX, X.T @ X / len(X), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(XtY, X.T @ Y / len(X), rtol=1e-12, atol=1e-15)


def test_power_iteration_finds_the_largest_eigenvalue():
    rng = np.random.default_rng(1)
    A = rng.random((50, 30))
    A = A.T @ A

    assert largest_eigenvalue(A) == pytest.approx(np.linalg.eigvalsh(A)[-1], rel=1e-6)
    assert largest_eigenvalue(np.zeros((4, 4))) == 0.0


def test_the_floor_is_the_least_squares_minimum_despite_a_singular_gram_matrix():
    images, labels = problem()
    assert np.linalg.matrix_rank(gram_matrices(images, labels)[0]) < 784

    optimum = linear_optimum(images, labels, VARIANTS["linear"])

    X, Y = images / 255, one_hot(labels, 10, np.float64)
    exact, *_ = np.linalg.lstsq(X, Y, rcond=None)
    exact_loss = loss_and_accuracy(np.ascontiguousarray(exact.T), images, labels, "linear")[0]
    assert optimum.loss == pytest.approx(exact_loss, rel=1e-6)
    assert optimum.loss >= exact_loss * (1 - 1e-12)  # nothing goes below the minimum


@pytest.mark.parametrize("fraction, converges", [(0.95, True), (1.05, False)])
def test_full_batch_descent_converges_exactly_below_the_max_stable_lr(fraction, converges):
    images, labels = problem()
    optimum = linear_optimum(images, labels, VARIANTS["linear"])
    W = np.zeros((10, 784))
    sgd = SGD(images, labels, W, "linear", fraction * optimum.max_stable_lr, len(images), seeded_generators(0)[1], 1e6)

    epochs = [sgd.run_epoch() for _ in range(300)]

    diverged = any(epoch.diverged for epoch in epochs)
    assert diverged != converges
    if converges:
        assert optimum.loss < epochs[-1].loss < epochs[0].loss


def test_only_a_least_squares_variant_has_an_optimum_here():
    images, labels = problem(rows=20)
    with pytest.raises(ValueError, match="variant 'softmax' is not a least-squares problem"):
        linear_optimum(images, labels, VARIANTS["softmax"])



LINEAR_BIAS = Variant("linear+b", output=IDENTITY, loss=SQUARED_ERROR, bias=True)


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_with_a_bias_and_weight_decay_the_floor_is_the_ridge_minimum_of_the_augmented_input(weight_decay):
    """x̃ = (x, 1), penalty λ||W||² on W only: the minimiser solves (X̃ᵀX̃/N + λD) W̃ᵀ = X̃ᵀY/N."""
    images, labels = problem()
    optimum = linear_optimum(images, labels, LINEAR_BIAS, weight_decay=weight_decay)

    X = np.hstack([images / 255, np.ones((len(images), 1))])
    Y = one_hot(labels, 10, np.float64)
    D = np.diag(np.r_[np.ones(784), 0.0])
    # The same problem by lstsq on stacked rows: √(Nλ)·D below X̃, zeros below Y.
    stacked = np.vstack([X, np.sqrt(len(X) * weight_decay) * D])
    exact, *_ = np.linalg.lstsq(stacked, np.vstack([Y, np.zeros((785, 10))]), rcond=None)
    exact = {"W": np.ascontiguousarray(exact[:784].T), "b": exact[784]}
    exact_loss = loss_and_accuracy(exact, images, labels, LINEAR_BIAS)[0]
    assert optimum.loss == pytest.approx(exact_loss, rel=1e-6)
    np.testing.assert_allclose(optimum.b, exact["b"], rtol=1e-4, atol=1e-6)
    assert optimum.penalty == pytest.approx(weight_decay * np.sum(exact["W"] ** 2), rel=1e-4, abs=1e-12)
    # The largest stable rate: 2 / λ_max of the Hessian 2(X̃ᵀX̃/N + λD).
    hessian_max = np.linalg.eigvalsh(2 * (X.T @ X / len(X) + weight_decay * D))[-1]
    assert optimum.max_stable_lr == pytest.approx(2 / hessian_max, rel=1e-6)


@pytest.mark.parametrize("fraction, converges", [(0.95, True), (1.05, False)])
def test_with_a_bias_and_decay_full_batch_descent_converges_exactly_below_its_bound(fraction, converges):
    images, labels = problem()
    optimum = linear_optimum(images, labels, LINEAR_BIAS, weight_decay=0.01)
    params = {"W": np.zeros((10, 784)), "b": np.zeros(10)}
    sgd = SGD(images, labels, params, LINEAR_BIAS, fraction * optimum.max_stable_lr, len(images), seeded_generators(0)[1], 1e6, 0.01)

    epochs = [sgd.run_epoch() for _ in range(300)]

    assert any(epoch.diverged for epoch in epochs) != converges
    if converges:  # the objective, data term plus penalty, above its minimum
        objective = epochs[-1].loss + LINEAR_BIAS.penalty(sgd.params, 0.01)
        assert optimum.loss + optimum.penalty < objective < epochs[0].loss
