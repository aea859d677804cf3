"""The model table (pipeline.model): every variant's gradient against central differences, its
precision, bad input, and how an entry chains its head's pieces (the pieces alone: test_heads)."""

import numpy as np
import pytest

from pipeline.gradcheck import batch_loss, numeric_grad, numeric_partials, random_problem, relative_error
from pipeline.heads import CROSS_ENTROPY, IDENTITY, SOFTMAX, SQUARED_ERROR, log_softmax, softmax, softmax_jvp
from pipeline.model import VARIANTS, Variant, loss_and_grad, variant

EPS = 1e-6
TOLERANCE = 1e-7


# --- the gradient against central differences ---------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(
    "seed, batch_size, n_inputs, n_outputs, weight_scale",
    [
        (0, 1, 3, 2, 1),  # the worked example's shape
        (1, 1, 1, 1, 100),  # a single weight; the softmax of one logit is constant
        (2, 5, 4, 3, 100),  # logits of order 1: a far-from-uniform softmax
        (3, 7, 6, 10, 1),
        (4, 16, 2, 5, 300),
    ],
)
def test_gradient_matches_central_differences(variant, seed, batch_size, n_inputs, n_outputs, weight_scale):
    W, X, Y = random_problem(seed, batch_size, n_inputs, n_outputs)
    W *= weight_scale
    _, analytic = loss_and_grad(W, X, Y, variant)
    numeric = numeric_grad(batch_loss(X, Y, variant), W, EPS)
    assert relative_error(analytic, numeric) < TOLERANCE


@pytest.mark.parametrize("variant", VARIANTS)
def test_gradient_matches_central_differences_at_mnist_shape(variant):
    W, X, Y = random_problem(5, 8, 784, 10)
    rng = np.random.default_rng(5)
    entries = [np.unravel_index(i, W.shape) for i in rng.choice(W.size, size=300, replace=False)]
    _, analytic = loss_and_grad(W, X, Y, variant)
    numeric = numeric_partials(batch_loss(X, Y, variant), W, EPS, entries)
    assert relative_error([analytic[e] for e in entries], numeric) < TOLERANCE


def test_the_check_tells_the_variants_apart():
    """The linear gradient is not the softmax gradient: the check above is not vacuous."""
    W, X, Y = random_problem(6, 4, 5, 3)
    _, linear = loss_and_grad(W * 100, X, Y, "linear")
    numeric_softmax = numeric_grad(batch_loss(X, Y, "softmax"), W * 100, EPS)
    assert relative_error(linear, numeric_softmax) > 0.1


def test_linear_gradient_equals_closed_form():
    W, X, Y = random_problem(7, 6, 4, 3)
    W *= 100
    B = len(X)
    per_sample = sum(np.outer(2 * (W @ x - y), x) for x, y in zip(X, Y)) / B
    matrix_form = (2 / B) * (X @ W.T - Y).T @ X
    L, dW = loss_and_grad(W, X, Y, "linear")
    np.testing.assert_allclose(matrix_form, per_sample, rtol=1e-12)
    np.testing.assert_allclose(dW, per_sample, rtol=1e-12)
    assert L == pytest.approx(np.mean([np.sum((W @ x - y) ** 2) for x, y in zip(X, Y)]), rel=1e-12)


