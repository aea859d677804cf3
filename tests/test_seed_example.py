import subprocess
import sys

import numpy as np
import pytest

from pipeline.seed_example import worked_example_losses
from tests.paths import REPO_ROOT

# The spec: what the original hand-written loop printed.
EXPECTED_OUTPUT = """\
1.0
0.16000000000000011
0.025599999999999973
0.004095999999999979
0.0006553600000000035
0.00010485760000000055
1.6777215999998997e-05
2.684354559999403e-06
4.294967295995552e-07
6.871947673606854e-08
"""


def original_loop_losses():
    """The loop the project started from, written out without pipeline.model."""
    W = np.ones((2, 3))
    x = np.array([-1.0, 1.0, 1.0])
    y = np.array([1.0, 2.0])
    losses = []
    for _ in range(10):
        y_hat = W @ x
        L = ((y_hat - y) ** 2).sum()
        losses.append(L)
        W -= 0.1 * np.outer(2 * (y_hat - y), x)
    return losses


def test_command_prints_the_spec_byte_for_byte():
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.seed_example"], cwd=REPO_ROOT, capture_output=True, check=True
    )
    assert result.stdout == EXPECTED_OUTPUT.encode()


def test_original_loop_prints_the_spec():
    assert "".join(f"{L}\n" for L in original_loop_losses()) == EXPECTED_OUTPUT


def test_worked_example_equals_original_loop_exactly():
    assert worked_example_losses() == original_loop_losses()


def test_loss_shrinks_by_a_factor_of_0_16_each_step():
    """x·x = 3 and lr = 0.1: the residual becomes (1 − 0.1·2·3) r = 0.4 r, so L becomes 0.16 L."""
    losses = worked_example_losses()
    assert [b / a for a, b in zip(losses, losses[1:])] == pytest.approx([0.16] * 9, rel=1e-9)
