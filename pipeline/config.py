"""Typed schema of the Hydra config tree in conf/, and its validation.

Each stage's primary config (conf/<stage>.yaml) starts its defaults list with its schema
(``<stage>_schema``, registered below), so Hydra merges the YAML files onto these dataclasses:
a misspelt key or a value of the wrong type fails while composing. ``validated`` then checks
what types cannot express — ranges and choices — and names the key, the value and what is
allowed. Stages call it first thing, before reading data or opening an MLflow run.
"""

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import MISSING, OmegaConf


class ConfigError(ValueError):
    pass


def one_of(default, *allowed):
    return field(default=default, metadata={"one_of": allowed})


def in_range(default, low=None, high=None, low_open=False, high_open=False):
    return field(default=default, metadata={"range": (low, high, low_open, high_open)})


# --- groups: one per concern -------------------------------------------------------------


@dataclass
class FileSpec:
    size: int = in_range(0, low=1)
    sha256: str = field(default="", metadata={"pattern": "sha256"})


@dataclass
class DataConfig:
    dir: str = "data/mnist"
    # auto: mirrors, then the packaged 5k subset; mirrors: never fall back; packaged: no network.
    source: str = one_of("auto", "auto", "mirrors", "packaged")
    mirrors: list[str] = field(default_factory=list)
    files: dict[str, FileSpec] = field(default_factory=dict)
    connect_timeout: float = in_range(5.0, low=0, low_open=True)
    read_timeout: float = in_range(30.0, low=0, low_open=True)
    retries: int = in_range(2, low=0, high=10)
    backoff: float = in_range(1.0, low=0)
    # The validation split is carved from the training set; the test set is the evaluate stage's.
    val_fraction: float = in_range(0.1, low=0, high=1, low_open=True, high_open=True)
    split_seed: int = in_range(0, low=0)
    # Only for the packaged subset, which has no test split of its own.
    packaged_test_fraction: float = in_range(0.2, low=0, high=1, low_open=True, high_open=True)


@dataclass
class ModelConfig:
    name: str = one_of("softmax", "softmax", "linear")


@dataclass
class OptimConfig:
    lr: float = in_range(0.1, low=0, low_open=True)
    # A batch_size >= the number of training rows means full-batch gradient descent.
    batch_size: int = in_range(32, low=1)
    epochs: int = in_range(10, low=1)
    seed: int = in_range(0, low=0)
    init: str = one_of("zeros", "zeros", "ones", "normal")
    init_scale: float = in_range(0.01, low=0)


@dataclass
class TrackingConfig:
    enabled: bool = True
    # A relative sqlite path is anchored at the project root; MLFLOW_TRACKING_URI wins.
    uri: str = "sqlite:///mlflow.db"
    experiment: str = "handgrad"
    log_every: int = in_range(10, low=1)
    # 0: snapshot W only at the start and the end.
    snapshot_every: int = in_range(1, low=0)


@dataclass
class DivergenceConfig:
    # Training stops when the loss is NaN/Inf or exceeds factor x its initial value.
    factor: float = in_range(100.0, low=1, low_open=True)
    fatal: bool = False


# --- one schema per stage ----------------------------------------------------------------


@dataclass
class DownloadConfig:
    data: DataConfig = field(default_factory=DataConfig)


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    divergence: DivergenceConfig = field(default_factory=DivergenceConfig)
    dtype: str = one_of("float32", "float32", "float64")
    out_dir: str = "${job_dir_if_multirun:results/${model.name}}"


@dataclass
class EvaluateConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    # Where the train stage wrote W and its MLflow run id; evaluation outputs go there too.
    train_dir: str = "results/${model.name}"
    # Test digits in the picture of the most confidently wrong predictions.
    mistakes_shown: int = in_range(32, low=1, high=200)


@dataclass
class GradcheckConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    seed: int = in_range(0, low=0)
    batch_size: int = in_range(4, low=1)
    n_inputs: int = in_range(784, low=1)
    n_outputs: int = in_range(10, low=1)
    # Entries printed; all entries are checked.
    shown: int = in_range(8, low=0)
    eps: float = in_range(1e-6, low=0, low_open=True)
    tolerance: float = in_range(1e-7, low=0)


@dataclass
class PredictConfig:
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    # Files, folders or glob patterns, one or a list.
    images: Any = MISSING
    trained: str = "results/softmax"
    variant: Optional[str] = one_of(None, None, "softmax", "linear")
    top: int = in_range(3, low=1, high=10)


STAGE_SCHEMAS = {
    "download": DownloadConfig,
    "train": TrainConfig,
    "evaluate": EvaluateConfig,
    "gradcheck": GradcheckConfig,
    "predict": PredictConfig,
}

for _stage, _schema in STAGE_SCHEMAS.items():
    ConfigStore.instance().store(name=f"{_stage}_schema", node=_schema)


def job_dir_if_multirun(path):
    """``${job_dir_if_multirun:<path>}``: ``path``, except in a job of a multirun (``-m``), where it
    is the job's own folder, Hydra's ``multirun/<date>/<time>/<job number>/``: the jobs of a sweep
    never overwrite the DVC pipeline's outputs, nor each other's."""
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return HydraConfig.get().runtime.output_dir
    return path


OmegaConf.register_new_resolver("job_dir_if_multirun", job_dir_if_multirun)


# --- validation --------------------------------------------------------------------------


def validated(cfg, schema):
    """Check every ranged or choice field of ``cfg`` against ``schema``; return ``cfg``.

    Raises ConfigError listing every bad key as ``key=value: what is allowed``.
    """
    problems = list(_problems(cfg, schema, prefix=""))
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))
    return cfg


def _problems(node, schema, prefix):
    for f in fields(schema):
        key = f"{prefix}{f.name}"
        value = OmegaConf.select(node, f.name) if OmegaConf.is_config(node) else getattr(node, f.name)
        if is_dataclass(f.type):
            yield from _problems(value, f.type, f"{key}.")
            continue
        if f.name == "files" and prefix.endswith("data."):
            for name, spec in value.items():
                yield from _problems(spec, FileSpec, f"{key}.{name}.")
            continue
        problem = _field_problem(value, f.metadata)
        if problem:
            yield f"{key}={value!r}: {problem}"


def _field_problem(value, rules):
    if "one_of" in rules and value not in rules["one_of"]:
        return "must be one of " + ", ".join(rules["one_of"])
    if "range" in rules:
        low, high, low_open, high_open = rules["range"]
        too_low = low is not None and (value is None or (value <= low if low_open else value < low))
        too_high = high is not None and value is not None and (value >= high if high_open else value > high)
        if too_low or too_high:
            return "must be " + _describe_range(low, high, low_open, high_open)
    if rules.get("pattern") == "sha256" and not _is_sha256(value):
        return "must be 64 lowercase hex digits (a SHA-256)"
    return None


def _describe_range(low, high, low_open, high_open):
    if high is None:
        return f"{'>' if low_open else '>='} {low}"
    if low is None:
        return f"{'<' if high_open else '<='} {high}"
    return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"


def _is_sha256(value):
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)
