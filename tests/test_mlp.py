"""The hidden layer (pipeline.mlp, pipeline.activations), its training loop (pipeline.mlp_sgd),
and every variant of conf/model/ built by pipeline.variants: each gradient against central
differences, each loop against the reference gradient."""

import numpy as np
import pytest
import yaml

from pipeline.activations import ACTIVATIONS, RELU
from pipeline.gradcheck import batch_loss, numeric_grad, random_problem, relative_error
from pipeline.heads import CROSS_ENTROPY, IDENTITY, SOFTMAX, SQUARED_ERROR
from pipeline.metrics import one_hot
from pipeline.mlp import INITS, Network
from pipeline.mlp_sgd import HiddenLayerSGD, initial_params, trainer
from pipeline.model import VARIANTS
from pipeline.initial import seeded_generators
from pipeline.sgd import CHUNK_ROWS, PARALLEL_ROWS, SGD
from pipeline.variants import build
from tests.paths import CONF_DIR

EPS, TOLERANCE = 1e-6, 1e-7


def conf_variants():
    """Every variant of conf/model/, its fields as base.yaml and its own file compose them."""
    base = yaml.safe_load((CONF_DIR / "model" / "base.yaml").read_text())
    return {path.stem: {**base, **{k: v for k, v in yaml.safe_load(path.read_text()).items() if k != "defaults"}}
            for path in sorted((CONF_DIR / "model").glob("*.yaml")) if path.stem != "base"}


CONF_VARIANTS = conf_variants()


def test_the_named_variants_are_there_and_the_design_ones_unchanged():
    assert set(CONF_VARIANTS) >= {"softmax", "linear", "softmax_ce", "mlp"}
    for name in VARIANTS:  # the two of the design: the same table entries as ever
        assert build(CONF_VARIANTS[name]) == VARIANTS[name]
    assert build(CONF_VARIANTS["softmax_ce"]) == type(VARIANTS["softmax"])("softmax_ce", SOFTMAX, CROSS_ENTROPY, True)
    mlp = build(CONF_VARIANTS["mlp"])
    assert isinstance(mlp, Network) and (mlp.hidden, mlp.activation, mlp.bias, mlp.loss) == (128, RELU, True, CROSS_ENTROPY)


def small(fields):
    """The variant ``fields`` describe, its hidden layer cut to 5 units (the finite differences
    of 100,000 weights belong in pipeline.gradcheck, not in every test run)."""
    return build({**fields, "hidden": fields["hidden"] and 5})


def random_params(model, seed, n_inputs, n_outputs):
    rng = np.random.default_rng(seed)
    params = initial_params(model, "normal", 1.0, n_inputs, np.float64, rng, n_classes=n_outputs)
    return {key: P + rng.normal(0, 0.3, P.shape) for key, P in params.items()}  # no bias at 0


@pytest.mark.parametrize("name", CONF_VARIANTS)
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_every_parameter_of_every_variant_matches_central_differences(name, bias, weight_decay):
    model = small({**CONF_VARIANTS[name], "bias": bias})
    _, X, Y = random_problem(1, 6, 8, 4)
    params = random_params(model, 2, 8, 4)
    L, grads = model.loss_and_grad(params, X, Y, weight_decay)
    assert set(grads) == set(params) == set(model.parameter_shapes(8, 4))
    assert L == pytest.approx(model.objective(params, X, Y, weight_decay), rel=1e-12)
    for key, P in params.items():
        numeric = numeric_grad(batch_loss(X, Y, model, params, key, weight_decay), P, EPS)
        assert relative_error(grads[key], numeric) < TOLERANCE, key


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("output, loss", [(SOFTMAX, CROSS_ENTROPY), (SOFTMAX, SQUARED_ERROR), (IDENTITY, SQUARED_ERROR)])
def test_every_activation_and_head_of_a_hidden_layer(activation, output, loss):
    model = Network("n", output, loss, True, activation=ACTIVATIONS[activation], hidden=7)
    _, X, Y = random_problem(3, 5, 6, 3)
    params = random_params(model, 4, 6, 3)
    _, grads = model.loss_and_grad(params, X, Y)
    for key, P in params.items():
        assert relative_error(grads[key], numeric_grad(batch_loss(X, Y, model, params, key), P, EPS)) < TOLERANCE, key


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_backward_is_its_derivative(name):
    act = ACTIVATIONS[name]
    A = np.random.default_rng(5).normal(size=(4, 6)) * 3
    G = np.random.default_rng(6).normal(size=(4, 6))
    H = act.forward(A.copy())
    Delta = act.backward(H, G.copy())
    numeric = numeric_grad(lambda V: float(np.sum(G * act.forward(V.copy()))), A, EPS)
    assert relative_error(Delta, numeric) < TOLERANCE


