"""Fixtures shared by the test modules."""

import functools
import gc
import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

# One BLAS thread a process: pytest-xdist already keeps every core busy, and OpenBLAS's extra
# threads spin waiting for work on a core another worker needs. Set before numpy is imported
# (stage subprocesses inherit it); a value in the environment wins.
for _threads in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_threads, "1")

import numpy as np  # noqa: E402
import pytest

from pipeline.data import PROVENANCE_FILE, TEST_FILES, TRAIN_FILES
from pipeline.idx import write_idx
from tests.helpers import made_once, sweep
from tests.paths import CONF_DIR

# Tests talk to 127.0.0.1 only; MLflow would otherwise try to reach its telemetry servers
# (subprocesses inherit this too).
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
# Hypothesis loads every installed package's plugin on import: only trio (selenium's) has one,
# for tests that use trio, and importing it costs each worker more than test_heads' properties.
os.environ.setdefault("HYPOTHESIS_NO_PLUGINS", "1")


# Python's full garbage collections scan every live object, and it runs one more as it exits.
# Collection imports the test modules and what they use (MLflow, Hydra, pandas: ~10^6 objects,
# next to no garbage) with the collector paused; then they are frozen out of its scans, and at the
# end everything is. Hydra and OmegaConf allocate thousands of small containers a composition: a
# larger youngest generation collects them less often.
def pytest_collectstart(collector):
    if isinstance(collector, pytest.Session):
        gc.disable()


def pytest_collection_finish(session):
    gc.enable()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def pytest_unconfigure(config):
    gc.freeze()


# --- config ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def compose_config():
    """``compose_config(stage, overrides)``: the stage's config composed from conf/<stage>.yaml as
    its app composes it (not yet validated). ``hydra_config=True`` keeps the ``hydra`` node (sweep
    dir, job number, launcher); ``config_dir`` composes from another folder (a test's own conf/)."""
    import copy

    from hydra import compose, initialize_config_dir
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.core.override_parser.overrides_parser import OverridesParser

    import pipeline.config  # noqa: F401  registers the stage schemas conf/ starts from

    def composed(stage, overrides, hydra_config=False, config_dir=CONF_DIR):
        with initialize_config_dir(config_dir=str(config_dir), version_base=None):
            return compose(config_name=stage, overrides=list(overrides), return_hydra_config=hydra_config)

    # Each composition is all of Hydra's loading and merging again, and most tests differ only in
    # values (a path, a learning rate). So conf/'s compositions by the overrides that choose files
    # (model=..., hydra...) are made once; the value overrides are then applied to a copy by
    # the function Hydra's own composition ends with, in their order, with its errors.
    # tests/test_config.py checks that both ways give the same config and the same error.
    made = {}

    def compose_stage(stage, overrides=(), hydra_config=False, config_dir=CONF_DIR):
        # Not these: the hydra node (it records the working directory), and another conf folder or
        # search path (a test's own conf files, which it may rewrite between compositions).
        if hydra_config or config_dir != CONF_DIR or any("searchpath" in line for line in overrides):
            return composed(stage, overrides, hydra_config, config_dir)
        parsed = OverridesParser.create().parse_overrides(list(overrides))
        values, choices = [], ()
        for override in parsed:
            if is_value_override(override):
                values.append(override)
            else:
                choices += (override.input_line,)
        if (stage, choices) not in made:
            made[stage, choices] = composed(stage, choices)
        cfg = copy.deepcopy(made[stage, choices])
        ConfigLoaderImpl._apply_overrides_to_config(values, cfg)
        return cfg

    compose_stage.composed = composed  # Hydra's own compose, for that check
    return compose_stage


def is_value_override(override):
    """Whether Hydra applies ``override`` to the composed config rather than to its choice of
    files (hydra/_internal/defaults_list.py, Overrides): not a group (a folder of conf/) unless
    its value is a dict; not Hydra's own node, not a sweep."""
    if override.is_hydra_override() or override.is_sweep_override() or override.package is not None:
        return False
    return isinstance(override.value(), dict) or not (CONF_DIR / override.key_or_group).is_dir()


# --- MLflow ----------------------------------------------------------------------------------


@dataclass
class MlflowStore:
    uri: str
    path: Path  # the sqlite file; artifacts go to mlruns/ next to it
    client: object  # mlflow.MlflowClient

    def runs(self):
        """Every run in the store, in any experiment (newest first)."""
        from mlflow.entities import ViewType

        experiments = [e.experiment_id for e in self.client.search_experiments(view_type=ViewType.ALL)]
        return self.client.search_runs(experiments, run_view_type=ViewType.ALL)


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory, pytestconfig):
    """An empty MLflow sqlite database, made once: creating one runs MLflow's migrations (seconds,
    most of it sqlite syncing). Kept in pytest's cache (.pytest_cache) for the next session, one
    per MLflow version, whose migrations make the schema; made anew without the cache."""
    from importlib.metadata import version

    cache = getattr(pytestconfig, "cache", None)  # None under -p no:cacheprovider
    cached = cache.mkdir(f"mlflow_template_{version('mlflow')}") / "mlflow.db" if cache else None

    def make(folder):
        if cached and cached.is_file():
            shutil.copyfile(cached, folder / "mlflow.db")
            return
        from mlflow import MlflowClient

        MlflowClient(f"sqlite:///{folder / 'mlflow.db'}").search_experiments()
        if cached:  # written whole, then renamed: a session stopped midway leaves no half a database
            shutil.copyfile(folder / "mlflow.db", cached.with_suffix(".part"))
            cached.with_suffix(".part").replace(cached)

    return made_once(tmp_path_factory, "mlflow_template", make) / "mlflow.db"


