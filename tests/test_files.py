"""Outputs written atomically, one by one or as a set, as strict JSON; a trained W read back,
checked."""

import re
import resource
import signal
import subprocess
import sys

import numpy as np
import pytest

from pipeline.files import WeightsError, atomic_write, json_bytes, read_params, read_weights, write_params, write_set
from tests.paths import REPO_ROOT


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


# --- a set of outputs ---------------------------------------------------------------------------


def test_a_set_replaces_every_file_or_none(tmp_path):
    old = {"W.npy": b"old W", "metrics.json": b"old metrics", "history.csv": b"old history"}
    for name, content in old.items():
        (tmp_path / name).write_bytes(content)

    def fails(f):
        f.write(b"half of the new history")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError) as raised:
        write_set(tmp_path, {"W.npy": b"new W", "metrics.json": b"new metrics", "history.csv": fails})

    assert raised.value.filename == str(tmp_path / "history.csv")  # the output, not its temporary
    assert raised.value.strerror == "No space left on device"
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == old  # no temporary left

    write_set(tmp_path, {"W.npy": b"new W", "metrics.json": lambda f: f.write(b"new metrics"), "extra": b"x"})
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == {
        "W.npy": b"new W", "metrics.json": b"new metrics", "history.csv": b"old history", "extra": b"x"}


WRITE_BIG_SET = """
import sys
from pipeline.files import write_set
write_set(sys.argv[1], {"small.json": b"new" * 10, "big.csv": b"new" * 20_000})
"""


def test_a_real_write_error_on_a_later_file_keeps_the_earlier_files_old(tmp_path):
    # A file-size limit makes the kernel refuse the big file's write (EFBIG) as a full disk would
    # (ENOSPC): a real failing write, in a process of its own.
    (tmp_path / "small.json").write_bytes(b"old")
    (tmp_path / "big.csv").write_bytes(b"old")

    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (10_000, 10_000))

    result = subprocess.run([sys.executable, "-c", WRITE_BIG_SET, str(tmp_path)], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=60, preexec_fn=limited)

    assert result.returncode == 1
    assert f"OSError: [Errno 27] File too large: '{tmp_path / 'big.csv'}'" in result.stderr
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == {"small.json": b"old", "big.csv": b"old"}


# --- a trained W read back --------------------------------------------------------------------


def test_a_trained_w_is_read_back_as_it_was_saved(tmp_path):
    W = np.random.default_rng(0).normal(size=(10, 784)).astype(np.float32)
    np.save(tmp_path / "W.npy", W)

    read = read_weights(tmp_path / "W.npy")

    assert read.dtype == np.float32
    np.testing.assert_array_equal(read, W)


def nan_weights():
    W = np.zeros((10, 784))
    W[3, :5] = np.nan
    W[7, 0] = -np.inf
    return W


@pytest.mark.parametrize(
    "content, problem",
    [
        (np.zeros((10, 700)), "has shape (10, 700), expected (10, 784): one row of weights per digit"),
        (np.zeros(7840), "has shape (7840,), expected (10, 784)"),
        (np.zeros((10, 784), dtype=np.int64), "holds int64 values, expected floats"),
        (np.zeros((10, 784), dtype=np.complex128), "holds complex128 values, expected floats"),
        (nan_weights(), "6 weights are NaN or infinite (a diverged training?)"),
        (np.array([{"W": 1}], dtype=object), "not a numpy array of numbers (Object arrays cannot be loaded when allow_pickle=False)"),
        (b"not a numpy file", "not a numpy array of numbers"),
    ],
    ids=["shape", "flat", "integer", "complex", "nan", "pickle", "text"],
)
def test_anything_but_a_finite_float_10_by_784_w_is_refused_naming_the_file(tmp_path, content, problem):
    path = tmp_path / "W.npy"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        np.save(path, content, allow_pickle=True)

    with pytest.raises(WeightsError) as raised:
        read_weights(path)

    assert str(raised.value).startswith(f"{path}: {problem}")
    assert raised.value.exit_status == 2


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


@pytest.mark.parametrize("params, message", [
    ({"W": np.ones((2, 2), dtype=np.int64)}, "W holds int64 values, expected floats"),
    ({"W1": np.ones(3), "b1": np.array([1.0, np.nan])}, "1 values of b1 are NaN or infinite (a diverged training?)"),
    ({}, "holds no parameters"),
])
def test_params_that_are_not_a_trained_model_are_refused_naming_the_file(tmp_path, params, message):
    write_params(tmp_path / "p.npz", params, {"name": "x"})
    with pytest.raises(WeightsError, match=re.escape(f"{tmp_path / 'p.npz'}: {message}")):
        read_params(tmp_path / "p.npz")
    (tmp_path / "q.npz").write_bytes(b"not a zip")
    with pytest.raises(WeightsError, match="q.npz: not a file of parameters"):
        read_params(tmp_path / "q.npz")