def test_activation_values():
    A = np.array([[-2.0, 0.0, 3.0, -800.0, 800.0]])
    np.testing.assert_array_equal(ACTIVATIONS["relu"].forward(A.copy()), [[0, 0, 3, 0, 800]])
    np.testing.assert_allclose(ACTIVATIONS["sigmoid"].forward(A.copy()), [[1 / (1 + np.e**2), 0.5, 1 / (1 + np.e**-3), 0, 1]], rtol=1e-15)
    np.testing.assert_allclose(ACTIVATIONS["tanh"].forward(A.copy()), np.tanh(A), rtol=0)


def test_initialisation_is_he_for_relu_glorot_otherwise_seeded_biases_zero():
    def drawn(activation, init="auto", seed=0):
        model = Network("n", SOFTMAX, CROSS_ENTROPY, True, activation=ACTIVATIONS[activation], hidden=400, init=init)
        return model.initial_params(784, 10, np.dtype(np.float64), np.random.default_rng(seed))

    he, glorot = np.sqrt(2 / 784), np.sqrt(2 / (784 + 400))
    for activation, std in (("relu", he), ("sigmoid", glorot), ("tanh", glorot)):
        params = drawn(activation)
        assert params["W1"].std() == pytest.approx(std, rel=0.01)
        assert params["W2"].std() == pytest.approx(np.sqrt(2 / 410), rel=0.05)
        assert not params["b1"].any() and not params["b2"].any()
    assert drawn("relu", "glorot")["W1"].std() == pytest.approx(glorot, rel=0.01)
    assert drawn("tanh", "he")["W1"].std() == pytest.approx(he, rel=0.01)
    np.testing.assert_array_equal(drawn("relu")["W1"], drawn("relu")["W1"])
    assert not np.array_equal(drawn("relu")["W1"], drawn("relu", seed=1)["W1"])
    assert INITS == ("auto", "he", "glorot")


def test_build_refuses_what_the_pieces_refuse():
    with pytest.raises(ValueError, match="model.loss=cross_entropy, model.output=identity: .*after a softmax output only"):
        build({**CONF_VARIANTS["linear"], "loss": "cross_entropy"})
    with pytest.raises(ValueError, match=r"model.activation='swish': expected one of relu, sigmoid, tanh"):
        build({**CONF_VARIANTS["mlp"], "activation": "swish"})


def test_a_parameter_of_the_wrong_shape_is_named():
    model = small(CONF_VARIANTS["mlp"])
    _, X, Y = random_problem(1, 3, 8, 4)
    params = random_params(model, 2, 8, 4)
    params["b1"] = np.zeros(6)
    with pytest.raises(ValueError, match=r"b1 must be \(5,\)"):
        model.loss_and_grad(params, X, Y)


# --- the loop ----------------------------------------------------------------------------------


def problem(rows, seed=0, n_inputs=784):
    rng = np.random.default_rng(seed)
    images = (rng.integers(0, 256, (rows, n_inputs)) * (rng.random((rows, n_inputs)) < 0.3)).astype(np.uint8)
    return images, rng.integers(0, 10, rows).astype(np.uint8)


