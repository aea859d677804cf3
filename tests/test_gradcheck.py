import re
import subprocess
import sys

import numpy as np
import pytest

from pipeline import gradcheck
from pipeline.gradcheck import (
    comparison_table,
    numeric_grad,
    numeric_partials,
    random_problem,
    relative_error,
    shown_entries,
    worst_entry,
)
from pipeline.model import VARIANTS
from tests.in_process import run_app
from tests.paths import REPO_ROOT

ROW = re.compile(r"^\s*W\[(\d+), (\d+)\]\s+(\S+)\s+(\S+)\s+(\S+)(  <- largest \|a - n\|)?$")
SUMMARY = re.compile(r"relative error over all (\d+) entries: (\S+) \(tolerance (\S+)\): (OK|FAILED)$")


def run_command(capsys, *overrides):
    """``python -m pipeline.gradcheck overrides`` in this process: (exit status, stdout, stderr)."""
    status = run_app(gradcheck.main, *overrides)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def run_gradcheck(*overrides):
    return subprocess.run(
        [sys.executable, "-m", "pipeline.gradcheck", *overrides],
        cwd=REPO_ROOT, capture_output=True, text=True,
    )


# --- the finite-difference routine itself ------------------------------------------------------


def cubic(W):
    """``f(W) = Σ W³ + Σ A⊙W`` with ``A_ij = i − j``: gradient ``3W² + A``."""
    i, j = np.indices(W.shape)
    return np.sum(W**3) + np.sum((i - j) * W)


def test_numeric_grad_of_a_known_function():
    W = np.random.default_rng(0).normal(size=(3, 4))
    i, j = np.indices(W.shape)
    assert relative_error(numeric_grad(cubic, W, 1e-6), 3 * W**2 + (i - j)) < 1e-9


def test_numeric_partials_are_the_requested_entries_of_numeric_grad():
    W = np.random.default_rng(1).normal(size=(3, 4))
    entries = [(2, 1), (0, 3), (2, 1)]
    full = numeric_grad(cubic, W, 1e-6)
    np.testing.assert_array_equal(numeric_partials(cubic, W, 1e-6, entries), [full[e] for e in entries])


def test_numeric_grad_leaves_its_input_unchanged():
    W = np.random.default_rng(2).normal(size=(2, 2))
    before = W.copy()
    numeric_grad(cubic, W, 1e-3)
    np.testing.assert_array_equal(W, before)


def test_relative_error():
    assert relative_error([1.0, 2.0], [1.0, 2.5]) == pytest.approx(0.5 / 4.5)
    assert relative_error([1e-30], [-1e-30]) == pytest.approx(1.0)  # opposite signs: as bad as it gets
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0


# --- the table -------------------------------------------------------------------------------


def test_shown_entries_are_sampled_plus_the_worst_in_order():
    analytic = np.zeros((4, 5))
    numeric = np.zeros((4, 5))
    numeric[3, 1] = 1.0
    entries = shown_entries(analytic, numeric, 3, np.random.default_rng(0))
    sampled = np.random.default_rng(0).choice(20, size=3, replace=False)
    assert entries == [np.unravel_index(i, (4, 5)) for i in sorted(set(sampled.tolist()) | {16})]
    assert (3, 1) in entries
    assert worst_entry(analytic, numeric) == (3, 1)


def test_comparison_table_rows_are_aligned_and_mark_the_worst():
    analytic = np.array([[1.0, -2.0], [3.0, 4e-7]])
    numeric = np.array([[1.0, -2.0], [2.0, 4e-7]])
    assert comparison_table(analytic, numeric, [(0, 1), (1, 0)]).splitlines() == [
        "         entry          analytic           numeric  rel. error",
        "       W[0, 1]  -2.000000000e+00  -2.000000000e+00     0.0e+00",
        "       W[1, 0]  +3.000000000e+00  +2.000000000e+00     2.0e-01  <- largest |a - n|",
    ]


# --- the command -----------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["softmax", "linear"])
def test_command_passes_and_prints_real_gradients(variant, capsys):
    status, out, err = run_command(capsys, f"model={variant}", "shown=5")
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"gradient check: model={variant}, W (10, 784), batch 4, weight decay 0.001, eps 1e-06, seed 0"

    rows = [ROW.match(line) for line in lines[2:-2]]
    assert all(rows)
    [worst] = [(int(row[1]), int(row[2])) for row in rows if row[6]]
    # The 5 entries the seed samples, plus the worst one (unless sampled already), in order.
    sampled = {tuple(map(int, np.unravel_index(i, (10, 784)))) for i in np.random.default_rng(0).choice(7840, 5, replace=False)}
    assert [(int(row[1]), int(row[2])) for row in rows] == sorted(sampled | {worst})
    assert lines[-2].startswith("W: relative error over its 7840 entries: ")
    W, X, Y = random_problem(0, 4, 784, 10)
    _, analytic = VARIANTS[variant].loss_and_grad({"W": W}, X, Y, weight_decay=0.001)
    analytic = analytic["W"]
    for row in rows:
        i, j, printed_analytic, printed_numeric = int(row[1]), int(row[2]), float(row[3]), float(row[4])
        assert printed_analytic == pytest.approx(analytic[i, j], rel=1e-9)
        # What the summary's relative error bounds: |a − n| <= 1e-7 · max(|a| + |n|).
        assert printed_numeric == pytest.approx(analytic[i, j], abs=2e-7 * np.abs(analytic).max())

    summary = SUMMARY.match(lines[-1])
    assert summary[1] == "7840"
    assert float(summary[2]) < 1e-7
    assert summary[4] == "OK"


def test_command_fails_above_tolerance():
    result = run_gradcheck("tolerance=0", "n_inputs=3", "n_outputs=2", "batch_size=1")
    assert result.returncode == 1
    summary = SUMMARY.match(result.stdout.splitlines()[-1])
    assert summary[1] == "6" and summary[4] == "FAILED"
    assert "gradient check failed: relative error" in result.stderr
    assert "> tolerance 0" in result.stderr


def test_command_rejects_a_bad_config_by_name(capsys):
    assert run_command(capsys, "eps=0") == (2, "", "invalid config: eps=0.0: must be > 0\n")


@pytest.mark.slow
@pytest.mark.parametrize("overrides, keys", [
    (["model=softmax_ce"], ["W", "b"]),
    (["model=linear", "model.bias=true", "weight_decay=0.1"], ["W", "b"]),
    (["model=mlp", "model.hidden=16"], ["W1", "b1", "W2", "b2"]),
    (["model=mlp", "model.hidden=16", "model.activation=sigmoid", "model.bias=false"], ["W1", "W2"]),
    (["model=mlp", "model.hidden=16", "model.activation=tanh", "model.loss=squared_error"], ["W1", "b1", "W2", "b2"]),
])
def test_command_checks_every_parameter_of_any_variant(overrides, keys):
    result = run_gradcheck(*overrides, "shown=2")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    checked = [line.split(":")[0] for line in lines if ": relative error over its " in line]
    assert checked == keys
    errors = [float(line.rsplit(" ", 1)[1]) for line in lines if ": relative error over its " in line]
    assert max(errors) < 1e-7 and max(errors) > 0  # compared for real, not trivially equal
    assert SUMMARY.match(lines[-1])[4] == "OK"


def test_command_refuses_cross_entropy_without_a_softmax(capsys):
    assert run_command(capsys, "model=linear", "model.loss=cross_entropy") == (2, "", (
        "invalid config: model.loss=cross_entropy, model.output=identity: variant 'linear': "
        "cross-entropy is defined after a softmax output only\n"))