# --- precision -----------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_float32_agrees_with_float64(variant):
    W, X, Y = random_problem(8, 32, 784, 10)
    L64, dW64 = loss_and_grad(W, X, Y, variant)
    L32, dW32 = loss_and_grad(W.astype(np.float32), X, Y, variant)
    assert relative_error(dW32, dW64) < 1e-5
    assert L32 == pytest.approx(L64, rel=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
def test_dtype_of_W_wins(variant):
    W, X, Y = random_problem(9, 3, 4, 2)
    _, dW32 = loss_and_grad(W.astype(np.float32), X, Y, variant)
    _, dW64 = loss_and_grad(W, X.astype(np.float32), Y.astype(np.float32), variant)
    assert dW32.dtype == np.float32
    assert dW64.dtype == np.float64


# --- the table: an entry chains its pieces ----------------------------------------------------


def one_hot_rows(rng, rows, classes):
    return np.eye(classes)[rng.integers(classes, size=rows)]


@pytest.mark.parametrize("name", VARIANTS)
def test_loss_sum_and_delta_overwrites_Z_with_the_prediction_and_honours_argmax(name):
    rng = np.random.default_rng(13)
    Z, Y = rng.normal(size=(6, 4)) * 5, one_hot_rows(rng, 6, 4)
    model = VARIANTS[name]
    expected_Y_hat = model.output.forward(Z.copy())
    G = np.empty_like(Z)
    loss_sum, Delta = model.loss_sum_and_delta(Z, Y, out=G, argmax=Z.argmax(axis=1))
    assert Delta is G  # written into the caller's buffer
    np.testing.assert_array_equal(Z, expected_Y_hat)
    assert loss_sum == pytest.approx(6 * SQUARED_ERROR.value(expected_Y_hat, Y), rel=1e-14)


def test_the_table_names_its_entries_and_composes_the_pieces():
    assert list(VARIANTS) == ["softmax", "linear"]
    assert all(entry.name == name for name, entry in VARIANTS.items())
    assert (VARIANTS["softmax"].output, VARIANTS["softmax"].loss) == (SOFTMAX, SQUARED_ERROR)
    assert (VARIANTS["linear"].output, VARIANTS["linear"].loss) == (IDENTITY, SQUARED_ERROR)
    assert VARIANTS["linear"].is_least_squares and not VARIANTS["softmax"].is_least_squares
    assert variant("linear") is VARIANTS["linear"] and variant(VARIANTS["softmax"]) is VARIANTS["softmax"]


def test_a_new_entry_is_checked_like_the_others():
    """A variant built from the pieces, outside the table, gets its gradient from them alone."""
    squared_sum = Variant("linear again", output=IDENTITY, loss=SQUARED_ERROR)
    W, X, Y = random_problem(14, 5, 6, 3)
    L, grads = squared_sum.loss_and_grad({"W": W}, X, Y)
    assert set(grads) == {"W"}
    assert L == squared_sum.objective({"W": W}, X, Y)
    assert relative_error(grads["W"], numeric_grad(batch_loss(X, Y, squared_sum), W, EPS)) < TOLERANCE


# --- bad input -------------------------------------------------------------------------------

W23, X43, Y42 = np.ones((2, 3)), np.ones((4, 3)), np.ones((4, 2))


@pytest.mark.parametrize(
    "W, X, Y, variant, message",
    [
        (W23, X43, Y42, "tanh", r"unknown variant 'tanh': expected one of softmax, linear"),
        (np.ones(6), X43, Y42, "linear", r"W must be 2-D \(k, n\), got shape \(6,\)"),
        (W23, np.ones((4, 5)), Y42, "softmax", r"X must be \(B, 3\) to match W \(2, 3\), got shape \(4, 5\)"),
        (W23, np.ones(3), Y42, "softmax", r"X must be \(B, 3\) .* got shape \(3,\)"),
        (W23, X43, np.ones((4, 3)), "softmax", r"Y must be \(B, k\) = \(4, 2\) .* got shape \(4, 3\)"),
        (W23, np.ones((0, 3)), np.ones((0, 2)), "linear", r"empty batch \(B = 0\)"),
    ],
)
def test_bad_input_names_the_problem(W, X, Y, variant, message):
    with pytest.raises(ValueError, match=message):
        loss_and_grad(W, X, Y, variant)


def test_integer_weights_are_refused_rather_than_rounding_inputs():
    with pytest.raises(ValueError, match="W must be a floating-point array, got dtype int64"):
        loss_and_grad(np.zeros((2, 3), dtype=np.int64), [[0.5, 0.9, 0.2]], [[1.0, 0.0]], "linear")


# --- cross-entropy, the bias, weight decay --------------------------------------------------

CE = Variant("ce", output=SOFTMAX, loss=CROSS_ENTROPY)
CE_BIAS = Variant("ce+b", output=SOFTMAX, loss=CROSS_ENTROPY, bias=True)
ENTRIES = [VARIANTS["softmax"], VARIANTS["linear"], CE, CE_BIAS,
           Variant("linear+b", output=IDENTITY, loss=SQUARED_ERROR, bias=True),
           Variant("softmax+b", output=SOFTMAX, loss=SQUARED_ERROR, bias=True)]


def with_bias(model, W, seed):
    return {"W": W, **({"b": np.random.default_rng(seed).normal(0, 1, W.shape[0])} if model.bias else {})}


@pytest.mark.parametrize("model", ENTRIES, ids=lambda m: m.name)
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
@pytest.mark.parametrize("seed, batch_size, n_inputs, n_outputs, weight_scale", [(0, 1, 3, 2, 1), (2, 5, 4, 3, 100), (3, 7, 6, 10, 1)])
def test_every_parameter_matches_central_differences(model, weight_decay, seed, batch_size, n_inputs, n_outputs, weight_scale):
    W, X, Y = random_problem(seed, batch_size, n_inputs, n_outputs)
    params = with_bias(model, W * weight_scale, seed)
    L, grads = model.loss_and_grad(params, X, Y, weight_decay)
    assert set(grads) == set(params)
    assert L == pytest.approx(model.objective(params, X, Y, weight_decay), rel=1e-12)
    for key, P in params.items():
        numeric = numeric_grad(batch_loss(X, Y, model, params, key, weight_decay), P, EPS)
        assert relative_error(grads[key], numeric) < TOLERANCE, key


def test_cross_entropy_delta_is_the_softmax_jacobian_times_its_loss_gradient():
    """``δ = J_Sᵀ g`` with ``g = ∂L/∂ŷ = −y/ŷ`` collapses to ``ŷ − y`` (docs §11)."""
    rng = np.random.default_rng(20)
    Z, Y = rng.normal(size=(5, 4)) * 3, one_hot_rows(rng, 5, 4)
    S = softmax(Z)
    chained = softmax_jvp(S, -Y / S)
    loss_sum, Delta = CE.loss_sum_and_delta(Z.copy(), Y)
    np.testing.assert_allclose(Delta, S - Y, rtol=0, atol=1e-14)
    np.testing.assert_allclose(chained, S - Y, rtol=0, atol=1e-12)
    assert loss_sum == pytest.approx(-np.sum(Y * np.log(S)), rel=1e-13)


def test_cross_entropy_is_finite_where_a_probability_underflows():
    """Logits 1e4 apart: ŷ of the right class is exactly 0 in float64, log ŷ would be −inf."""
    Z = np.array([[1e4, 0.0, -1e4], [0.0, 0.0, 0.0]])
    Y = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    assert softmax(Z)[0, 2] == 0.0
    expected = (2e4 + np.log(3)) / 2  # row 0: −(−2e4) (+ log(1 + e^-1e4 + ...) = 0); row 1: log 3
    assert CROSS_ENTROPY.value(softmax(Z), Y, Z) == pytest.approx(expected, rel=1e-15)
    loss_sum, Delta = CE.loss_sum_and_delta(Z.copy(), Y)
    assert loss_sum == pytest.approx(2 * expected, rel=1e-15)
    assert np.all(np.isfinite(Delta))
    np.testing.assert_allclose(log_softmax(Z)[1], -np.log(3) * np.ones(3), rtol=1e-15)


def test_cross_entropy_needs_a_softmax():
    with pytest.raises(ValueError, match="cross-entropy is defined after a softmax output only"):
        Variant("bad", output=IDENTITY, loss=CROSS_ENTROPY)


def test_the_bias_gradient_is_the_mean_delta_and_the_penalty_skips_it():
    W, X, Y = random_problem(21, 6, 5, 3)
    params = with_bias(CE_BIAS, W, 21)
    _, plain = CE_BIAS.loss_and_grad(params, X, Y)
    _, decayed = CE_BIAS.loss_and_grad(params, X, Y, weight_decay=0.5)
    np.testing.assert_allclose(plain["b"], (softmax(X @ W.T + params["b"]) - Y).mean(axis=0), rtol=1e-13)
    np.testing.assert_array_equal(decayed["b"], plain["b"])
    np.testing.assert_allclose(decayed["W"], plain["W"] + 2 * 0.5 * W, rtol=1e-14)
    assert CE_BIAS.penalty(params, 0.5) == pytest.approx(0.5 * np.sum(W**2), rel=1e-14)


def test_a_bias_of_the_wrong_shape_is_refused():
    with pytest.raises(ValueError, match=r"b must be \(2,\) to match W \(2, 3\), got shape \(3,\)"):
        CE_BIAS.loss_and_grad({"W": W23, "b": np.zeros(3)}, X43, np.eye(2)[[0, 1, 0, 1]])
