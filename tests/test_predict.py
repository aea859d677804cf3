"""python -m pipeline.predict: drawn digits and IDX files through a folder's W, a run's model or an alias."""

import os
import subprocess
import sys

import numpy as np
import pytest

from pipeline import predict
from pipeline.digits import read_digits
from pipeline.idx import write_idx
from pipeline.files import write_params
from pipeline.registry import register_best
from pipeline.classifier import scores
from pipeline.variants import build
from tests.in_process import run_app
from tests.model_helpers import logged_run, real_digits, trained_params
from tests.paths import REPO_ROOT

DRAWN_DIR = REPO_ROOT / "tests" / "digits"
SOFTMAX_FIELDS = {"name": "softmax", "output": "softmax", "loss": "squared_error", "bias": False, "hidden": None,
                  "activation": "relu", "init": "auto"}


@pytest.fixture
def trained_dir(tmp_path):
    folder = tmp_path / "results" / "softmax"
    folder.mkdir(parents=True)
    write_params(folder / "params.npz", trained_params(), SOFTMAX_FIELDS)
    return folder


@pytest.fixture
def run_predict(compose_config):
    """``run_predict(*overrides)``: predict.run on the config so composed; its exit status."""
    return lambda *overrides: predict.run(compose_config("predict", overrides))


def expected_lines(names, images, variant, top=3):
    S = scores(trained_params(), images.reshape(len(images), -1), variant)
    return [predict.line(name, row, top) for name, row in zip(names, S)]


def test_drawn_digits_through_a_folders_w(trained_dir, capsys, run_predict):
    assert run_predict(f"images={DRAWN_DIR}", f"trained={trained_dir}") == 0
    out = capsys.readouterr().out.splitlines()
    files = sorted(p for p in DRAWN_DIR.iterdir() if p.suffix in (".png", ".jpg"))
    assert out[0] == f"10 images, softmax W from {trained_dir}/params.npz"
    images = np.concatenate([read_digits(f) for f in files])
    assert out[1:] == expected_lines([str(f) for f in files], images, "softmax")
    first = out[1].split()
    assert first[0] == f"{files[0]}:" and first[2].startswith("(") and len(out[1].split(", ")) == 3


def test_a_folder_of_any_variant_answers_with_its_own_forward_pass(tmp_path, capsys, run_predict):
    fields = {**SOFTMAX_FIELDS, "name": "mlp", "loss": "cross_entropy", "bias": True, "hidden": 7, "activation": "tanh"}
    model = build(fields)
    params = model.initial_params(784, 10, np.dtype(np.float32), np.random.default_rng(0))
    folder = tmp_path / "multirun" / "3"  # a sweep job's folder: its name says nothing
    folder.mkdir(parents=True)
    write_params(folder / "params.npz", params, fields)
    assert run_predict(f"images={DRAWN_DIR}", f"trained={folder}") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"10 images, mlp W1, b1, W2, b2 from {folder}/params.npz"
    files = sorted(p for p in DRAWN_DIR.iterdir() if p.suffix in (".png", ".jpg"))
    images = np.concatenate([read_digits(f) for f in files]).reshape(10, -1)
    S = model.forward(params, images.astype(np.float32) / np.float32(255))
    assert out[1:] == [predict.line(str(f), row, 3) for f, row in zip(files, S)]


def test_an_idx_file_and_the_variant_named_explicitly(tmp_path, trained_dir, capsys, run_predict):
    images = real_digits()[0][4000:4012].reshape(-1, 28, 28)
    write_idx(tmp_path / "t10k-images.gz", images)
    other = tmp_path / "job7"
    other.mkdir()
    np.save(other / "W.npy", trained_params()["W"])
    assert run_predict(f"images={tmp_path}/t10k-images.gz", f"trained={other}", "variant=linear", "top=1") == 0
    out = capsys.readouterr().out.splitlines()
    names = [f"{tmp_path}/t10k-images.gz[{i}]" for i in range(12)]
    assert out[1:] == expected_lines(names, images, "linear", top=1)


