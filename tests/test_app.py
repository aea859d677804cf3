"""The stages' entry point (pipeline.app): every config error of every stage app is one line and
exit 2, whether Hydra finds it while composing or the schema's validation does; a good config
runs the app. Each error is checked on the app's ``main`` in this process (the code a command
runs, without an interpreter and its imports each); one per stage app as a real process."""

import importlib
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from tests import in_process
from tests.paths import MODEL_OPTIONS, REPO_ROOT


# (stage app, override, the one line it prints)
COMMAND_LINE_ERRORS = [
    ("train", "optim.lrr=0.1", "invalid config: optim.lrr: Key 'lrr' not in 'OptimConfig'"),
    ("train", "optim.batch_size=abc",
     "invalid config: optim.batch_size: Value 'abc' of type 'str' could not be converted to Integer"),
    ("train", "model=logistic", f"invalid config: model=logistic: no such option, conf/model/ has {MODEL_OPTIONS}"),
    ("train", "optim.lr=nan", "invalid config: optim.lr=nan: must be a finite number > 0"),
    ("train", "model.activation=swish", "invalid config: model.activation='swish': must be one of relu, sigmoid, tanh"),
    ("train", "optim.weight_decay=nan", "invalid config: optim.weight_decay=nan: must be a finite number >= 0"),
    ("train", "optim.weight_decay=-1", "invalid config: optim.weight_decay=-1.0: must be >= 0"),
    ("train", "model.hidden=0", "invalid config: model.hidden=0: must be >= 1"),
    ("train", "model.hidden=1.5", "invalid config: model.hidden: Value '1.5' of type 'float' could not be converted to Integer"),
    ("train", "model.hidden=wide", "invalid config: model.hidden: Value 'wide' of type 'str' could not be converted to Integer"),
    ("train", "model.output=identity model.loss=cross_entropy",
     "invalid config: model.loss=cross_entropy, model.output=identity: variant 'softmax': cross-entropy is defined after a softmax output only"),
    ("gradcheck", "model=mlp model.activation=swish", "invalid config: model.activation='swish': must be one of relu, sigmoid, tanh"),
    ("train", "optim.lr=[1", "invalid config: optim.lr=[1: no viable alternative at input '[1'"),
    ("evaluate", "mistakes_shownn=3", "invalid config: mistakes_shownn: Key 'mistakes_shownn' not in 'EvaluateConfig'"),
    ("evaluate", "mistakes_shown=many",
     "invalid config: mistakes_shown: Value 'many' of type 'str' could not be converted to Integer"),
    ("evaluate", "model=logistic", f"invalid config: model=logistic: no such option, conf/model/ has {MODEL_OPTIONS}"),
    ("evaluate", "mistakes_shown=0", "invalid config: mistakes_shown=0: must be in [1, 200]"),
    ("download", "data.retry=1", "invalid config: data.retry: Key 'retry' not in 'DataConfig'"),
    ("download", "data.backoff=soon",
     "invalid config: data.backoff: Value 'soon' of type 'str' could not be converted to Float"),
    ("download", "data=fashion", "invalid config: data=fashion: no such option, conf/data/ has mnist"),
    ("download", "data.backoff=inf", "invalid config: data.backoff=inf: must be a finite number >= 0"),
    ("gradcheck", "epss=1e-6", "invalid config: epss: Key 'epss' not in 'GradcheckConfig'"),
    ("gradcheck", "seed=abc", "invalid config: seed: Value 'abc' of type 'str' could not be converted to Integer"),
    ("gradcheck", "model=logistic", f"invalid config: model=logistic: no such option, conf/model/ has {MODEL_OPTIONS}"),
    ("gradcheck", "eps=nan", "invalid config: eps=nan: must be a finite number > 0"),
]


# Every path a stage could write to is under the test's folder; data.dir is empty, so a stage that
# got past its config would fail for want of data (exit 1), or download it (exit 0).
PATHS = {"train": ["paths.data_dir=data", "out_dir=out"], "evaluate": ["paths.data_dir=data", "train_dir=out"],
         "download": ["paths.data_dir=data", "data.source=packaged"], "gradcheck": []}


def run_app(stage, tmp_path, *overrides):
    """``python -m pipeline.<stage>`` in ``tmp_path``, its store there too."""
    return subprocess.run([sys.executable, "-m", f"pipeline.{stage}", *PATHS[stage], *overrides], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"})


def run_main(stage, tmp_path, monkeypatch, capfd, *overrides):
    """The same command's ``main`` called here (tests/in_process.py): its exit status, stderr
    and stdout."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    capfd.readouterr()
    status = in_process.run_app(importlib.import_module(f"pipeline.{stage}").main, *PATHS[stage], *overrides)
    out, err = capfd.readouterr()
    return SimpleNamespace(returncode=status, stderr=err, stdout=out)


def assert_refused(result, line, tmp_path):
    assert (result.returncode, result.stderr, result.stdout) == (2, line + "\n", "")
    assert list(tmp_path.iterdir()) == []  # no data, no outputs, no MLflow store


# The quick loop runs each way an error is found (a key, a group option or the override syntax
# while composing; the schema's checks; the variant's) once, and each stage's; the rest are slow.
QUICK_ERRORS = {("train", "optim.lrr=0.1"), ("train", "model=logistic"), ("train", "optim.lr=[1"), ("train", "optim.lr=nan"),
                ("train", "model.output=identity model.loss=cross_entropy"), ("evaluate", "mistakes_shownn=3"),
                ("evaluate", "mistakes_shown=0"), ("download", "data=fashion"), ("download", "data.backoff=inf"),
                ("gradcheck", "seed=abc"), ("gradcheck", "eps=nan")}
assert QUICK_ERRORS <= {error[:2] for error in COMMAND_LINE_ERRORS}


@pytest.mark.parametrize(("stage", "override", "line"), [
    pytest.param(*error, marks=() if error[:2] in QUICK_ERRORS else pytest.mark.slow) for error in COMMAND_LINE_ERRORS])
def test_every_config_error_of_every_stage_app_exits_2_in_one_line(stage, override, line, tmp_path, monkeypatch, capfd):
    assert_refused(run_main(stage, tmp_path, monkeypatch, capfd, *override.split()), line, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["evaluate", "download", "gradcheck"])  # train's: the two tests below
def test_a_config_error_of_each_stage_command_exits_2_in_one_line(stage, tmp_path):
    _, override, line = next(error for error in COMMAND_LINE_ERRORS if error[0] == stage)
    assert_refused(run_app(stage, tmp_path, *override.split()), line, tmp_path)


def test_a_composition_error_exits_2_in_one_line(tmp_path):
    stage, override, line = COMMAND_LINE_ERRORS[0]
    assert_refused(run_app(stage, tmp_path, override), line, tmp_path)


def test_a_bad_model_field_exits_2_in_one_line_naming_it(tmp_path):
    stage, override, line = next(error for error in COMMAND_LINE_ERRORS if error[1] == "model.hidden=1.5")
    assert_refused(run_app(stage, tmp_path, override), line, tmp_path)


@pytest.mark.slow
def test_the_apps_still_run_after_their_config_is_checked(tmp_path):
    """The wrapper lets a good config through: the app runs, and its own failures keep exit 1."""
    result = run_app("gradcheck", tmp_path, "n_inputs=3", "n_outputs=2", "shown=1")
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout.splitlines()[-1]
    result = run_app("train", tmp_path, "tracking.enabled=false")
    assert result.returncode == 1
    assert result.stderr.startswith("cannot train: data/provenance.json not found")
