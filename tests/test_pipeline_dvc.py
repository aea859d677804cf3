"""The DVC pipeline end to end: a real `git clone` of the committed repository, real `dvc repro`
and `dvc exp run`, a real MLflow store at the clone's root. Uncommitted work is not in the clone.

The data is the packaged 5k subset (``data.source=packaged`` in the clone), so no network is
used; one first `dvc repro` is shared by the tests below (those that run DVC again, or change
the clone, each in a copy of it).
"""

import contextlib
import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow import MlflowClient

from pipeline.classifier import scores
from pipeline.files import read_params
from tests.helpers import made_once, quick_start_commands, stage_sources
from tests.model_helpers import real_digits
from tests.paths import REPO_ROOT

VARIANTS = ("softmax", "linear")
STAGES = ("download", *(f"{stage}@{variant}" for stage in ("train", "evaluate") for variant in VARIANTS))
TRAIN_OUTPUTS = ("params.npz", "metrics.json", "history.csv", "timing.json", "mlflow_run.json")
EVALUATE_OUTPUTS = ("test_metrics.json", "per_class.csv", "confusion.csv", "confusion.png", "misclassified.png")
DATA_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
              "t10k-labels-idx1-ubyte.gz", "provenance.json")
# The defaults must train models worth looking at (on the packaged subset: ~90% and ~86%).
LEAST_TEST_ACCURACY = {"softmax": 0.88, "linear": 0.82}

# All on the one worker that makes the shared first repro: spread over workers, each would wait
# idle for it.
pytestmark = pytest.mark.xdist_group("dvc_clone")