def test_a_run_id_and_a_registered_alias_answer_as_the_folder_does(mlflow_store, trained_dir, capsys, run_predict):
    run_id = logged_run(mlflow_store, "softmax", 0.9)
    register_best(mlflow_store.uri, run_ids=[run_id])
    assert run_predict(f"images={DRAWN_DIR}/*.png", f"trained={trained_dir}") == 0
    by_folder = capsys.readouterr().out.splitlines()[1:]
    for trained in (run_id, "models:/handgrad-softmax@champion"):
        assert run_predict(f"images={DRAWN_DIR}/*.png", f"trained={trained}") == 0
        out = capsys.readouterr().out.splitlines()
        assert out[0].endswith(f"from {mlflow_store.uri}") and out[1:] == by_folder


@pytest.mark.parametrize("trained, message", [
    ("0123456789abcdef0123456789abcdef", "runs:/0123456789abcdef0123456789abcdef/model: Run with id=0123456789abcdef0123456789abcdef not found (looked in sqlite:///"),
    ("models:/handgrad-nothing@champion", "models:/handgrad-nothing@champion: Registered Model with name=handgrad-nothing not found (looked in sqlite:///"),
    ("no/such/folder", "trained=no/such/folder: no such folder, and neither a run id nor a model URI"),
])
def test_an_unknown_model_says_which_and_where_it_looked(mlflow_store, capsys, trained, message, run_predict):
    assert run_predict(f"images={DRAWN_DIR}", f"trained={trained}") == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith(f"cannot predict: {message}")


def test_a_model_uri_where_no_store_is_says_so_and_creates_none(tmp_path, capsys, monkeypatch, run_predict):
    """A fresh clone before its first run: MLflow would create an empty store to look in (and
    log that it does); predict writes nothing."""
    database = tmp_path / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{database}")
    assert run_predict(f"images={DRAWN_DIR}", "trained=models:/handgrad-softmax@champion") == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (f"cannot predict: models:/handgrad-softmax@champion: no MLflow store at {database} "
                            "(train with tracking on first, or point MLFLOW_TRACKING_URI at one)\n")
    assert not database.exists()


def test_bad_input_exits_2_naming_the_file_before_any_output(tmp_path, trained_dir, capsys, run_predict):
    np.save(tmp_path / "small.npy", np.ones((27, 27)))
    assert run_predict(f"images=[{DRAWN_DIR}/0_round.png,{tmp_path}/small.npy]", f"trained={trained_dir}") == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"cannot predict: {tmp_path}/small.npy: array of shape (27, 27), expected (28, 28), (N, 28, 28) or (N, 784)\n"
    assert run_predict(f"images={tmp_path}/*.png", f"trained={trained_dir}") == 2
    assert "no image files there" in capsys.readouterr().err
    np.save(tmp_path / "W.npy", trained_params()["W"])
    assert run_predict(f"images={DRAWN_DIR}", f"trained={tmp_path}") == 2
    assert "cannot tell its variant from the folder's name; add variant=<softmax|linear>" in capsys.readouterr().err


def test_config_errors_exit_2(capsys, run_predict):
    assert run_predict() == 2
    assert capsys.readouterr().err.startswith("images=???: name the pictures to classify")
    assert run_predict("images=x.png", "top=0") == 2
    assert "top=0: must be in [1, 10]" in capsys.readouterr().err


def test_the_command_line(tmp_path, trained_dir, capsys, monkeypatch):
    environment = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    command = [sys.executable, "-m", "pipeline.predict", f"trained={trained_dir}"]
    good = subprocess.run(command + [f"images={DRAWN_DIR}/7_transparent.png"], cwd=tmp_path, env=environment, capture_output=True, text=True)
    assert good.returncode == 0, good.stderr
    assert good.stdout.splitlines()[1].startswith(f"{DRAWN_DIR}/7_transparent.png: ")
    # The same command line on a bad picture, run in this process (tests/in_process.py): exit 2.
    (tmp_path / "notes.png").write_text("not a picture")
    monkeypatch.chdir(tmp_path)
    assert run_app(predict.main, f"trained={trained_dir}", "images=notes.png") == 2
    bad = capsys.readouterr()
    assert bad.out == ""
    assert bad.err == "cannot predict: notes.png: not a picture Pillow can read (PNG, JPEG, ...), an IDX file or a .npy array\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.png", "results"]  # no Hydra files
