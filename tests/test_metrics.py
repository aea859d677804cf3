import numpy as np
import pytest

from pipeline.heads import IDENTITY
from pipeline.metrics import confusion_matrix, evaluate, loss_and_accuracy, most_confidently_wrong, one_hot, ratio
from pipeline.model import VARIANTS, Variant, forward

# Five test digits of three classes; rows are the scores Ŷ, the arg max is the prediction.
Y_HAT = np.array(
    [
        [0.7, 0.2, 0.1],  # actual 0, predicted 0
        [0.1, 0.3, 0.6],  # actual 0, predicted 2 (margin 0.5)
        [0.2, 0.5, 0.3],  # actual 1, predicted 1
        [0.1, 0.8, 0.1],  # actual 2, predicted 1 (margin 0.7)
        [0.4, 0.5, 0.1],  # actual 0, predicted 1 (margin 0.1)
    ]
)
LABELS = np.array([0, 0, 1, 2, 0])


def test_one_hot():
    np.testing.assert_array_equal(one_hot(np.array([2, 0]), 3, np.float32), [[0, 0, 1], [1, 0, 0]])
    assert one_hot(np.array([1]), 3, np.float32).dtype == np.float32


def test_confusion_matrix_counts_actual_rows_and_predicted_columns():
    np.testing.assert_array_equal(
        confusion_matrix([0, 0, 1, 2, 0, 2], [0, 2, 1, 1, 1, 1], 3),
        [[1, 1, 1], [0, 1, 0], [0, 2, 0]],
    )


def test_confusion_matrix_matches_a_loop_on_random_labels():
    rng = np.random.default_rng(0)
    actual, predicted = rng.integers(10, size=1000), rng.integers(10, size=1000)
    expected = np.zeros((10, 10), dtype=np.int64)
    for a, p in zip(actual, predicted):
        expected[a, p] += 1
    np.testing.assert_array_equal(confusion_matrix(actual, predicted, 10), expected)


@pytest.mark.parametrize(
    ("actual", "predicted", "message"),
    [
        ([0, 1], [0], r"differ in shape"),
        ([0, 3], [0, 1], r"actual labels must be in 0..2, got 0..3"),
        ([0, 1], [-1, 1], r"predicted labels must be in 0..2, got -1..1"),
    ],
)
def test_confusion_matrix_rejects_bad_labels(actual, predicted, message):
    with pytest.raises(ValueError, match=message):
        confusion_matrix(actual, predicted, 3)


def test_ratio_is_nan_where_nothing_was_counted():
    np.testing.assert_array_equal(ratio([1, 0, 3], [2, 0, 4]), [0.5, np.nan, 0.75])


def test_evaluate_on_a_worked_example():
    result = evaluate(Y_HAT, LABELS, "softmax")
    np.testing.assert_array_equal(result.confusion, [[1, 1, 1], [0, 1, 0], [0, 1, 0]])
    assert result.accuracy == pytest.approx(2 / 5)
    np.testing.assert_array_equal(result.support, [3, 1, 1])
    np.testing.assert_allclose(result.precision, [1 / 1, 1 / 3, 0 / 1])
    np.testing.assert_allclose(result.recall, [1 / 3, 1 / 1, 0 / 1])
    # The training loss: mean over digits of ||ŷ − y||².
    squared_errors = [0.09 + 0.04 + 0.01, 0.81 + 0.09 + 0.36, 0.04 + 0.25 + 0.09, 0.01 + 0.64 + 0.81, 0.36 + 0.25 + 0.01]
    assert result.loss == pytest.approx(np.mean(squared_errors))


def test_evaluate_marks_undefined_ratios_as_nan():
    result = evaluate(np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0]]), np.array([0, 1]), "softmax")
    np.testing.assert_array_equal(result.support, [1, 1, 0])
    np.testing.assert_array_equal(result.precision, [0.5, np.nan, np.nan])  # 1 and 2 never predicted
    np.testing.assert_array_equal(result.recall, [1.0, 0.0, np.nan])  # no digit of class 2


def test_evaluate_of_perfect_predictions():
    labels = np.arange(10).repeat(3)
    result = evaluate(np.eye(10)[labels], labels, "linear")
    assert result.loss == 0.0 and result.accuracy == 1.0
    np.testing.assert_array_equal(result.confusion, 3 * np.eye(10))
    np.testing.assert_array_equal(result.precision, np.ones(10))


def test_evaluate_of_the_forward_pass_of_both_variants():
    rng = np.random.default_rng(1)
    W, X, labels = rng.normal(size=(10, 784)), rng.random((50, 784)), rng.integers(10, size=50)
    for variant in VARIANTS:
        Y_hat = forward(W, X, variant)
        result = evaluate(Y_hat, labels, variant)
        assert result.accuracy == np.mean((X @ W.T).argmax(axis=1) == labels)
        assert result.confusion.sum() == 50


def test_evaluate_rejects_an_empty_test_set():
    with pytest.raises(ValueError, match="empty test set"):
        evaluate(np.zeros((0, 10)), np.zeros(0, dtype=np.int64), "linear")


def test_most_confidently_wrong_orders_mistakes_by_margin():
    np.testing.assert_array_equal(most_confidently_wrong(Y_HAT, LABELS, 10), [3, 1, 4])
    np.testing.assert_array_equal(most_confidently_wrong(Y_HAT, LABELS, 2), [3, 1])


def test_most_confidently_wrong_of_perfect_predictions_is_empty():
    labels = np.array([0, 1, 2])
    assert most_confidently_wrong(np.eye(3), labels, 5).size == 0


class AbsoluteError:
    """A loss that is not the squared error: evaluation must score with the variant's own."""

    def value(self, Y_hat, Y, Z=None):
        return float(np.mean(np.sum(np.abs(Y_hat - Y), axis=-1)))


def test_evaluate_scores_with_the_variants_loss():
    result = evaluate(Y_HAT, LABELS, Variant("absolute", output=IDENTITY, loss=AbsoluteError()))
    absolute_errors = [0.3 + 0.2 + 0.1, 0.9 + 0.3 + 0.6, 0.2 + 0.5 + 0.3, 0.1 + 0.8 + 0.9, 0.6 + 0.5 + 0.1]
    assert result.loss == pytest.approx(np.mean(absolute_errors))


@pytest.mark.parametrize("variant", VARIANTS)
def test_loss_and_accuracy_in_chunks_equals_the_whole_computation(variant):
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (250, 784)).astype(np.uint8)
    labels, W = rng.integers(0, 10, 250), rng.normal(0, 0.01, (10, 784))

    got_loss, got_accuracy = loss_and_accuracy(W, images, labels, variant, chunk_rows=64)

    Y_hat = forward(W, images / 255, variant)
    assert got_loss == pytest.approx(np.mean(np.sum((Y_hat - one_hot(labels, 10, np.float64)) ** 2, axis=1)), rel=1e-12)
    assert got_accuracy == np.mean(Y_hat.argmax(axis=1) == labels)


def test_loss_and_accuracy_of_zero_rows_is_refused():
    with pytest.raises(ValueError, match="cannot evaluate on zero rows"):
        loss_and_accuracy(np.zeros((10, 784)), np.zeros((0, 784), np.uint8), np.zeros(0, np.uint8), "linear")
