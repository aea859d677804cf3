"""Outputs written atomically, as strict JSON."""

import numpy as np
import pytest

from pipeline.files import atomic_write, json_bytes, read_params, write_params


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


def test_params_round_trip_byte_for_byte_the_same_file(tmp_path):
    params = {"W1": np.arange(6, dtype=np.float32).reshape(2, 3), "b1": np.array([0.5, -1.0])}
    fields = {"name": "mlp", "hidden": 2, "bias": True}
    write_params(tmp_path / "a.npz", params, fields)
    write_params(tmp_path / "b.npz", params, fields)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()  # no timestamps
    read, read_fields = read_params(tmp_path / "a.npz")
    assert read_fields == fields and list(read) == ["W1", "b1"]
    for key in params:
        assert read[key].dtype == params[key].dtype
        np.testing.assert_array_equal(read[key], params[key])
    with np.load(tmp_path / "a.npz") as plain:  # an ordinary .npz
        np.testing.assert_array_equal(plain["W1"], params["W1"])
