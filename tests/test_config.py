"""The typed schema: no values of its own, composition errors, range and choice checks, NaN and
infinity refused, and one exit code (2) for every config error of every stage app."""

import copy
import dataclasses
import math
import os
import shutil
import subprocess
import sys
import typing
from dataclasses import MISSING as NO_DEFAULT
from dataclasses import fields, is_dataclass

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import MISSING, OmegaConf

from pipeline.config import STAGE_SCHEMAS, ConfigError, validated
from tests.paths import CONF_DIR, REPO_ROOT


def leaf_fields(schema, prefix=""):
    """(dotted key, field) of every leaf of a stage schema; data.files' entries as FileSpec."""
    for f in fields(schema):
        if is_dataclass(f.type):
            yield from leaf_fields(f.type, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", f
            for arg in typing.get_args(f.type):  # dict[str, FileSpec]
                if is_dataclass(arg):
                    yield from leaf_fields(arg, f"{prefix}{f.name}.<name>.")


FLOAT_KEYS = sorted({(stage, key) for stage, schema in STAGE_SCHEMAS.items()
                     for key, f in leaf_fields(schema) if f.type is float})


@pytest.mark.parametrize("stage", sorted(STAGE_SCHEMAS))
def test_every_stage_default_config_is_valid(stage, compose_config):
    # predict's pictures are the one setting conf/ leaves to the command line.
    cfg = compose_config(stage, ["images=tests/digits"] if stage == "predict" else [])
    assert validated(cfg, STAGE_SCHEMAS[stage]) is cfg


def test_defaults_resolve_to_documented_values(compose_config):
    cfg = compose_config("train")
    assert cfg.model.name == "softmax"
    assert cfg.dtype == "float32"
    assert cfg.data.dir == "data/mnist"
    assert cfg.out_dir == "results/softmax"
    assert len(cfg.data.files) == 4
    assert cfg.data.files["train-labels-idx1-ubyte.gz"].size == 28881
    assert compose_config("evaluate", ["model=linear"]).train_dir == "results/linear"
    assert compose_config("download").data.dir == "data/mnist"


# --- one source: conf/ ---------------------------------------------------------------------


@pytest.mark.parametrize("stage", sorted(STAGE_SCHEMAS))
def test_the_schema_holds_no_values(stage):
    """Every value is written once, in conf/: a default in the dataclass would be a second copy
    that the YAML always overrides (editing it would silently do nothing)."""
    with_defaults = [key for key, f in leaf_fields(STAGE_SCHEMAS[stage])
                     if f.default is not MISSING or f.default_factory is not NO_DEFAULT]
    assert with_defaults == []


def test_a_value_missing_from_conf_is_an_error_naming_its_key(tmp_path, compose_config):
    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    mnist = conf / "data" / "mnist.yaml"
    lines = mnist.read_text().splitlines(keepends=True)
    mnist.write_text("".join(line for line in lines if not line.startswith("split_seed:")))

    cfg = compose_config("train", config_dir=conf)

    assert len(lines) == len(mnist.read_text().splitlines()) + 1
    with pytest.raises(ConfigError) as error:
        validated(cfg, STAGE_SCHEMAS["train"])
    assert str(error.value) == (
        "invalid config: data.split_seed: no value; every setting is given in conf/ (the schema holds none)"
    )


# --- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lr=0", "optim.lr=0.0: must be > 0"),
        ("optim.lr=-1", "optim.lr=-1.0: must be > 0"),
        ("optim.batch_size=0", "optim.batch_size=0: must be >= 1"),
        ("optim.epochs=0", "optim.epochs=0: must be >= 1"),
        ("optim.init=gaussian", "optim.init='gaussian': must be one of zeros, ones, normal"),
        ("dtype=float16", "dtype='float16': must be one of float32, float64"),
        ("model.name=Logistic/2", "model.name='Logistic/2': must be a name of lowercase letters, digits and _ (it names a results folder)"),
        ("model.output=sigmoid", "model.output='sigmoid': must be one of softmax, identity"),
        ("model.loss=hinge", "model.loss='hinge': must be one of squared_error, cross_entropy"),
        ("model.activation=swish", "model.activation='swish': must be one of relu, sigmoid, tanh"),
        ("model.hidden=0", "model.hidden=0: must be >= 1"),
        ("model.init=xavier", "model.init='xavier': must be one of auto, he, glorot"),
        ("optim.weight_decay=-0.1", "optim.weight_decay=-0.1: must be >= 0"),
        ("data.val_fraction=1", "data.val_fraction=1.0: must be in (0, 1)"),
        ("data.source=web", "data.source='web': must be one of auto, mirrors, packaged"),
        ("data.retries=11", "data.retries=11: must be in [0, 10]"),
        ("tracking.log_every=0", "tracking.log_every=0: must be >= 1"),
        ("divergence.factor=1", "divergence.factor=1.0: must be > 1"),
        ("+optim.momentum=0.9", "optim.momentum: not a setting of this stage"),
    ],
)
def test_bad_value_names_key_value_and_allowed_range(override, message, compose_config):
    cfg = compose_config("train", [override])
    with pytest.raises(ConfigError) as error:
        validated(cfg, STAGE_SCHEMAS["train"])
    assert str(error.value) == f"invalid config: {message}"


