"""The heads' pieces (pipeline.heads): the softmax and its Jacobian, and each output's and loss's
derivative against central differences; how a variant chains them: test_model."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from pipeline.gradcheck import numeric_grad, relative_error
from pipeline.heads import CROSS_ENTROPY, IDENTITY, LOSSES, OUTPUTS, SOFTMAX, SQUARED_ERROR, softmax, softmax_jvp

EPS = 1e-6
TOLERANCE = 1e-7
PROPERTY = settings(max_examples=60, deadline=None)


# --- softmax and its Jacobian ----------------------------------------------------------------


def logit_rows(low=-50.0, high=50.0):
    """(B, k) logits, 1 <= B <= 5, 1 <= k <= 12."""
    shape = st.tuples(st.integers(1, 5), st.integers(1, 12))
    return arrays(np.float64, shape, elements=st.floats(low, high))


def explicit_jacobian(s):
    """``J_ij = ∂S_i/∂z_j = S_i(δ_ij − S_j)`` for one row ``s``, as a k×k matrix."""
    k = len(s)
    return np.array([[s[i] * ((i == j) - s[j]) for j in range(k)] for i in range(k)])


@PROPERTY
@given(logit_rows())
def test_softmax_rows_are_distributions(Z):
    S = softmax(Z)
    assert np.all((S >= 0) & (S <= 1))
    np.testing.assert_allclose(S.sum(axis=-1), 1.0, rtol=0, atol=1e-12)


@PROPERTY
@given(logit_rows(), st.floats(-100, 100))
def test_softmax_is_shift_invariant(Z, c):
    np.testing.assert_allclose(softmax(Z + c), softmax(Z), rtol=0, atol=1e-12)


@PROPERTY
@given(logit_rows(-1e4, 1e4))
def test_softmax_of_huge_logits_is_finite(Z):
    S = softmax(Z)
    assert np.all(np.isfinite(S))
    assert np.all((S >= 0) & (S <= 1))
    np.testing.assert_allclose(S.sum(axis=-1), 1.0, rtol=0, atol=1e-12)


def test_softmax_of_extreme_logits():
    S = softmax(np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]]))
    np.testing.assert_array_equal(S[0], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(S[1], [1 / 3] * 3, rtol=1e-15)


@st.composite
def logits_and_upstream(draw):
    """Logits Z and an upstream gradient G = ∂L/∂S of the same (B, k) shape."""
    Z = draw(logit_rows(-20, 20))
    G = draw(arrays(np.float64, Z.shape, elements=st.floats(-10, 10)))
    return Z, G


@PROPERTY
@given(logits_and_upstream())
def test_softmax_jacobian_rows_sum_to_zero_and_jvp_is_its_transpose(Z_and_G):
    Z, G = Z_and_G
    S = softmax(Z)
    Delta = softmax_jvp(S, G)
    for s, g, delta in zip(S, G, Delta):
        J = explicit_jacobian(s)
        # Σ_j S_i(δ_ij − S_j) = S_i(1 − Σ_j S_j) = 0: shifting all logits leaves S unchanged.
        np.testing.assert_allclose(J.sum(axis=1), 0.0, rtol=0, atol=1e-12)
        np.testing.assert_allclose(delta, J.T @ g, rtol=0, atol=1e-12)


def test_explicit_jacobian_formula_matches_central_differences():
    z = np.random.default_rng(10).normal(size=6)
    J = explicit_jacobian(softmax(z))
    for i in range(len(z)):
        numeric_row = numeric_grad(lambda v: softmax(v)[i], z, EPS)
        assert relative_error(J[i], numeric_row) < TOLERANCE


# --- each piece's backward is the derivative of its forward ----------------------------------


@pytest.mark.parametrize("output", [SOFTMAX, IDENTITY], ids=["softmax", "identity"])
def test_output_backward_is_the_transposed_jacobian_of_forward(output):
    """``backward(ŷ, g)_j = Σ_i g_i ∂ŷ_i/∂z_j``, the derivative of ``z ↦ g · forward(z)``."""
    rng = np.random.default_rng(11)
    Z, G = rng.normal(size=(3, 5)) * 3, rng.normal(size=(3, 5))
    Delta = output.backward(output.forward(Z.copy()), G.copy())
    for z, g, delta in zip(Z, G, Delta):
        numeric = numeric_grad(lambda v: g @ output.forward(v[None, :].copy())[0], z, EPS)
        assert relative_error(delta, numeric) < TOLERANCE


def test_squared_error_gradient_and_row_sum():
    rng = np.random.default_rng(12)
    Y_hat, Y = rng.normal(size=(4, 3)), np.eye(3)[rng.integers(3, size=4)]  # one-hot rows
    G = SQUARED_ERROR.gradient(Y_hat, Y)
    # Per row, G is the derivative of that row's ||ŷ − y||²; the batch loss is their mean.
    for y_hat, y, g in zip(Y_hat, Y, G):
        numeric = numeric_grad(lambda v: SQUARED_ERROR.value(v[None, :], y[None, :]), y_hat, EPS)
        assert relative_error(g, numeric) < TOLERANCE
    assert SQUARED_ERROR.row_sum(Y_hat, Y, G) == pytest.approx(4 * SQUARED_ERROR.value(Y_hat, Y), rel=1e-14)


def test_the_pieces_are_named_as_conf_names_them():
    assert OUTPUTS == {"softmax": SOFTMAX, "identity": IDENTITY}
    assert LOSSES == {"squared_error": SQUARED_ERROR, "cross_entropy": CROSS_ENTROPY}
