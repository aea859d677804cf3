"""Typed schema of the Hydra config tree in conf/, and its validation.

Each stage's primary config (conf/<stage>.yaml) starts its defaults list with its schema
(``<stage>_schema``, registered below), so Hydra merges the YAML files onto these dataclasses:
a misspelt key or a value of the wrong type fails while composing. The schema holds types, choices
and ranges but no values: every value is written once, in conf/, and one missing there is an
error naming its key, not a silent fallback. ``validated`` checks what types cannot express and
names the key, the value and what is allowed; stages call it first thing, before reading data or
opening an MLflow run. The stages' entry point, which turns a config error into one line and
exit 2, is pipeline.app.
"""

import math
import re
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import MISSING, OmegaConf

NAME = re.compile(r"[a-z][a-z0-9_]*")


class ConfigError(ValueError):
    pass


def setting(**rules):
    """A leaf with no default (``???``): its value comes from conf/ only."""
    return field(default=MISSING, metadata=rules)


def one_of(*allowed):
    return setting(one_of=allowed)


def in_range(low=None, high=None, low_open=False, high_open=False):
    return setting(range=(low, high, low_open, high_open))


def group(schema):
    """A nested group: its structure, every leaf still ``???`` until conf/ fills it."""
    return field(default_factory=schema)


# --- groups: one per concern -------------------------------------------------------------


@dataclass
class FileSpec:
    size: int = in_range(low=1)
    sha256: str = setting(pattern="sha256")


@dataclass
class PathsConfig:
    data_dir: str = setting()
    variant_dir: str = setting()


@dataclass
class DataConfig:
    dir: str = setting()
    source: str = one_of("auto", "mirrors", "packaged")
    mirrors: list[str] = setting()
    files: dict[str, FileSpec] = setting()
    connect_timeout: float = in_range(low=0, low_open=True)
    read_timeout: float = in_range(low=0, low_open=True)
    retries: int = in_range(low=0, high=10)
    backoff: float = in_range(low=0)
    val_fraction: float = in_range(low=0, high=1, low_open=True, high_open=True)
    split_seed: int = in_range(low=0)
    packaged_test_fraction: float = in_range(low=0, high=1, low_open=True, high_open=True)


@dataclass
class ModelConfig:
    name: str = setting(pattern="name")  # results/<name>/: conf/model/<name>.yaml's own
    # The names of pipeline.heads' OUTPUTS and LOSSES, pipeline.activations' ACTIVATIONS and
    # pipeline.mlp's INITS (tests/test_config.py checks they agree; importing them here would
    # make every stage, download included, depend on the model's code).
    output: str = one_of("softmax", "identity")
    loss: str = one_of("squared_error", "cross_entropy")
    bias: bool = setting()
    hidden: Optional[int] = setting(range=(1, None, False, False), optional=True)  # null: no hidden layer
    activation: str = one_of("relu", "sigmoid", "tanh")
    init: str = one_of("auto", "he", "glorot")


@dataclass
class OptimConfig:
    lr: float = in_range(low=0, low_open=True)
    batch_size: int = in_range(low=1)
    epochs: int = in_range(low=1)
    seed: int = in_range(low=0)
    init: str = one_of("zeros", "ones", "normal")
    init_scale: float = in_range(low=0)
    weight_decay: float = in_range(low=0)


@dataclass
class TrackingConfig:
    enabled: bool = setting()
    uri: str = setting()
    experiment: str = setting()
    log_every: int = in_range(low=1)
    snapshot_every: int = in_range(low=0)
    register: bool = setting()


@dataclass
class DivergenceConfig:
    factor: float = in_range(low=1, low_open=True)
    fatal: bool = setting()


# --- one schema per stage ----------------------------------------------------------------


@dataclass
class DownloadConfig:
    paths: PathsConfig = group(PathsConfig)
    data: DataConfig = group(DataConfig)


