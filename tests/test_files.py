"""Outputs written atomically, as strict JSON."""

import pytest

from pipeline.files import atomic_write, json_bytes


def test_atomic_write_replaces_only_on_success(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_write(path) as f:
            f.write(b"half of the new")
            raise RuntimeError("interrupted")
    assert path.read_bytes() == b"old"
    assert sorted(tmp_path.iterdir()) == [path]
    with atomic_write(path) as f:
        f.write(b"new")
    assert path.read_bytes() == b"new"
    assert sorted(tmp_path.iterdir()) == [path]


def test_json_outputs_hold_no_nan():
    assert json_bytes({"a": {"b": float("nan"), "c": float("inf"), "d": 1.5}}) == b'{\n  "a": {\n    "b": null,\n    "c": null,\n    "d": 1.5\n  }\n}\n'
