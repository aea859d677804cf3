"""Fixtures shared by the test modules."""

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

# Tests talk to 127.0.0.1 only; MLflow would otherwise try to reach its telemetry servers
# (subprocesses inherit this too).
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"


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
def mlflow_template(tmp_path_factory):
    """An empty MLflow sqlite database, made once: creating one runs MLflow's migrations (~10 s)."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow_template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def mlflow_store(mlflow_template, tmp_path, monkeypatch):
    """A fresh, empty MLflow store of this test's own, tmp_path/mlflow.db (a copy of the
    template), which the code under test (and its subprocesses) find through MLFLOW_TRACKING_URI."""
    from mlflow import MlflowClient

    path = tmp_path / "mlflow.db"
    shutil.copyfile(mlflow_template, path)
    uri = f"sqlite:///{path}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return MlflowStore(uri, path, MlflowClient(uri))