@pytest.fixture(scope="module")
def default_configs(compose_config):
    return {stage: compose_config(stage) for stage in STAGE_SCHEMAS}


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
@pytest.mark.parametrize(("stage", "key"), FLOAT_KEYS)
def test_every_float_setting_refuses_nan_and_infinity_by_name(stage, key, value, default_configs):
    cfg = copy.deepcopy(default_configs[stage])
    OmegaConf.update(cfg, key, float(value))
    with pytest.raises(ConfigError) as error:
        validated(cfg, STAGE_SCHEMAS[stage])
    assert str(error.value).startswith(f"invalid config: {key}={value}: must be a finite number")


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_nan_and_infinity_on_the_command_line_reach_validation(value, compose_config):
    cfg = compose_config("train", [f"optim.lr={value}"])
    assert not math.isfinite(cfg.optim.lr)
    with pytest.raises(ConfigError, match=f"^invalid config: optim.lr={value}: must be a finite number > 0$"):
        validated(cfg, STAGE_SCHEMAS["train"])


def test_the_float_settings_are_the_ones_expected():
    """So that the test above cannot pass by finding no float at all."""
    assert {key for stage, key in FLOAT_KEYS if stage == "train"} == {
        "data.connect_timeout", "data.read_timeout", "data.backoff", "data.val_fraction",
        "data.packaged_test_fraction", "optim.lr", "optim.init_scale", "optim.weight_decay", "divergence.factor",
    }
    assert {key for stage, key in FLOAT_KEYS if stage == "gradcheck"} == {"eps", "tolerance", "weight_decay"}


def test_a_range_check_message_keeps_the_range_after_finite(compose_config):
    with pytest.raises(ConfigError, match=r"^invalid config: data.val_fraction=nan: must be a finite number in \(0, 1\)$"):
        validated(compose_config("train", ["data.val_fraction=nan"]), STAGE_SCHEMAS["train"])


def test_every_problem_is_reported_at_once(compose_config):
    cfg = compose_config("train", ["optim.lr=0", "dtype=float16"])
    with pytest.raises(ConfigError) as error:
        validated(cfg, STAGE_SCHEMAS["train"])
    assert str(error.value) == (
        "invalid config:\n  optim.lr=0.0: must be > 0\n  dtype='float16': must be one of float32, float64"
    )


def test_bad_checksum_in_file_spec_is_reported(compose_config):
    cfg = compose_config("download")
    cfg.data.files["t10k-labels-idx1-ubyte.gz"].sha256 = "abc"
    with pytest.raises(ConfigError, match=r"data.files.t10k-labels-idx1-ubyte.gz.sha256='abc': must be 64 lowercase hex"):
        validated(cfg, STAGE_SCHEMAS["download"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lrr=0.1", "Key 'lrr' not in 'OptimConfig'"),
        ("optim.lr=fast", "could not be converted to Float"),
        ("model=logistic", "Could not find 'model/logistic'"),
    ],
)
def test_misspelt_key_wrong_type_or_unknown_group_fail_while_composing(override, message, compose_config):
    with pytest.raises(ConfigCompositionException) as error:
        compose_config("train", [override])
    assert message in str(error.value.__cause__ or error.value)


# --- one exit code for every config error, from the command line -------------------------

