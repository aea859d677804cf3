"""Gradient check: the hand-derived gradient of pipeline/model.py against central differences.

    python -m pipeline.gradcheck                        # softmax, W (10, 784), a batch of 4
    python -m pipeline.gradcheck model=linear
    python -m pipeline.gradcheck model=mlp              # W1, b1, W2, b2
    python -m pipeline.gradcheck model=softmax_ce model.bias=false weight_decay=0
    python -m pipeline.gradcheck n_inputs=3 n_outputs=2 batch_size=1 shown=6

On a random MNIST-like batch, in float64, every entry of the gradient of every parameter of the
variant (W, b; W1, b1, W2, b2) of the loss plus weight decay's penalty ``λΣ||W||²`` is compared
with its central difference; a few entries of each are printed side by side, and the command
exits non-zero when the relative error ``max|a − n| / max(|a| + |n|)`` of any parameter exceeds
``tolerance``.
"""

import sys

import numpy as np

from pipeline.app import stage_app
from pipeline.config import ConfigError, GradcheckConfig, validated
from pipeline.metrics import one_hot
from pipeline.model import variant as variant_named
from pipeline.mlp_sgd import initial_params
from pipeline.sgd import one_blas_thread
from pipeline.variants import build


def numeric_partials(f, W, eps, entries):
    """``∂f/∂W_e ≈ (f(W + ε·1_e) − f(W − ε·1_e)) / 2ε`` for each index tuple ``e`` in ``entries``.

    Evaluated in float64 on a copy of ``W``. The error is O(ε²) from truncation plus
    O(u·|f|/ε) from rounding (u ≈ 2.2e-16): with ε = 1e-6, about 1e-12 and 2e-10·|f|.
    Returns a 1-D array, one partial derivative per entry.
    """
    W = np.array(W, dtype=np.float64)
    partials = []
    for entry in entries:
        original = W[entry]
        W[entry] = original + eps
        f_plus = f(W)
        W[entry] = original - eps
        f_minus = f(W)
        W[entry] = original
        partials.append((f_plus - f_minus) / (2 * eps))
    return np.array(partials)


def numeric_grad(f, W, eps):
    """The central-difference gradient of the scalar function ``f`` at ``W``, shaped like ``W``."""
    return numeric_partials(f, W, eps, np.ndindex(np.shape(W))).reshape(np.shape(W))


def relative_error(analytic, numeric):
    """``max|a − n| / max(|a| + |n|)``: scale-free, and 0 (not NaN) when both are all zero."""
    analytic, numeric = np.asarray(analytic), np.asarray(numeric)
    scale = np.max(np.abs(analytic) + np.abs(numeric))
    return float(np.max(np.abs(analytic - numeric)) / max(scale, np.finfo(np.float64).tiny))


def random_problem(seed, batch_size, n_inputs, n_outputs):
    """``(W, X, Y)`` in float64 shaped like MNIST training: pixels uniform in [0, 1), random
    one-hot labels, small weights N(0, 0.01²) as at the start of training."""
    rng = np.random.default_rng(seed)
    W = rng.normal(0.0, 0.01, size=(n_outputs, n_inputs))
    X = rng.random((batch_size, n_inputs))
    Y = one_hot(rng.integers(n_outputs, size=batch_size), n_outputs, np.float64)
    return W, X, Y


def batch_loss(X, Y, variant, params=None, key="W", weight_decay=0.0):
    """``P ↦ L (+ λΣ||W||²)`` on a fixed batch, with ``params[key] = P`` and the other parameters
    fixed: the function whose gradient ``loss_and_grad`` returns under ``key``."""
    model = variant_named(variant)
    return lambda P: model.objective({**(params or {}), key: P}, X, Y, weight_decay)


def random_params(model, W, seed):
    """Every parameter of ``model``, float64: a one-layer model's W is ``W`` (random_problem's),
    a hidden layer's weights are drawn as for training (He or Glorot); biases N(0, 0.1²), so that
    none sits at the symmetric point 0."""
    rng = np.random.default_rng([seed, 1])
    params = initial_params(model, "zeros", 0.0, W.shape[1], np.float64, rng, n_classes=W.shape[0])
    params.update({"W": W} if "W" in params else {})
    return {key: rng.normal(0.0, 0.1, P.shape) if key.startswith("b") else P for key, P in params.items()}


def worst_entry(analytic, numeric):
    """The index where ``|a − n|`` is largest."""
    return np.unravel_index(np.argmax(np.abs(analytic - numeric)), np.shape(analytic))


def shown_entries(analytic, numeric, count, rng):
    """``count`` random entries plus the worst one, in row-major order."""
    sampled = rng.choice(analytic.size, size=min(count, analytic.size), replace=False)
    worst = int(np.ravel_multi_index(worst_entry(analytic, numeric), analytic.shape))
    return [np.unravel_index(i, analytic.shape) for i in sorted(set(sampled.tolist()) | {worst})]


def comparison_table(analytic, numeric, entries, key="W"):
    """One aligned row per entry of parameter ``key``: index, analytic, numeric, their relative
    error; the worst marked."""
    worst = worst_entry(analytic, numeric)
    rows = [f"{'entry':>14}  {'analytic':>16}  {'numeric':>16}  {'rel. error':>10}"]
    for entry in entries:
        a, n = analytic[entry], numeric[entry]
        label = f"{key}[{', '.join(map(str, entry))}]"
        mark = "  <- largest |a - n|" if entry == worst else ""
        rows.append(f"{label:>14}  {a:>+16.9e}  {n:>+16.9e}  {relative_error(a, n):>10.1e}{mark}")
    return "\n".join(rows)


@stage_app("gradcheck")
def main(cfg):
    validated(cfg, GradcheckConfig)
    name = cfg.model.name
    try:
        model = build(cfg.model)
    except ValueError as error:
        raise ConfigError(f"invalid config: {error}") from None
    W, X, Y = random_problem(cfg.seed, cfg.batch_size, cfg.n_inputs, cfg.n_outputs)
    params = random_params(model, W, cfg.seed)
    _, analytic = model.loss_and_grad(params, X, Y, cfg.weight_decay)
    # Two forward passes per entry, each of a few tiny products: BLAS threads only wait for each
    # other there (and for any thread another process holds).
    with one_blas_thread():
        numeric = {key: numeric_grad(batch_loss(X, Y, model, params, key, cfg.weight_decay), P, cfg.eps) for key, P in params.items()}
    errors = {key: relative_error(analytic[key], numeric[key]) for key in params}
    error = max(errors.values())

    shapes = ", ".join(f"{key} {P.shape}" for key, P in params.items())
    print(f"gradient check: model={name}, {shapes}, batch {cfg.batch_size}, "
          f"weight decay {cfg.weight_decay:g}, eps {cfg.eps:g}, seed {cfg.seed}")
    for key in params:
        entries = shown_entries(analytic[key], numeric[key], cfg.shown, np.random.default_rng(cfg.seed))
        print(comparison_table(analytic[key], numeric[key], entries, key))
        print(f"{key}: relative error over its {params[key].size} entries: {errors[key]:.2e}")
    verdict = "OK" if error <= cfg.tolerance else "FAILED"
    # Over all entries: the largest of the parameters' errors, each relative to its own scale.
    print(f"relative error over all {sum(P.size for P in params.values())} entries: {error:.2e} "
          f"(tolerance {cfg.tolerance:g}): {verdict}")
    if verdict == "FAILED":
        sys.exit(f"gradient check failed: relative error {error:.2e} > tolerance {cfg.tolerance:g}")


if __name__ == "__main__":
    main()
