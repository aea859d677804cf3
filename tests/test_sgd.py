"""The fast SGD loop against pipeline.model's plain loss_and_grad, and its bookkeeping."""

import numpy as np
import pytest

from pipeline import sgd as sgd_module
from pipeline import metrics
from pipeline.metrics import one_hot
from pipeline.model import forward, loss_and_grad
from pipeline.model import VARIANTS
from pipeline.initial import initial_weights, seeded_generators
from pipeline.sgd import CHUNK_ROWS, SGD, loss_and_accuracy

N_INPUTS = 784


def problem(rows, seed=0):
    rng = np.random.default_rng(seed)
    images = (rng.integers(0, 256, (rows, N_INPUTS)) * (rng.random((rows, N_INPUTS)) < 0.3)).astype(np.uint8)
    return images, rng.integers(0, 10, rows).astype(np.uint8), rng.normal(0, 0.01, (10, N_INPUTS))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(
    "rows, batch_size",
    [
        (100, 7),  # minibatches, a short last one
        (700, CHUNK_ROWS + 100),  # a minibatch in two chunks
        (600, 10_000),  # full batch, in three chunks
    ],
)
def test_epochs_are_plain_sgd_with_the_hand_derived_gradient(variant, rows, batch_size):
    images, labels, W0 = problem(rows)
    sgd = SGD(images, labels, W0.copy(), variant, lr=0.05, batch_size=batch_size, shuffle_rng=seeded_generators(0)[1], divergence_factor=1e6)
    epochs = [sgd.run_epoch() for _ in range(2)]

    # The same two epochs written out with pipeline.model; a fresh order each epoch, drawn from
    # the same seed (full batch: the stored order).
    orders = seeded_generators(0)[1]
    X, Y = images / 255, one_hot(labels, 10, np.float64)
    W = W0.copy()
    for epoch in epochs:
        order = np.arange(rows) if batch_size >= rows else orders.permutation(rows)
        expected_losses, correct = [], 0
        for start in range(0, rows, batch_size):
            batch = order[start : start + batch_size]
            correct += np.count_nonzero(forward(W, X[batch], variant).argmax(axis=1) == labels[batch])
            batch_loss, gradient = loss_and_grad(W, X[batch], Y[batch], variant)
            expected_losses.append(batch_loss)
            W -= 0.05 * gradient
        np.testing.assert_allclose(epoch.step_losses, expected_losses, rtol=1e-12)
        assert epoch.accuracy == correct / rows
        assert epoch.loss == pytest.approx(np.mean(expected_losses), rel=1e-12)
        assert not epoch.diverged
    np.testing.assert_allclose(sgd.W, W, rtol=1e-12, atol=1e-15)