class Clone:
    """A clone of the repository and the commands run in it."""

    def __init__(self, root, facts=None):
        self.root = root
        # What the first `dvc repro` ran and wrote: first_run, first_status, first_records and
        # first_test_metrics (see make_first_repro).
        self.facts = facts or {}
        self.__dict__.update(self.facts)
        # What a newcomer's shell has: no store, experiment or DVC state chosen from outside.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
        self.env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{self.env['PATH']}"
        self.env["MLFLOW_DISABLE_TELEMETRY"] = "true"

    @functools.cached_property
    def mlflow(self):
        """A client of the clone's store, made once the store is there: MLflow keeps one store
        object per URI in a process, and one opened before the database file was copied in
        reads runs from it but not their dataset inputs."""
        return MlflowClient(f"sqlite:///{self.root / 'mlflow.db'}")

    def run(self, *command, env=None):
        result = subprocess.run(command, cwd=self.root, env={**self.env, **(env or {})}, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def dvc(self, *args):
        return self.run(str(Path(sys.executable).parent / "dvc"), *args)

    def repro(self, *args):
        """`dvc repro`; returns the names of the stages that ran."""
        return stages_run(self.dvc("repro", *args))

    def read_json(self, path):
        return json.loads((self.root / path).read_text())

    def commit(self, message):
        self.run("git", "add", "--all")
        self.run("git", "-c", "user.name=test", "-c", "user.email=test@example.com", "commit", "--quiet", "-m", message)

    def edit_yaml(self, path, key, value):
        """Set one top-level key of a conf file, keeping its other lines and comments."""
        file = self.root / path
        text, count = re.subn(rf"^{key}:.*$", f"{key}: {value}", file.read_text(), flags=re.M)
        assert count == 1
        file.write_text(text)


def stages_run(printed):
    """The names of the stages a DVC command's output says it ran."""
    return re.findall(r"^Running stage '([^']+)':", printed, flags=re.M)


def load_model(uri, clone, monkeypatch):
    """The pyfunc at ``uri`` in the clone's store, as a process started in the clone finds it."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{clone.root / 'mlflow.db'}")
    return mlflow.pyfunc.load_model(uri)


FIRST_REPRO = "first_repro.json"  # beside the shared clone: what its first repro did and wrote


@pytest.fixture(scope="session")
def clone(tmp_path_factory, mlflow_template):
    """The fresh clone after its first `dvc repro`, made once per session (once in all, under
    pytest-xdist: conftest's ``made_once``) and shared by the tests that only read it; a test that
    runs DVC in it or changes it takes a ``workspace`` copy."""
    folder = made_once(tmp_path_factory, "dvc_clone", lambda folder: (folder / FIRST_REPRO).write_text(
        json.dumps(make_first_repro(folder / "handgrad", mlflow_template))))
    return Clone(folder / "handgrad", json.loads((folder / FIRST_REPRO).read_text()))


def make_first_repro(root, mlflow_template):
    """A fresh clone in ``root``, offline (packaged data), after its first `dvc repro`, then
    committed as the README says; what that repro ran and wrote."""
    subprocess.run(["git", "clone", "--quiet", str(REPO_ROOT), str(root)], check=True)
    clone = Clone(root)
    clone.edit_yaml("conf/data/mnist.yaml", "source", "packaged")
    clone.commit("offline: packaged data")
    clone.dvc("config", "--local", "core.check_update", "false")  # no request to updater.dvc.org
    # An empty MLflow database (creating one runs migrations, seconds); it still lands where a
    # newcomer's would: mlflow.db at the root of the clone, which the stages find on their own.
    shutil.copyfile(mlflow_template, root / "mlflow.db")
    facts = {"first_run": clone.repro(),
             "first_status": clone.run("git", "status", "--porcelain", "--ignored", "--untracked-files=all"),
             "first_records": {v: clone.read_json(f"results/{v}/mlflow_run.json") for v in VARIANTS},
             "first_test_metrics": {v: clone.read_json(f"results/{v}/test_metrics.json")["test"] for v in VARIANTS}}
    clone.commit("baseline: the first dvc repro")  # as the README says, for diffs and experiments
    return facts


@pytest.fixture
def workspace(clone, tmp_path):
    """This test's own copy of the repro'd clone (git, DVC cache, outputs, MLflow store), as if the
    user had moved the folder: copying is much cheaper than another repro. DVC's .dvc/tmp (locks)
    is left behind; the store's absolute artifact paths are moved to the copy's mlruns/."""
    root = tmp_path / "handgrad"
    shutil.copytree(clone.root, root, symlinks=True, ignore=lambda folder, names: ["tmp"] if folder.endswith("/.dvc") else [])
    moved(root / "mlflow.db", str(clone.root), str(root))
    return Clone(root, clone.facts)


def moved(database, old, new):
    """Every text value of the sqlite ``database`` that names path ``old`` made to name ``new``."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(database)) as db, db:
        columns = [(table, column[1]) for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
                   for column in db.execute(f'PRAGMA table_info("{table}")').fetchall()
                   if any(kind in column[2].upper() for kind in ("CHAR", "TEXT", "CLOB", "JSON"))]
        for table, column in columns:
            db.execute(f'UPDATE "{table}" SET "{column}" = replace("{column}", ?, ?) WHERE instr("{column}", ?)', (old, new, old))
        left = {(table, column) for table, column in columns
                if db.execute(f'SELECT 1 FROM "{table}" WHERE instr("{column}", ?) LIMIT 1', (old,)).fetchone()}
    assert not left, left


def test_stage_deps_are_exactly_the_modules_each_stage_imports():
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    for stage, spec in stages.items():
        listed = {dep for dep in spec["deps"] if dep.startswith("pipeline/")}
        assert listed == stage_sources(stage), stage
        assert spec["cmd"].startswith(f"python -m pipeline.{stage}")


@pytest.mark.slow
def test_first_repro_runs_every_stage_and_writes_every_output(clone):
    assert sorted(clone.first_run) == sorted(STAGES)
    assert sorted(p.name for p in (clone.root / "data" / "mnist").iterdir()) == sorted(DATA_FILES)
    assert clone.read_json("data/mnist/provenance.json")["source"] == "packaged"
    for variant in VARIANTS:
        results = clone.root / "results" / variant
        assert {p.name for p in results.iterdir()} >= {*TRAIN_OUTPUTS, *EVALUATE_OUTPUTS}
        assert np.load(results / "params.npz", allow_pickle=False)["W"].shape == (10, 784)
        history = (results / "history.csv").read_text().splitlines()
        assert history[0].startswith("epoch,train_loss,") and len(history) == 1 + 10
        assert len((results / "confusion.csv").read_text().splitlines()) == 1 + 1000
        assert clone.first_test_metrics[variant]["digits"] == 1000
        assert clone.first_test_metrics[variant]["accuracy"] >= LEAST_TEST_ACCURACY[variant]


@pytest.mark.slow
def test_hydra_and_mlflow_leave_nothing_but_the_store_behind(clone):
    """Besides DVC's outputs and the MLflow store (both gitignored), nothing new: no outputs/,
    no .hydra/, no log files."""
    new = {line[3:] for line in clone.first_status.splitlines()}
    expected_prefixes = ("data/", "results/", "mlruns/", ".dvc/tmp/", ".dvc/cache/", ".dvc/config.local")
    assert {path for path in new if not path.startswith(expected_prefixes)} == {"dvc.lock", "mlflow.db", "mlflow.db.lock"}
    assert not [path for path in new if path.endswith(".log") or "/.hydra/" in path or "outputs/" in path]


@pytest.mark.slow
def test_each_variant_is_one_mlflow_run_with_training_and_test_results(clone, monkeypatch):
    for variant in VARIANTS:
        record = clone.first_records[variant]
        run = clone.mlflow.get_run(record["run_id"])
        assert record["tracking_uri"] == f"sqlite:///{clone.root / 'mlflow.db'}"
        assert run.info.status == "FINISHED"
        assert run.data.params["model.name"] == variant
        optim = yaml.safe_load((clone.root / f"conf/optim/{variant}.yaml").read_text())
        assert float(run.data.params["optim.lr"]) == optim["lr"]
        assert run.data.tags["variant"] == variant
        val_accuracy = clone.mlflow.get_metric_history(run.info.run_id, "score/val_accuracy")
        assert [m.step for m in val_accuracy] == list(range(1, 11))
        assert len(clone.mlflow.get_metric_history(run.info.run_id, "loss/train_step")) > 10
        assert run.data.metrics["test_accuracy"] == clone.first_test_metrics[variant]["accuracy"]
        assert run.data.metrics["test_loss"] == pytest.approx(clone.first_test_metrics[variant]["loss"])
        weights = [a.path for a in clone.mlflow.list_artifacts(run.info.run_id, "weights")]
        assert weights == [f"weights/W_epoch_{epoch:04d}.npy" for epoch in range(1, 11)]
        evaluation = [a.path for a in clone.mlflow.list_artifacts(run.info.run_id, "evaluation")]
        assert evaluation == sorted(f"evaluation/{name}" for name in (*EVALUATE_OUTPUTS, "per_digit.json"))
        [dataset, tested] = sorted(run.inputs.dataset_inputs, key=lambda d: d.tags[0].value, reverse=True)
        assert (dataset.dataset.name, dataset.tags[0].value, tested.tags[0].value) == ("mnist-packaged", "training", "testing")
        # The Models column: the run's one logged model, which answers as params.npz does.
        [output] = run.outputs.model_outputs
        [model] = [m for m in clone.mlflow.search_logged_models([run.info.experiment_id]) if m.source_run_id == run.info.run_id]
        assert (model.model_id, model.name, model.tags["variant"]) == (output.model_id, "model", variant)
        images = real_digits()[0][:100]
        answer = load_model(f"models:/{model.model_id}", clone, monkeypatch).predict(images.astype(np.float32))["scores"]
        params, fields = read_params(clone.root / "results" / variant / "params.npz")
        np.testing.assert_array_equal(answer, scores(params, images, fields))


@pytest.mark.slow
def test_second_repro_runs_nothing(workspace):
    printed = workspace.dvc("repro")
    assert stages_run(printed) == []
    assert "Data and pipelines are up to date." in printed


@pytest.mark.slow
def test_metrics_and_plots_show_both_variants(workspace):
    metrics = json.loads(workspace.dvc("metrics", "show", "--json"))
    [current] = metrics.values()  # keyed by revision: "" is the workspace
    shown = current["data"]
    for variant in VARIANTS:
        test = shown[f"results/{variant}/test_metrics.json"]["data"]["test"]
        assert test == workspace.read_json(f"results/{variant}/test_metrics.json")["test"]
        assert shown[f"results/{variant}/metrics.json"]["data"]["val"]["accuracy"] > 0.8
        assert "seconds" not in shown[f"results/{variant}/metrics.json"]["data"]  # timings: not a metric
        assert workspace.read_json(f"results/{variant}/timing.json")["seconds"]["train"] > 0
    plots = json.loads(workspace.dvc("plots", "show", "--json"))["data"]
    assert {"loss", "val_accuracy", "confusion_softmax", "confusion_linear", "recall_softmax", "recall_linear",
            "results/softmax/misclassified.png", "results/linear/confusion.png"} <= set(plots)
    confusion_rows = plots["confusion_linear"][0]["content"]["data"]["values"]
    assert len(confusion_rows) == 1000 and set(confusion_rows[0]) >= {"actual", "predicted"}


@pytest.mark.slow
def test_changing_one_variants_lr_reruns_only_its_train_and_evaluate(workspace):
    default_lr = yaml.safe_load((REPO_ROOT / "conf/optim/linear.yaml").read_text())["lr"]
    workspace.edit_yaml("conf/optim/linear.yaml", "lr", 0.002)
    assert sorted(workspace.repro()) == ["evaluate@linear", "train@linear"]

    record = workspace.read_json("results/linear/mlflow_run.json")
    assert record["run_id"] != workspace.first_records["linear"]["run_id"]
    run = workspace.mlflow.get_run(record["run_id"])
    assert run.data.params["optim.lr"] == "0.002"
    test_metrics = workspace.read_json("results/linear/test_metrics.json")["test"]
    assert run.data.metrics["test_accuracy"] == test_metrics["accuracy"]
    lr = json.loads(workspace.dvc("params", "diff", "--json"))["conf/optim/linear.yaml"]["lr"]
    assert (lr["old"], lr["new"]) == (default_lr, 0.002)
    loss = json.loads(workspace.dvc("metrics", "diff", "--json"))["results/linear/test_metrics.json"]["test.loss"]
    assert (loss["old"], loss["new"]) == (workspace.first_test_metrics["linear"]["loss"], test_metrics["loss"])
    assert workspace.repro() == []
    workspace.commit("linear: lr 0.002")


@pytest.mark.slow
def test_an_experiment_trains_with_the_values_it_records(workspace):
    """In a temporary copy of the repository, as queued experiments run: its MLflow run must still
    land in the store at the root."""
    output = workspace.dvc("exp", "run", "--temp", "-S", "conf/optim/softmax.yaml:lr=0.25", "-n", "softmax-lr-0.25")
    assert sorted(stages_run(output)) == ["evaluate@softmax", "train@softmax"]

    [baseline] = json.loads(workspace.dvc("exp", "show", "--json"))[-1:]  # the commit, with its experiments
    [experiment] = [e for e in baseline["experiments"] if e["name"] == "softmax-lr-0.25"]
    recorded = experiment["revs"][0]["data"]
    assert recorded["params"]["conf/optim/softmax.yaml"]["data"]["lr"] == 0.25
    test_accuracy = recorded["metrics"]["results/softmax/test_metrics.json"]["data"]["test"]["accuracy"]

    [run] = workspace.mlflow.search_runs(
        [workspace.first_records["softmax"]["experiment_id"]], "tags.`dvc.exp_name` = 'softmax-lr-0.25'"
    )
    assert run.data.params["optim.lr"] == "0.25"
    assert run.data.params["model.name"] == "softmax"
    assert run.data.metrics["test_accuracy"] == test_accuracy
    assert run.info.run_name == "softmax lr=0.25 bs=32"
    assert workspace.read_json("results/softmax/mlflow_run.json") == workspace.first_records["softmax"]  # workspace untouched

    # The README's `dvc exp show`, in a 120-column terminal: the learning rate and the test
    # accuracy, no hashes, no timings, nothing cut off.
    shown = workspace.run(*readme_exp_show(), "--no-pager", env={"COLUMNS": "120"})
    header = [line for line in shown.splitlines() if "Experiment" in line][0].split()
    assert header == ["Experiment", "results/softmax/test_metrics.json:test.accuracy", "conf/optim/softmax.yaml:lr"]
    assert max(map(len, shown.splitlines())) <= 120
    assert re.search(r"\[softmax-lr-0\.25\]\s+" + re.escape(f"{test_accuracy:g}") + r"\s+0\.25\b", shown)


def readme_exp_show():
    """The `dvc exp show` command of the README's experiment walkthrough, as arguments."""
    readme = (REPO_ROOT / "README.md").read_text()
    [line] = [line for line in readme.splitlines() if line.startswith("dvc exp show ")]
    return [str(Path(sys.executable).parent / "dvc"), *shlex.split(line.split("  #")[0])[1:]]


@pytest.mark.slow
def test_asking_for_registration_reruns_only_evaluate_which_registers_each_variants_run(workspace):
    assert workspace.mlflow.search_registered_models() == []  # not by default
    workspace.edit_yaml("conf/tracking/mlflow.yaml", "register", "true")
    assert sorted(workspace.repro()) == ["evaluate@linear", "evaluate@softmax"]
    for variant in VARIANTS:
        champion = workspace.mlflow.get_model_version_by_alias(f"handgrad-{variant}", "champion")
        assert champion.run_id == workspace.read_json(f"results/{variant}/mlflow_run.json")["run_id"]
        assert float(champion.tags["val_accuracy"]) == workspace.read_json(f"results/{variant}/metrics.json")["val"]["accuracy"]
    assert workspace.repro() == []
    workspace.commit("register the pipeline's runs")


def test_the_readme_quick_start_runs_the_repro_tested_here():
    assert quick_start_commands()[0].endswith(" && dvc repro")


@pytest.mark.slow
def test_editing_evaluate_or_the_sweep_callback_leaves_training_up_to_date(workspace):
    """train imports neither: a comment appended to either changes only the evaluate stages."""
    assert json.loads(workspace.dvc("status", "--json")) == {}
    try:
        for module in ("pipeline/evaluate.py", "experiments/sweep.py"):
            with open(workspace.root / module, "a") as f:
                f.write("# a comment that changes nothing\n")
        changed = json.loads(workspace.dvc("status", "--json"))
        assert sorted(changed) == ["evaluate@linear", "evaluate@softmax"]
        assert changed["evaluate@softmax"] == [{"changed deps": {"pipeline/evaluate.py": "modified"}}]
    finally:
        workspace.run("git", "checkout", "--", "pipeline/evaluate.py", "experiments/sweep.py")
    assert json.loads(workspace.dvc("status", "--json")) == {}
