"""The classifier a logged model runs: the model table's forward pass on pixel rows, and the
pixels it refuses."""

import numpy as np
import pytest
from mlflow.exceptions import MlflowException

from pipeline.classifier import DigitClassifier, model_of, pixel_problem, scores, variant_name
from pipeline.heads import softmax
from pipeline.model import VARIANTS
from tests.model_helpers import real_digits, trained_params


SOFTMAX_FIELDS = {"name": "softmax", "output": "softmax", "loss": "squared_error", "bias": False, "hidden": None,
                  "activation": "relu", "init": "auto"}
LINEAR_FIELDS = {**SOFTMAX_FIELDS, "name": "linear", "output": "identity"}


@pytest.mark.parametrize("fields", ["softmax", "linear", SOFTMAX_FIELDS, LINEAR_FIELDS])
def test_scores_are_the_model_tables_forward_pass_on_pixels_over_255(fields):
    name = fields if isinstance(fields, str) else fields["name"]
    pixels = real_digits()[0][4000:4050]
    W = trained_params()["W"]
    Z = (pixels.astype(np.float32) * np.float32(1 / 255)) @ W.T
    expected = softmax(Z) if name == "softmax" else Z
    S = scores({"W": W}, pixels, fields)
    assert S.dtype == np.float32
    np.testing.assert_array_equal(S, VARIANTS[name].forward({"W": W}, pixels * np.float32(1 / 255)))
    np.testing.assert_allclose(S, expected, rtol=1e-6, atol=1e-7)
    if name == "softmax":
        np.testing.assert_allclose(S.sum(axis=1), 1, rtol=1e-6)


def test_the_parameters_dtype_wins():
    W = trained_params()["W"].astype(np.float64)
    assert scores({"W": W}, real_digits()[0][:5], "linear").dtype == np.float64


def test_a_model_is_found_by_its_fields_or_its_name():
    assert model_of("linear") is VARIANTS["linear"]
    built = model_of(LINEAR_FIELDS)
    assert (built.name, built.output, built.loss, built.bias) == ("linear", VARIANTS["linear"].output, VARIANTS["linear"].loss, False)
    assert variant_name(LINEAR_FIELDS) == variant_name("linear") == "linear"
    with pytest.raises(ValueError, match="unknown variant 'mlp': expected one of softmax, linear"):
        model_of("mlp")  # a name alone is for the table's entries; others come with their fields


def test_a_hidden_layer_and_biases_go_through_the_same_function():
    fields = {**SOFTMAX_FIELDS, "name": "mlp", "loss": "cross_entropy", "bias": True, "hidden": 5, "activation": "tanh"}
    model = model_of(fields)
    params = model.initial_params(784, 10, np.dtype(np.float32), np.random.default_rng(0))
    assert sorted(params) == ["W1", "W2", "b1", "b2"]
    pixels = real_digits()[0][:20]
    X = pixels.astype(np.float32) * np.float32(1 / 255)
    H = np.tanh(X @ params["W1"].T + params["b1"])
    expected = softmax(H @ params["W2"].T + params["b2"])
    np.testing.assert_allclose(scores(params, pixels, fields), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("pixels, problem", [
    (np.zeros((2, 784), np.float32), None),
    (np.full((2, 784), 255, np.float32), None),
    (np.zeros((0, 784), np.float32), "expected pixel rows (B, 784), got shape (0, 784)"),
    (np.zeros(784, np.float32), "expected pixel rows (B, 784), got shape (784,)"),
    (np.zeros((2, 28, 28), np.float32), "expected pixel rows (B, 784), got shape (2, 28, 28)"),
    (np.array([[0] * 783 + [np.nan]], np.float32), "the pixels hold NaN values"),
    (np.array([[0] * 783 + [-0.5]], np.float32), "pixels range over -0.5..0, expected 0..255"),
    (np.array([[0] * 783 + [255.5]], np.float32), "pixels range over 0..255.5, expected 0..255"),
])
def test_pixel_problems_are_named(pixels, problem):
    assert pixel_problem(pixels) == problem


def test_the_pyfunc_answers_digits_and_scores_and_refuses_bad_pixels():
    model = DigitClassifier(SOFTMAX_FIELDS)
    assert model.fields == SOFTMAX_FIELDS and model.params is None  # nothing but plain values pickled
    model.params = trained_params()
    pixels = real_digits()[0][4000:4010].astype(np.float32)
    answer = model.predict(None, pixels)
    np.testing.assert_array_equal(answer["scores"], scores(trained_params(), pixels, "softmax"))
    np.testing.assert_array_equal(answer["digit"], answer["scores"].argmax(axis=1))
    with pytest.raises(MlflowException, match="the pixels hold NaN values"):
        model.predict(None, np.full((1, 784), np.nan, np.float32))
