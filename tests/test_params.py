"""dvc.yaml's ``params:`` against conf/: every config key a DVC stage reads either is in that stage's
params (so that changing it reruns the stage) or is in NOT_OUTPUTS below, with the reason it cannot
change the stage's outputs. A key added to conf/ without that decision fails here. The paths that
dvc.yaml spells out in deps and outs agree with conf/paths/.

Generic over dvc.yaml's stages and matrix and over the files in conf/: a new variant or a new
model setting needs no change here, only the decision for a new key.
"""

import functools
import itertools
import re
import shlex
from pathlib import Path

import pytest
import yaml
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from omegaconf import OmegaConf

import pipeline.config  # noqa: F401  (registers the <stage>_schema configs the stages' defaults name)
from tests.paths import CONF_DIR, REPO_ROOT

# Where a stage reads or writes. dvc.yaml's deps and outs spell these paths out, and DVC reruns a
# stage when they change; test_dvc_paths_agree_with_conf checks that they agree with conf/.
WHERE = "a path: dvc.yaml's deps and outs spell it out (test_dvc_paths_agree_with_conf)"
WHERE_FROM = "where from, not what: each file is checked against its SHA-256 in data.files"
DOWNLOADS = "the download stage's: this stage reads what it wrote, data/mnist (a dep)"

# Keys that cannot change a stage's outputs, per stage (a key covers the keys below it).
NOT_OUTPUTS = {
    "download": {
        "paths.data_dir": WHERE,
        "data.dir": WHERE,
        "paths.variant_dir": "download writes no variant's results",
        "data.mirrors": WHERE_FROM,
        "data.connect_timeout": WHERE_FROM,
        "data.read_timeout": WHERE_FROM,
        "data.retries": WHERE_FROM,
        "data.backoff": WHERE_FROM,
        "data.val_fraction": "the train stage's split: download stores every training row",
        "data.split_seed": "the train stage's split: download stores every training row",
    },
    "train": {
        "paths.data_dir": WHERE,
        "data.dir": WHERE,
        "paths.variant_dir": WHERE,
        "out_dir": WHERE,
        "data.source": DOWNLOADS,
        "data.mirrors": DOWNLOADS,
        "data.files": DOWNLOADS,
        "data.connect_timeout": DOWNLOADS,
        "data.read_timeout": DOWNLOADS,
        "data.retries": DOWNLOADS,
        "data.backoff": DOWNLOADS,
        "data.packaged_test_fraction": DOWNLOADS,
        "tracking.register": "the evaluate stage registers the run's model; training logs it either way",
    },
    "evaluate": {
        "paths.data_dir": WHERE,
        "data.dir": WHERE,
        "paths.variant_dir": WHERE,
        "train_dir": WHERE,
        "data.source": DOWNLOADS,
        "data.mirrors": DOWNLOADS,
        "data.files": DOWNLOADS,
        "data.connect_timeout": DOWNLOADS,
        "data.read_timeout": DOWNLOADS,
        "data.retries": DOWNLOADS,
        "data.backoff": DOWNLOADS,
        "data.packaged_test_fraction": DOWNLOADS,
        "data.val_fraction": "the training rows' split: evaluate reads the test split only",
        "data.split_seed": "the training rows' split: evaluate reads the test split only",
        "tracking.log_every": "how often train logs its loss: evaluate logs its results once",
        "tracking.snapshot_every": "how often train logs W: evaluate logs no W",
    },
}

DVC_YAML = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())


def stage_instances(dvc):
    """(name as DVC shows it, stage body with ${item.*} filled in) for every stage and matrix item."""
    for name, body in dvc["stages"].items():
        matrix = body.get("matrix")
        if not matrix:
            yield name, body
            continue
        for values in itertools.product(*matrix.values()):
            item = dict(zip(matrix, values))
            filled = _fill(body, item)
            del filled["matrix"]
            yield f"{name}@{'-'.join(map(str, values))}", filled


