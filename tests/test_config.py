"""The typed schema: composition errors for misspelt keys and wrong types, range and choice checks."""

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

from pipeline.config import STAGE_SCHEMAS, ConfigError, validated
from tests.paths import CONF_DIR


def compose_stage(stage, overrides=()):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose(config_name=stage, overrides=list(overrides))


@pytest.mark.parametrize("stage", sorted(STAGE_SCHEMAS))
def test_every_stage_default_config_is_valid(stage):
    cfg = compose_stage(stage)
    assert validated(cfg, STAGE_SCHEMAS[stage]) is cfg


def test_defaults_resolve_to_documented_values():
    cfg = compose_stage("train")
    assert cfg.model.name == "softmax"
    assert cfg.dtype == "float32"
    assert cfg.out_dir == "results/softmax"
    assert len(cfg.data.files) == 4
    assert cfg.data.files["train-labels-idx1-ubyte.gz"].size == 28881


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lr=0", "optim.lr=0.0: must be > 0"),
        ("optim.lr=-1", "optim.lr=-1.0: must be > 0"),
        ("optim.batch_size=0", "optim.batch_size=0: must be >= 1"),
        ("optim.epochs=0", "optim.epochs=0: must be >= 1"),
        ("optim.init=gaussian", "optim.init='gaussian': must be one of zeros, ones, normal"),
        ("dtype=float16", "dtype='float16': must be one of float32, float64"),
        ("model.name=logistic", "model.name='logistic': must be one of softmax, linear"),
        ("data.val_fraction=1", r"data.val_fraction=1.0: must be in \(0, 1\)"),
        ("data.source=web", "data.source='web': must be one of auto, mirrors, packaged"),
        ("data.retries=11", r"data.retries=11: must be in \[0, 10\]"),
        ("tracking.log_every=0", "tracking.log_every=0: must be >= 1"),
        ("divergence.factor=1", "divergence.factor=1.0: must be > 1"),
    ],
)
def test_bad_value_names_key_value_and_allowed_range(override, message):
    cfg = compose_stage("train", [override])
    with pytest.raises(ConfigError, match=message):
        validated(cfg, STAGE_SCHEMAS["train"])


def test_every_problem_is_reported_at_once():
    cfg = compose_stage("train", ["optim.lr=0", "dtype=float16"])
    with pytest.raises(ConfigError) as error:
        validated(cfg, STAGE_SCHEMAS["train"])
    assert "optim.lr" in str(error.value) and "dtype" in str(error.value)


def test_bad_checksum_in_file_spec_is_reported():
    cfg = compose_stage("download")
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
def test_misspelt_key_wrong_type_or_unknown_group_fail_while_composing(override, message):
    with pytest.raises(ConfigCompositionException) as error:
        compose_stage("train", [override])
    assert message in str(error.value.__cause__ or error.value)