@dataclass
class TrainConfig:
    paths: PathsConfig = group(PathsConfig)
    data: DataConfig = group(DataConfig)
    model: ModelConfig = group(ModelConfig)
    optim: OptimConfig = group(OptimConfig)
    tracking: TrackingConfig = group(TrackingConfig)
    divergence: DivergenceConfig = group(DivergenceConfig)
    dtype: str = one_of("float32", "float64")
    out_dir: str = setting()


@dataclass
class EvaluateConfig:
    paths: PathsConfig = group(PathsConfig)
    data: DataConfig = group(DataConfig)
    model: ModelConfig = group(ModelConfig)
    tracking: TrackingConfig = group(TrackingConfig)
    train_dir: str = setting()
    mistakes_shown: int = in_range(low=1, high=200)


@dataclass
class GradcheckConfig:
    model: ModelConfig = group(ModelConfig)
    seed: int = in_range(low=0)
    batch_size: int = in_range(low=1)
    n_inputs: int = in_range(low=1)
    n_outputs: int = in_range(low=1)
    shown: int = in_range(low=0)
    eps: float = in_range(low=0, low_open=True)
    tolerance: float = in_range(low=0)
    weight_decay: float = in_range(low=0)


@dataclass
class PredictConfig:
    tracking: TrackingConfig = group(TrackingConfig)
    # Files, folders or glob patterns, one or a list.
    images: Any = setting()
    trained: str = setting()
    # The variant of a folder not named after one; checked against pipeline.model's table.
    variant: Optional[str] = setting()
    top: int = in_range(low=1, high=10)


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
    """Check every field of ``cfg`` against ``schema``; return ``cfg``.

    Raises ConfigError naming every bad key as ``key=value: what is allowed``: a key with no value
    in conf/, a key the schema does not know (added with ``+key=...``), a value out of its range or
    choices, a float that is NaN or infinite.
    """
    problems = list(_problems(cfg, schema, prefix=""))
    if len(problems) == 1:
        raise ConfigError(f"invalid config: {problems[0]}")
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))
    return cfg


def _problems(node, schema, prefix):
    names = {f.name for f in fields(schema)}
    # ``hydra`` is there only when composed with return_hydra_config=True: never in a stage.
    for key in [key for key in node if key not in names and not (key == "hydra" and not prefix)]:
        yield f"{prefix}{key}: not a setting of this stage"
    for f in fields(schema):
        key = f"{prefix}{f.name}"
        if OmegaConf.is_missing(node, f.name):
            yield f"{key}: no value; every setting is given in conf/ (the schema holds none)"
        elif is_dataclass(f.type):
            yield from _problems(node[f.name], f.type, f"{key}.")
        elif f.name == "files" and prefix.endswith("data."):
            for name, spec in node[f.name].items():
                yield from _problems(spec, FileSpec, f"{key}.{name}.")
        elif f.metadata or f.type is float:  # the others are not read: paths.variant_dir names a
            value = node[f.name]  # model, which the download stage has none of
            problem = _field_problem(value, f.type, f.metadata)
            if problem:
                yield f"{key}={value!r}: {problem}"


def _field_problem(value, kind, rules):
    if value is None and rules.get("optional"):
        return None
    if rules.get("pattern") == "name" and not (isinstance(value, str) and NAME.fullmatch(value)):
        return "must be a name of lowercase letters, digits and _ (it names a results folder)"
    if "one_of" in rules and value not in rules["one_of"]:
        return "must be one of " + ", ".join(rules["one_of"])
    low, high, low_open, high_open = rules.get("range", (None, None, False, False))
    allowed = _describe_range(low, high, low_open, high_open) if "range" in rules else ""
    if kind is float and not (isinstance(value, (int, float)) and math.isfinite(value)):
        return f"must be a finite number {allowed}".rstrip()
    if "range" in rules:
        # Written as "inside" tests, so that a NaN (every comparison False) is outside.
        above = low is None or (value > low if low_open else value >= low)
        below = high is None or (value < high if high_open else value <= high)
        if not (above and below):
            return f"must be {allowed}"
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