def _fill(node, item):
    if isinstance(node, dict):
        return {_fill(k, item): _fill(v, item) for k, v in node.items()}
    if isinstance(node, list):
        return [_fill(v, item) for v in node]
    if isinstance(node, str):
        return re.sub(r"\$\{item\.(\w+)\}", lambda m: str(item[m[1]]), node)
    return node


INSTANCES = dict(stage_instances(DVC_YAML))


def app_and_overrides(body):
    """``python -m pipeline.train model=linear`` → ("train", ["model=linear"]): conf/train.yaml."""
    words = shlex.split(body["cmd"])
    module = words[words.index("-m") + 1]
    return module.rsplit(".", 1)[1], words[words.index("-m") + 2:]


def flatten(node, prefix=""):
    """{dotted key: leaf}; a list is one leaf, as DVC and Hydra treat it."""
    if isinstance(node, dict):
        return {k: v for key, value in node.items() for k, v in flatten(value, f"{prefix}{key}.").items()}
    return {prefix[:-1]: node}


def key_sources(app, overrides):
    """Each leaf key of the composed config (``hydra`` aside) → (conf file, key in that file) of
    the value it ends up with, in Hydra's merge order; ("command line", key) for a key override."""
    return dict(_key_sources(app, tuple(overrides)))


@functools.lru_cache(maxsize=None)  # several tests read each stage's: worked out once (read-only)
def _key_sources(app, overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        merge_order = GlobalHydra.instance().config_loader().compute_defaults_list(app, overrides, RunMode.RUN)
    sources = {}
    for default in merge_order.defaults:
        path = CONF_DIR / f"{default.config_path}.yaml"
        if default.package.split(".")[0] == "hydra" or not path.is_file():
            continue  # Hydra's own settings, or a schema (which holds no values)
        body = yaml.safe_load(path.read_text()) or {}
        body = {key: value for key, value in body.items() if key not in ("defaults", "hydra")}
        prefix = f"{default.package}." if default.package else ""
        for key in flatten(body):
            sources[prefix + key] = (path.relative_to(REPO_ROOT).as_posix(), key)
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if not (CONF_DIR / key).is_dir():  # model=linear picks a file; optim.lr=0.1 sets a key
            sources[key] = ("command line", key)
    return sources


def composed_keys(compose_config, app, overrides):
    cfg = OmegaConf.to_container(composed(compose_config, app, overrides), resolve=False)
    return set(flatten(cfg))


COMPOSED = {}


def composed(compose_config, app, overrides):
    """A stage's config as conf/ and its dvc.yaml command compose it, composed once (the tests
    only read it)."""
    key = (app, tuple(overrides))
    if key not in COMPOSED:
        COMPOSED[key] = compose_config(app, overrides)
    return COMPOSED[key]


def params_of(body):
    """dvc.yaml ``params:`` as {file: None (the whole file) or [keys]}."""
    params = {}
    for entry in body.get("params", []):
        assert isinstance(entry, dict), f"{entry!r}: name the conf file it is read from"
        params.update(entry)
    return params


def covered(params, file, key):
    if file == "command line":
        return True  # part of the stage's cmd, which DVC tracks
    if file not in params:
        return False
    listed = params[file]
    return listed is None or any(key == k or key.startswith(f"{k}.") for k in listed)


def exemption(stage, key):
    reasons = NOT_OUTPUTS.get(stage.split("@")[0], {})
    return next((reason for k, reason in reasons.items() if key == k or key.startswith(f"{k}.")), None)


def undecided(stage, body, sources):
    """Lines for every key that is neither in the stage's params nor in NOT_OUTPUTS, or both."""
    params, problems = params_of(body), []
    for key, (file, key_in_file) in sorted(sources.items()):
        is_param, reason = covered(params, file, key_in_file), exemption(stage, key)
        if is_param and reason and file != "command line":
            problems.append(f"{key} ({file}): in params and in NOT_OUTPUTS ({reason}): which is it?")
        elif not is_param and not reason:
            problems.append(f"{key} ({file}: {key_in_file}): neither in {stage}'s params in dvc.yaml nor in "
                            f"NOT_OUTPUTS[{stage.split('@')[0]!r}] of tests/test_params.py: can it change the outputs?")
    return problems


DVC_STAGES = sorted(INSTANCES)


def test_dvc_yaml_has_the_stages_this_test_reads():
    assert {name.split("@")[0] for name in DVC_STAGES} == {"download", "train", "evaluate"}
    assert {name for name in DVC_STAGES if "@" in name} >= {"train@softmax", "train@linear", "evaluate@softmax", "evaluate@linear"}


@pytest.mark.parametrize("stage", DVC_STAGES)
def test_every_config_key_of_a_stage_is_a_param_or_declared_not_to_change_its_outputs(stage, compose_config):
    body = INSTANCES[stage]
    app, overrides = app_and_overrides(body)
    sources = key_sources(app, overrides)

    assert set(sources) == composed_keys(compose_config, app, overrides)  # every composed key found in conf/
    problems = undecided(stage, body, sources)
    assert not problems, f"{stage}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("stage", DVC_STAGES)
def test_a_stage_s_params_and_exemptions_name_keys_that_exist(stage):
    body = INSTANCES[stage]
    sources = key_sources(*app_and_overrides(body))
    from_files = {(file, key) for file, key in sources.values()}
    for file, keys in params_of(body).items():
        assert (REPO_ROOT / file).is_file(), f"{stage}: params name {file}, which does not exist"
        assert any(f == file for f, _ in from_files), f"{stage}: {file} is a param but the stage does not read it"
        for listed in keys or []:
            assert any(f == file and (k == listed or k.startswith(f"{listed}.")) for f, k in from_files), \
                f"{stage}: {file}: {listed} is not a key the stage reads from that file"
    for exempt in NOT_OUTPUTS[stage.split("@")[0]]:
        assert any(key == exempt or key.startswith(f"{exempt}.") for key in sources), \
            f"{stage}: NOT_OUTPUTS names {exempt}, which the stage's config does not have"


def test_a_key_dropped_from_the_params_is_caught():
    """What the test above reports when train's params lose data.split_seed (it cannot pass by
    finding nothing to check)."""
    body = INSTANCES["train@softmax"]
    params = [{file: ([k for k in keys if k != "split_seed"] if keys else keys)} for entry in body["params"]
              for file, keys in entry.items()]

    problems = undecided("train@softmax", {**body, "params": params}, key_sources(*app_and_overrides(body)))

    assert problems == [
        "data.split_seed (conf/data/mnist.yaml: split_seed): neither in train@softmax's params in dvc.yaml nor in "
        "NOT_OUTPUTS['train'] of tests/test_params.py: can it change the outputs?"
    ]


# --- paths: written once in conf/paths/, spelt out in dvc.yaml ----------------------------


@pytest.mark.parametrize("stage", DVC_STAGES)
def test_dvc_paths_agree_with_conf(stage, compose_config):
    """Every output of a stage lies in a folder its config names (data.dir, out_dir, train_dir,
    ...), and every such folder is one of its deps or holds its outputs."""
    body = INSTANCES[stage]
    cfg = composed(compose_config, *app_and_overrides(body))
    where = {key: Path(OmegaConf.select(cfg, key)) for key, reason in NOT_OUTPUTS[stage.split("@")[0]].items()
             if reason == WHERE}
    outs = [Path(next(iter(o)) if isinstance(o, dict) else o) for o in body.get("outs", []) + body.get("metrics", [])]
    deps = [Path(d) for d in body.get("deps", [])]

    assert where and outs
    for out in outs:
        assert any(out == folder or out.parent == folder for folder in where.values()), \
            f"{stage}: {out} is in none of the folders its config names: {where}"
    for key, folder in where.items():
        assert folder in deps or any(out == folder or out.parent == folder for out in outs), \
            f"{stage}: {key}={folder} is neither a dep nor where an output goes"
