"""docs/derivation.md names the function and line implementing each formula: keep those true."""

import ast
import re

import pytest

from tests.paths import REPO_ROOT

DERIVATION = REPO_ROOT / "docs" / "derivation.md"
# [`pipeline/heads.py` `Softmax.backward`, line 76](../pipeline/heads.py#L76)
REFERENCE = re.compile(r"\[`(?P<path>[\w/]+\.py)` `(?P<name>[\w.]+)`, line (?P<line>\d+)\]\((?P<href>[^)\s]+)\)")
REFERENCES = [m.groupdict() for m in REFERENCE.finditer(DERIVATION.read_text(encoding="utf-8"))]


def definition_lines(path):
    """``{qualified name: line}`` of every function and class in the file; a method is
    ``Class.method``."""
    lines = {}

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.ClassDef)):
                lines[prefix + child.name] = child.lineno
                if isinstance(child, ast.ClassDef):
                    visit(child, f"{prefix}{child.name}.")

    visit(ast.parse((REPO_ROOT / path).read_text(encoding="utf-8")), "")
    return lines


def test_definition_lines_qualify_methods():
    lines = definition_lines("pipeline/heads.py")
    assert lines["Softmax.forward"] != lines["Identity.forward"]
    assert "softmax" in lines and "forward" in definition_lines("pipeline/model.py")  # module-level functions


@pytest.mark.parametrize("ref", REFERENCES, ids=[f"{r['path']}:{r['name']}" for r in REFERENCES])
def test_reference_names_the_line_where_the_function_is_defined(ref):
    assert definition_lines(ref["path"]).get(ref["name"]) == int(ref["line"])
    assert ref["href"] == f"../{ref['path']}#L{ref['line']}"


def test_every_line_mention_is_a_checked_reference():
    """A reference written in another shape would escape the check above."""
    assert len(re.findall(r"\bline \d+", DERIVATION.read_text(encoding="utf-8"))) == len(REFERENCES)


def test_every_step_of_the_gradient_is_referenced():
    named = {(r["path"], r["name"]) for r in REFERENCES}
    assert {
        ("pipeline/heads.py", "softmax"), ("pipeline/heads.py", "softmax_jvp"), ("pipeline/heads.py", "Softmax.backward"),
        ("pipeline/heads.py", "Identity.backward"), ("pipeline/heads.py", "SquaredError.value"),
        ("pipeline/heads.py", "SquaredError.gradient"), ("pipeline/model.py", "Variant.loss_sum_and_delta"),
        ("pipeline/model.py", "Variant.logits"), ("pipeline/model.py", "Variant.gradients"),
        ("pipeline/model.py", "Variant.loss_and_grad"),
    } <= named


def test_the_training_loop_is_referenced():
    """The loop that trains, not only the reference implementation, is pointed at."""
    named = {r["name"] for r in REFERENCES if r["path"] == "pipeline/sgd.py"}
    assert {"SGD._rows_loss_and_gradient", "SGD._batch_loss_and_gradient", "SGD._apply_gradient"} <= named


def test_every_new_piece_is_referenced():
    """Cross-entropy, the bias, weight decay, the hidden layer and its activations (§11-14)."""
    named = {(r["path"], r["name"]) for r in REFERENCES}
    assert {
        ("pipeline/heads.py", "CrossEntropy.loss_sum_and_delta"), ("pipeline/heads.py", "log_softmax"),
        ("pipeline/model.py", "Variant.penalty"), ("pipeline/model.py", "Variant.decayed"),
        ("pipeline/mlp.py", "Network.hidden_layer"), ("pipeline/mlp.py", "Network.hidden_delta"),
        ("pipeline/mlp.py", "Network.gradients"), ("pipeline/mlp.py", "Network.initial_params"),
        ("pipeline/activations.py", "ReLU.backward"), ("pipeline/activations.py", "Sigmoid.backward"),
        ("pipeline/activations.py", "Tanh.backward"), ("pipeline/mlp_sgd.py", "HiddenLayerSGD._rows_loss_and_gradient"),
        ("pipeline/least_squares.py", "linear_optimum"), ("pipeline/sgd.py", "accumulate"),
    } <= named