@pytest.fixture(scope="session")
def empty_store(mlflow_template):
    """``empty_store(folder)``: a new, empty MLflow store, folder/mlflow.db (a copy of the
    template). For a store shared by a module's tests; a test's own is ``mlflow_store``."""
    import mlflow.store.db.utils
    from mlflow import MlflowClient

    # MLflow opening a store reads its 60-odd migration scripts to learn the latest schema
    # revision, a constant of the installed MLflow; the tests open a store or two each: read once
    # (a private function: where another MLflow has none, nothing is cached).
    latest_revision = getattr(mlflow.store.db.utils, "_get_latest_schema_revision", None)
    if latest_revision is not None and not hasattr(latest_revision, "cache_info"):
        mlflow.store.db.utils._get_latest_schema_revision = functools.cache(latest_revision)

    def make(folder):
        path = folder / "mlflow.db"
        shutil.copyfile(mlflow_template, path)
        uri = f"sqlite:///{path}"
        return MlflowStore(uri, path, MlflowClient(uri, registry_uri=uri))

    return make


@pytest.fixture
def mlflow_store(empty_store, tmp_path, monkeypatch):
    """A fresh, empty MLflow store of this test's own, tmp_path/mlflow.db (a copy of the
    template), which the code under test (and its subprocesses) find through MLFLOW_TRACKING_URI."""
    store = empty_store(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", store.uri)
    return store


@pytest.fixture(autouse=True)
def mlflow_uris_restored(monkeypatch):
    """mlflow.set_tracking_uri/set_registry_uri (predict, reports) also write os.environ, which
    subprocesses of later tests would inherit: each test gets both back as they were."""
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        if name in os.environ:
            monkeypatch.setenv(name, os.environ[name])
        else:  # set, then deleted: monkeypatch records it as absent, and deletes it again at the end
            monkeypatch.setenv(name, "")
            monkeypatch.delenv(name)
    yield
    if "mlflow" in sys.modules:
        import mlflow.tracking._model_registry.utils as registry_utils
        import mlflow.tracking._tracking_service.utils as tracking_utils

        registry_utils._registry_uri = None
        tracking_utils._tracking_uri = None


# --- data --------------------------------------------------------------------------------------

TRAIN_ROWS = 200  # 180 train + 20 validation


def synthetic_digits(n, rng, prototypes):
    """``n`` uint8 images (n, 28, 28) of 10 learnable classes: a class's pixels light up mostly
    where its prototype does, plus noise."""
    labels = rng.permutation(np.arange(n) % 10).astype(np.uint8)
    lit = (prototypes[labels] & (rng.random((n, 784)) < 0.8)) | (rng.random((n, 784)) < 0.05)
    images = (lit * rng.integers(128, 256, (n, 784))).astype(np.uint8)
    return images.reshape(n, 28, 28), labels


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """The synthetic digits (TRAIN_ROWS to train on, 40 to test), as IDX files with their
    provenance.json, in a folder of the module's own."""
    return written_digits(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def session_data_dir(tmp_path_factory):
    """The same digits for the session's fixtures (the browser tests' store); read, never changed."""
    return written_digits(tmp_path_factory.mktemp("session_data"))


def written_digits(folder):
    rng = np.random.default_rng(0)
    prototypes = rng.random((10, 784)) < 0.2
    for files, rows in ((TRAIN_FILES, TRAIN_ROWS), (TEST_FILES, 40)):
        images, labels = synthetic_digits(rows, rng, prototypes)
        write_idx(folder / files[0], images)
        write_idx(folder / files[1], labels)
    digests = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in TRAIN_FILES + TEST_FILES}
    (folder / PROVENANCE_FILE).write_text(json.dumps({"source": "synthetic", "files": digests}))
    return folder


# --- one real sweep, read by the sweep and comparison tests ----------------------------------


@pytest.fixture(scope="session")
def swept(session_data_dir, tmp_path_factory):
    """A finished sweep, made once for all pytest-xdist workers and read only: both variants at a
    sane and a too large rate (the linear one diverges), four jobs on two joblib workers (each
    worker's first job races the other's on the store, its second runs in a process that already
    has it), onto a new store (no database file before: store/mlflow.db), registering each
    variant's best. Its folder: the sweep's multirun/, store/, and ``sweep.json`` (the store's URI,
    the grid's rates, the sweep's exit status and what it printed)."""

    def make(folder):
        (folder / "store").mkdir()
        uri = f"sqlite:///{folder / 'store' / 'mlflow.db'}"
        rates = (0.002, 10)
        result = sweep(folder, session_data_dir, "tracking.register=true", "model=softmax,linear",
                       f"optim.lr={','.join(map(str, rates))}", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                       env={"MLFLOW_TRACKING_URI": uri})
        (folder / "sweep.json").write_text(json.dumps({"uri": uri, "rates": rates, "returncode": result.returncode,
                                                       "stdout": result.stdout, "stderr": result.stderr}))

    return made_once(tmp_path_factory, "swept", make)


# --- a real browser on a real MLflow UI (tests/browser.py) -----------------------------------


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory):
    """Where browser tests keep their screenshots: a test artefact, never committed."""
    return tmp_path_factory.mktemp("screenshots", numbered=False)


@pytest.fixture(scope="session")
def browser(screenshots):
    """Headless Chromium; skipped where it is not installed, except in CI (.ci/run installs it),
    where a missing browser fails rather than silently skipping."""
    from tests.browser import Browser, browser_missing

    reason = browser_missing()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser tests: {reason}")
        pytest.skip(reason)
    with Browser(screenshots) as session:
        yield session