@pytest.mark.parametrize("fields", [
    {**CONF_VARIANTS["mlp"], "hidden": 9},
    {**CONF_VARIANTS["mlp"], "hidden": 9, "bias": False, "activation": "tanh"},
    {**CONF_VARIANTS["mlp"], "hidden": 9, "loss": "squared_error", "output": "identity", "activation": "sigmoid"},
    {**CONF_VARIANTS["softmax_ce"]},
    {**CONF_VARIANTS["linear"], "bias": True},
], ids=["mlp", "mlp-tanh-nobias", "mlp-sigmoid-squared", "softmax_ce", "linear+b"])
@pytest.mark.parametrize("rows, batch_size, weight_decay", [
    (100, 7, 0.0),  # minibatches, a short last one
    (700, CHUNK_ROWS + 100, 0.01),  # a minibatch in two chunks, weight decay
    (600, 10_000, 0.0),  # full batch, in three chunks
])
def test_epochs_are_plain_sgd_with_the_hand_derived_gradient(fields, rows, batch_size, weight_decay):
    model = build(fields)
    images, labels = problem(rows)
    params0 = random_params(model, 7, 784, 10)
    sgd = trainer(images, labels, {k: P.copy() for k, P in params0.items()}, model, 0.05, batch_size, seeded_generators(0)[1], 1e6, weight_decay)
    assert isinstance(sgd, HiddenLayerSGD if fields["hidden"] else SGD)
    epochs = [sgd.run_epoch() for _ in range(2)]

    orders = seeded_generators(0)[1]
    X, Y = images / 255, one_hot(labels, 10, np.float64)
    params = {k: P.copy() for k, P in params0.items()}
    for epoch in epochs:
        order = np.arange(rows) if batch_size >= rows else orders.permutation(rows)
        expected = []
        for start in range(0, rows, batch_size):
            batch = order[start : start + batch_size]
            L, grads = model.loss_and_grad(params, X[batch], Y[batch], weight_decay)
            expected.append(L - model.penalty(params, weight_decay))  # the loop reports the data term
            for key in params:
                params[key] -= 0.05 * grads[key]
        np.testing.assert_allclose(epoch.step_losses, expected, rtol=1e-11)
    for key in params:
        np.testing.assert_allclose(sgd.params[key], params[key], rtol=1e-11, atol=1e-14)


def test_a_batch_split_between_two_threads_trains_as_in_one(monkeypatch):
    model = build({**CONF_VARIANTS["mlp"], "hidden": 6})
    images, labels = problem(1000, seed=3, n_inputs=30)
    params0 = random_params(model, 8, 30, 10)
    results = []
    for parallel_rows in (PARALLEL_ROWS, 500):
        monkeypatch.setattr("pipeline.sgd.PARALLEL_ROWS", parallel_rows)
        sgd = trainer(images, labels, {k: P.copy() for k, P in params0.items()}, model, 0.1, 1000, seeded_generators(0)[1], 1e6)
        assert (sgd.helper is not None) == (parallel_rows == 500)
        losses = [sgd.run_epoch().loss for _ in range(3)]
        results.append((losses, sgd.params))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-12)
    for key in params0:
        np.testing.assert_allclose(results[0][1][key], results[1][1][key], rtol=1e-12, atol=1e-15)


def test_a_hidden_layer_that_blows_up_is_divergence_not_an_exception():
    model = build({**CONF_VARIANTS["mlp"], "hidden": 8, "output": "identity", "loss": "squared_error"})
    images, labels = problem(200, n_inputs=50)
    sgd = trainer(images, labels, random_params(model, 9, 50, 10), model, 1e3, 10, seeded_generators(0)[1], 100)
    with np.errstate(all="ignore"):
        epoch = sgd.run_epoch()
    assert epoch.diverged and len(epoch.step_losses) < 20