def test_a_batch_split_between_two_threads_trains_as_in_one(monkeypatch):
    images, labels, W0 = problem(1200)

    def trained(parallel_rows):
        monkeypatch.setattr(sgd_module, "PARALLEL_ROWS", parallel_rows)
        sgd = SGD(images, labels, W0.copy(), "softmax", 0.05, 1000, seeded_generators(0)[1], 1e6)
        return sgd, [sgd.run_epoch() for _ in range(2)]

    split, split_epochs = trained(1000)  # halves of 500 and 100 rows, each half in chunks
    whole, whole_epochs = trained(10**9)
    assert split.helper is not None and whole.helper is None
    for a, b in zip(split_epochs, whole_epochs):
        np.testing.assert_allclose(a.step_losses, b.step_losses, rtol=1e-12)
        assert a.accuracy == b.accuracy
    np.testing.assert_allclose(split.W, whole.W, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch_size", [CHUNK_ROWS, 300, 10_000])  # one chunk, two, full batch
def test_row_major_gradients_give_bitwise_the_same_training(monkeypatch, dtype, batch_size):
    images, labels, W0 = problem(700)

    def trained(gradient_rows):
        monkeypatch.setattr(sgd_module, "GRADIENT_ROWS", gradient_rows)
        sgd = SGD(images, labels, W0.astype(dtype), "softmax", 0.5, batch_size, seeded_generators(0)[1], 1e6)
        return sgd, [sgd.run_epoch() for _ in range(2)]

    row_major, row_major_epochs = trained(sgd_module.GRADIENT_ROWS)
    like_W, like_W_epochs = trained(10**9)
    assert row_major.buffers[0].gradient.flags.c_contiguous and like_W.buffers[0].gradient.flags.f_contiguous
    for a, b in zip(row_major_epochs, like_W_epochs):
        assert a.step_losses.tobytes() == b.step_losses.tobytes() and a.accuracy == b.accuracy
    assert row_major.W.tobytes() == like_W.W.tobytes()


def test_float32_stays_float32_and_close_to_float64():
    images, labels, W0 = problem(300)
    results = {}
    for dtype in (np.float32, np.float64):
        sgd = SGD(images, labels, W0.astype(dtype), "softmax", 0.5, 32, seeded_generators(1)[1], 1e6)
        sgd.run_epoch()
        results[dtype] = sgd.W

    assert results[np.float32].dtype == np.float32
    np.testing.assert_allclose(results[np.float32], results[np.float64], atol=1e-5)


def test_the_same_seed_gives_bitwise_the_same_weights():
    images, labels, W0 = problem(64)

    def trained(seed):
        sgd = SGD(images, labels, W0.astype(np.float32), "softmax", 0.5, 8, seeded_generators(seed)[1], 1e6)
        for _ in range(3):
            sgd.run_epoch()
        return sgd.W

    assert trained(5).tobytes() == trained(5).tobytes()
    assert trained(5).tobytes() != trained(6).tobytes()


def test_divergence_stops_before_the_update_that_would_apply_it():
    images, labels, W0 = problem(200)
    sgd = SGD(images, labels, np.zeros_like(W0), "linear", lr=50.0, batch_size=10, shuffle_rng=seeded_generators(0)[1], divergence_factor=100)
    epoch = sgd.run_epoch()

    assert epoch.diverged
    assert 1 < len(epoch.step_losses) < 20
    first, last = epoch.step_losses[0], epoch.step_losses[-1]
    assert first == pytest.approx(1.0)  # W = 0: ŷ = 0, loss = ||y||² = 1
    assert not last <= 100 * first
    assert np.all(epoch.step_losses[:-1] <= 100 * first)
    assert np.isfinite(sgd.W).all()  # the exploding step was not applied


def test_a_nan_loss_is_divergence():
    images, labels, W0 = problem(20)
    W = W0.copy()
    W[3, 5] = np.nan
    epoch = SGD(images, labels, W, "softmax", 0.1, 5, seeded_generators(0)[1], 100).run_epoch()

    assert epoch.diverged and len(epoch.step_losses) == 1 and np.isnan(epoch.step_losses[0])


def test_on_steps_reports_every_step_exactly_once():
    images, labels, W0 = problem(100)
    reports = []
    SGD(images, labels, W0, "softmax", 0.1, 7, seeded_generators(0)[1], 1e6).run_epoch(reports.append, report_every=4)

    assert reports == [4, 4, 4, 3]  # 15 steps


def test_loss_and_accuracy_is_the_metrics_one_on_one_blas_thread(monkeypatch):
    images, labels, W = problem(250)
    threads = []
    real_limit = sgd_module.BLAS.limit
    monkeypatch.setattr(sgd_module.BLAS, "limit", lambda **kw: threads.append(kw["limits"]) or real_limit(**kw))

    got = loss_and_accuracy(W, images, labels, "softmax", chunk_rows=64)

    assert got == metrics.loss_and_accuracy(W, images, labels, "softmax", chunk_rows=64)
    assert threads == [1]


def test_unknown_variant_is_refused_by_name():
    images, labels, W = problem(10)
    with pytest.raises(ValueError, match="unknown variant 'tanh': expected one of softmax, linear"):
        SGD(images, labels, W, "tanh", 0.1, 5, seeded_generators(0)[1], 100)


def test_initial_weights():
    rng = seeded_generators(0)[0]
    assert not initial_weights("zeros", 0.1, 784, np.float32, rng).any()
    ones = initial_weights("ones", 0.1, 784, np.float64, rng)
    assert ones.shape == (10, 784) and ones.dtype == np.float64 and (ones == 1).all()
    normal = initial_weights("normal", 0.1, 784, np.float32, rng)
    assert normal.dtype == np.float32 and abs(normal.mean()) < 0.01 and normal.std() == pytest.approx(0.1, rel=0.05)
    with pytest.raises(ValueError, match="unknown init 'uniform'"):
        initial_weights("uniform", 0.1, 784, np.float32, rng)


def test_changing_the_init_does_not_change_the_batch_order():
    init_a, shuffle_a = seeded_generators(7)
    init_b, shuffle_b = seeded_generators(7)
    initial_weights("normal", 0.1, 784, np.float32, init_a)  # draws from the init stream only

    np.testing.assert_array_equal(shuffle_a.permutation(50), shuffle_b.permutation(50))


def test_float_images_are_refused():
    images, labels, W = problem(10)
    with pytest.raises(ValueError, match=r"images must be uint8 \(N, 784\), got float64"):
        SGD(images / 255, labels, W, "softmax", 0.1, 5, seeded_generators(0)[1], 100)