# (stage app, override, the one line it prints)
COMMAND_LINE_ERRORS = [
    ("train", "optim.lrr=0.1", "invalid config: optim.lrr: Key 'lrr' not in 'OptimConfig'"),
    ("train", "optim.batch_size=abc",
     "invalid config: optim.batch_size: Value 'abc' of type 'str' could not be converted to Integer"),
    ("train", "model=logistic", "invalid config: model=logistic: no such option, conf/model/ has base, linear, mlp, softmax, softmax_ce"),
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
    ("evaluate", "model=logistic", "invalid config: model=logistic: no such option, conf/model/ has base, linear, mlp, softmax, softmax_ce"),
    ("evaluate", "mistakes_shown=0", "invalid config: mistakes_shown=0: must be in [1, 200]"),
    ("download", "data.retry=1", "invalid config: data.retry: Key 'retry' not in 'DataConfig'"),
    ("download", "data.backoff=soon",
     "invalid config: data.backoff: Value 'soon' of type 'str' could not be converted to Float"),
    ("download", "data=fashion", "invalid config: data=fashion: no such option, conf/data/ has mnist"),
    ("download", "data.backoff=inf", "invalid config: data.backoff=inf: must be a finite number >= 0"),
    ("gradcheck", "epss=1e-6", "invalid config: epss: Key 'epss' not in 'GradcheckConfig'"),
    ("gradcheck", "seed=abc", "invalid config: seed: Value 'abc' of type 'str' could not be converted to Integer"),
    ("gradcheck", "model=logistic", "invalid config: model=logistic: no such option, conf/model/ has base, linear, mlp, softmax, softmax_ce"),
    ("gradcheck", "eps=nan", "invalid config: eps=nan: must be a finite number > 0"),
]


def run_app(stage, tmp_path, *overrides):
    # Every path the stage could write to is under tmp_path; data.dir is empty, so a stage that
    # got past its config would fail for want of data (exit 1), or download it (exit 0).
    paths = {"train": ["paths.data_dir=data", "out_dir=out"], "evaluate": ["paths.data_dir=data", "train_dir=out"],
             "download": ["paths.data_dir=data", "data.source=packaged"], "gradcheck": []}[stage]
    return subprocess.run([sys.executable, "-m", f"pipeline.{stage}", *paths, *overrides], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"})


def assert_refused(result, line, tmp_path):
    assert (result.returncode, result.stderr, result.stdout) == (2, line + "\n", "")
    assert list(tmp_path.iterdir()) == []  # no data, no outputs, no MLflow store


@pytest.mark.slow
@pytest.mark.parametrize(("stage", "override", "line"), COMMAND_LINE_ERRORS)
def test_every_config_error_of_every_stage_app_exits_2_in_one_line(stage, override, line, tmp_path):
    assert_refused(run_app(stage, tmp_path, *override.split()), line, tmp_path)


def test_a_composition_error_exits_2_in_one_line(tmp_path):
    stage, override, line = COMMAND_LINE_ERRORS[0]
    assert_refused(run_app(stage, tmp_path, override), line, tmp_path)


def test_a_bad_model_field_exits_2_in_one_line_naming_it(tmp_path):
    stage, override, line = next(error for error in COMMAND_LINE_ERRORS if error[1] == "model.hidden=1.5")
    assert_refused(run_app(stage, tmp_path, override), line, tmp_path)


def test_the_schema_offers_exactly_the_pieces_of_the_model_table():
    """config.py names the pieces without importing them (every stage imports config.py)."""
    from pipeline.activations import ACTIVATIONS
    from pipeline.config import ModelConfig
    from pipeline.mlp import INITS
    from pipeline.model import LOSSES, OUTPUTS

    rules = {f.name: f.metadata.get("one_of") for f in dataclasses.fields(ModelConfig)}
    assert (rules["output"], rules["loss"], rules["activation"], rules["init"]) == (
        tuple(OUTPUTS), tuple(LOSSES), tuple(ACTIVATIONS), INITS)


@pytest.mark.slow
def test_the_apps_still_run_after_their_config_is_checked(tmp_path):
    """The wrapper lets a good config through: the app runs, and its own failures keep exit 1."""
    result = run_app("gradcheck", tmp_path, "n_inputs=3", "n_outputs=2", "shown=1")
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout.splitlines()[-1]
    result = run_app("train", tmp_path, "tracking.enabled=false")
    assert result.returncode == 1
    assert result.stderr.startswith("cannot train: data/provenance.json not found")
