"""Test-set metrics of a trained W: pure numpy, no I/O, no config, no tracking.

Everything starts from the predictions ``Ŷ = pipeline.model.forward(W, X, variant)`` of the test
inputs, and the loss is the variant's own (``variant.loss.value``): the test loss is exactly the
training loss. The predicted class of a test digit is the arg max of its row of ``Ŷ`` (the
scores ``Wx`` or their softmax: the same arg max).

Confusion matrix: ``C[a, p]`` = number of test digits of class ``a`` predicted as ``p``; the
diagonal holds the correct ones. From it, per class ``c``:

- precision ``C[c, c] / Σ_a C[a, c]``: of the digits predicted ``c``, the share that are ``c``;
- recall ``C[c, c] / Σ_p C[c, p]``: of the digits that are ``c``, the share predicted ``c`` (the
  accuracy on class ``c``'s digits);
- support ``Σ_p C[c, p]``: how many test digits are ``c``.

A ratio with nothing to count (a class never predicted, or absent from the test set) is NaN, not
a made-up 0 or 1.
"""

from dataclasses import dataclass

import numpy as np

from pipeline.constants import scaled
from pipeline.model import variant as variant_named


@dataclass(frozen=True)
class Evaluation:
    loss: float
    accuracy: float
    confusion: np.ndarray  # (k, k) int64, rows actual, columns predicted
    precision: np.ndarray  # (k,) float64, NaN where no digit was predicted as that class
    recall: np.ndarray  # (k,) float64, NaN where the class has no test digits
    support: np.ndarray  # (k,) int64


def one_hot(labels, classes, dtype):
    """``Y[b, c] = 1`` if ``labels[b] == c`` else 0: shape (B, classes)."""
    return np.eye(classes, dtype=dtype)[labels]


def confusion_matrix(actual, predicted, classes):
    """``C[a, p] = #{b : actual_b = a and predicted_b = p}``, one bincount over ``a·k + p``."""
    actual = np.asarray(actual, dtype=np.int64)
    predicted = np.asarray(predicted, dtype=np.int64)
    if actual.shape != predicted.shape:
        raise ValueError(f"actual {actual.shape} and predicted {predicted.shape} labels differ in shape")
    for name, labels in (("actual", actual), ("predicted", predicted)):
        if labels.size and (labels.min() < 0 or labels.max() >= classes):
            raise ValueError(f"{name} labels must be in 0..{classes - 1}, got {labels.min()}..{labels.max()}")
    return np.bincount(actual * classes + predicted, minlength=classes * classes).reshape(classes, classes)


def ratio(numerator, denominator):
    """``numerator / denominator`` element-wise, NaN where the denominator is 0."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.full(np.broadcast(numerator, denominator).shape, np.nan)
    return np.divide(numerator, denominator, out=out, where=denominator != 0)


def evaluate(Y_hat, labels, variant, logits=None):
    """Loss, accuracy, confusion matrix and per-class precision/recall of the predictions ``Ŷ``.

    ``Y_hat`` (B, k) is ``pipeline.model.forward(W, X, variant)`` on the test inputs;
    ``labels`` (B,) integers in 0..k-1; ``variant`` (a name or a pipeline.model.Variant) scores
    them with its loss, from the ``logits`` Z too when given (cross-entropy: ``log_softmax(Z)``).
    """
    classes = Y_hat.shape[1]
    if len(labels) == 0:
        raise ValueError("cannot evaluate on an empty test set")
    confusion = confusion_matrix(labels, Y_hat.argmax(axis=1), classes)
    correct = np.diag(confusion)
    support = confusion.sum(axis=1)
    return Evaluation(
        loss=variant_named(variant).loss.value(Y_hat, one_hot(labels, classes, Y_hat.dtype), logits),
        accuracy=float(correct.sum() / len(labels)),
        confusion=confusion,
        precision=ratio(correct, confusion.sum(axis=0)),
        recall=ratio(correct, support),
        support=support,
    )


def loss_and_accuracy(params, images, labels, variant, chunk_rows=1024):
    """Mean loss ``L`` (the data term, no weight decay) and accuracy of ``params`` (a dict of
    arrays; an array is ``{"W": W}``) on uint8 ``images`` (N, n) with ``labels`` (N,).

    Chunk by chunk (no float copy of all rows), with the variant's ``predict`` and loss on
    ``X = images / 255``; a row counts as right when the arg max of ``ŷ`` is its label.
    """
    if len(images) == 0:
        raise ValueError("cannot evaluate on zero rows")
    variant = variant_named(variant)
    params = params if isinstance(params, dict) else {"W": params}
    dtype, classes = params[variant.WEIGHTS[0]].dtype, params[variant.WEIGHTS[-1]].shape[0]
    sum_of_losses, correct = 0.0, 0
    for start in range(0, len(images), chunk_rows):
        X = scaled(images[start : start + chunk_rows], dtype)
        y = labels[start : start + chunk_rows]
        Z, Y_hat = variant.predict(params, X)
        sum_of_losses += variant.loss_value(Z, Y_hat, one_hot(y, classes, dtype)) * len(y)
        correct += int(np.count_nonzero(Y_hat.argmax(axis=1) == y))
    return sum_of_losses / len(images), correct / len(images)


def most_confidently_wrong(Y_hat, labels, count):
    """Indices of at most ``count`` misclassified rows, the most confidently wrong first.

    Confidence of a mistake is the margin ``ŷ[predicted] − ŷ[actual]`` by which the wrong class
    beat the right one: a probability gap for the softmax variant, a score gap for the linear one.
    Ties keep the test set's order.
    """
    labels = np.asarray(labels)
    predicted = Y_hat.argmax(axis=1)
    rows = np.arange(len(labels))
    margin = Y_hat[rows, predicted] - Y_hat[rows, labels]
    wrong = np.flatnonzero(predicted != labels)
    return wrong[np.argsort(-margin[wrong], kind="stable")[:count]]
