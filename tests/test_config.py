"""The typed schema: no values of its own, composition errors, range and choice checks, NaN and
infinity refused (how a stage app reports them: test_app)."""

import copy
import dataclasses
import math
import shutil
import typing
from dataclasses import MISSING as NO_DEFAULT
from dataclasses import fields, is_dataclass

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import MISSING, OmegaConf

from pipeline.config import STAGE_SCHEMAS, ConfigError, validated
from tests.paths import CONF_DIR


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


# Override lists for the check below: values of every kind, a group choice with values on it,
# a dict, an addition, a deletion, and each way an override can be wrong.
COMPOSED_BOTH_WAYS = [
    ("train", ["optim.lr=0.25", "out_dir=/tmp/x", "data.dir=/tmp/d"]),
    ("train", ["model=mlp", "model.hidden=12", "optim.weight_decay=1e-3", "optim.lr=0.1"]),
    ("train", ["optim.lr=nan", "optim.epochs=2", "optim.epochs=3", "dtype=float64"]),
    ("train", ["model=linear", "+extra=1", "optim={lr: 0.3}"]),
    ("evaluate", ["model=softmax_ce", "mistakes_shown=5"]),
    ("download", ["data.mirrors=[http://127.0.0.1:1/]", "data.retries=0", "data.backoff=inf"]),
    ("train", ["~divergence.fatal"]),
    ("train", ["optim.lrr=0.1"]),
    ("train", ["optim.lr=fast"]),
    ("train", ["model=logistic", "optim.lr=0.1"]),
    ("train", ["optim.lr=0.1,0.2"]),
]


@pytest.mark.parametrize(("stage", "overrides"), COMPOSED_BOTH_WAYS)
def test_the_shared_fixture_composes_as_hydra_does(stage, overrides, compose_config):
    """compose_config composes conf/ once per choice of files and applies value overrides to a
    copy: the config, or the error, is Hydra's own composition's."""

    def outcome(compose):
        try:
            return OmegaConf.to_yaml(compose(stage, overrides))
        except Exception as error:
            return type(error), str(error), str(error.__cause__)

    assert outcome(compose_config) == outcome(compose_config.composed)
    assert outcome(compose_config) == outcome(compose_config)  # the same again, from the cache


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


def test_the_schema_offers_exactly_the_pieces_of_the_model_table():
    """config.py names the pieces without importing them (every stage imports config.py)."""
    from pipeline.activations import ACTIVATIONS
    from pipeline.config import ModelConfig
    from pipeline.mlp import INITS
    from pipeline.heads import LOSSES, OUTPUTS

    rules = {f.name: f.metadata.get("one_of") for f in dataclasses.fields(ModelConfig)}
    assert (rules["output"], rules["loss"], rules["activation"], rules["init"]) == (
        tuple(OUTPUTS), tuple(LOSSES), tuple(ACTIVATIONS), INITS)
