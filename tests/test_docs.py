"""docs/derivation.md names the function and line implementing each formula: keep those true."""

import ast
import re

import pytest

from tests.paths import REPO_ROOT

DERIVATION = REPO_ROOT / "docs" / "derivation.md"
# [`pipeline/model.py` `softmax_jvp`, line 55](../pipeline/model.py#L55)
REFERENCE = re.compile(r"\[`(?P<path>[\w/]+\.py)` `(?P<name>\w+)`, line (?P<line>\d+)\]\((?P<href>[^)\s]+)\)")
REFERENCES = [m.groupdict() for m in REFERENCE.finditer(DERIVATION.read_text(encoding="utf-8"))]


def definition_lines(path):
    """``{name: line}`` of every function and class defined in the file."""
    tree = ast.parse((REPO_ROOT / path).read_text(encoding="utf-8"))
    return {
        node.name: node.lineno
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.ClassDef))
    }


@pytest.mark.parametrize("ref", REFERENCES, ids=[f"{r['path']}:{r['name']}" for r in REFERENCES])
def test_reference_names_the_line_where_the_function_is_defined(ref):
    assert definition_lines(ref["path"]).get(ref["name"]) == int(ref["line"])
    assert ref["href"] == f"../{ref['path']}#L{ref['line']}"


def test_every_line_mention_is_a_checked_reference():
    """A reference written in another shape would escape the check above."""
    assert len(re.findall(r"\bline \d+", DERIVATION.read_text(encoding="utf-8"))) == len(REFERENCES)


def test_every_step_of_the_gradient_is_referenced():
    named = {r["name"] for r in REFERENCES if r["path"] == "pipeline/model.py"}
    assert {"softmax", "loss", "dL_dy_hat", "softmax_jvp", "dL_dz", "dL_dW", "loss_and_grad"} <= named
