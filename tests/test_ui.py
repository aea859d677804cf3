"""The MLflow UI over a store the pipeline wrote, as a user sees it: `mlflow server` on 127.0.0.1
and headless Chromium (tests/browser.py). Screenshots are kept in the session's `screenshots`
folder (pytest's temporary directory)."""

import json
import os
import subprocess
import sys

import pytest

from tests.browser import mlflow_server
from tests.paths import REPO_ROOT


@pytest.fixture(scope="module")
def trained_store(data_dir, tmp_path_factory):
    """An MLflow store with one softmax run of `python -m pipeline.train`, two epochs."""
    folder = tmp_path_factory.mktemp("ui_store")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    out = folder / "results"
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.train", "model=softmax", "optim.epochs=2", "optim.lr=0.5",
         f"data.dir={data_dir}", f"out_dir={out}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "MLFLOW_TRACKING_URI": uri},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = json.loads((out / "mlflow_run.json").read_text())
    return uri, folder, run["experiment_id"], run["run_id"]


@pytest.mark.slow
def test_a_run_page_shows_the_run_and_its_W_picture(trained_store, browser):
    uri, folder, experiment_id, run_id = trained_store
    with mlflow_server(uri, folder / "mlflow_server.log") as url:
        run_page = f"{url}/#/experiments/{experiment_id}/runs/{run_id}"

        # Model-training mode: the breadcrumb says Runs (GenAI mode would say Evaluations).
        text = browser.open(f"{run_page}?workflowType=machine_learning", "softmax lr=0.5 bs=32", "Overview",
                            timeout=120, shot="run_overview")
        assert "Evaluations" not in text

        # The W card (image key W, in the last section "Model metrics") renders once scrolled into
        # view; the picture it loads is the W snapshot at the slider's step.
        browser.open(f"{run_page}/model-metrics?workflowType=machine_learning", "Model metrics", timeout=120)
        browser.wait_until(lambda: browser.scroll_to("Model metrics", last=True) and browser.scroll_to("W", last=True)
                           and w_pictures(browser), timeout=120, shot="run_W")
        (src, width, height), = w_pictures(browser)
        assert width > 100 and height > 50, (src, width, height)


@pytest.mark.slow
def test_the_runs_table_links_the_runs_model_in_its_models_column(trained_store, browser):
    uri, folder, experiment_id, run_id = trained_store
    with mlflow_server(uri, folder / "mlflow_server_models.log") as url:
        browser.open(f"{url}/#/experiments/{experiment_id}/runs?workflowType=machine_learning", "softmax lr=0.5 bs=32", "Models",
                     timeout=120)
        browser.dismiss_overlays()
        table = " ".join(browser.wait_for("Models", shot="runs_models").split())
        # Columns: Run Name, Created, Dataset, Duration, Source, Models; the run's model is called "model".
        assert "pipeline.train model" in table, table[:1000]
        links = browser.driver.execute_script("return [...document.querySelectorAll('a')].map(a => [a.innerText.trim(), a.href])")
        assert any(text == "model" and "/models/m-" in href for text, href in links), links


def w_pictures(browser):
    """The loaded pictures of image key W (files images/W+step+<step>+...)."""
    return [image for image in browser.images() if "images%2FW%2Bstep%2B" in image[0]]


@pytest.mark.slow
def test_the_registry_page_shows_each_variant_with_its_champion(mlflow_store, browser, tmp_path):
    from pipeline.registry import register_best
    from tests.make_registry_picture import registry_picture
    from tests.model_helpers import logged_run

    first = logged_run(mlflow_store, "softmax", 0.90)
    register_best(mlflow_store.uri, run_ids=[first])
    better, linear = logged_run(mlflow_store, "softmax", 0.93), logged_run(mlflow_store, "linear", 0.80)
    register_best(mlflow_store.uri, run_ids=[better, linear])

    with mlflow_server(mlflow_store.uri, tmp_path / "mlflow_server.log") as url:
        browser.open(f"{url}/#/models?workflowType=machine_learning", "handgrad-softmax", "handgrad-linear", timeout=120)
        browser.dismiss_overlays()
        rows = " ".join(browser.wait_for("Aliased versions", shot="registry").split())
        assert "handgrad-linear Version 1 @ champion : Version 1" in rows
        assert "handgrad-softmax Version 2 @ champion : Version 2" in rows

        browser.open(f"{url}/#/models/handgrad-softmax?workflowType=machine_learning", "Version 2", "Version 1", timeout=120)
        browser.dismiss_overlays()
        versions = " ".join(browser.wait_for("Aliases", shot="registry_softmax").split())
        assert "Version 2" in versions and "val_accuracy : 0.93" in versions and "val_accuracy : 0.9 " in versions
        assert versions.index("@ champion") < versions.index("Version 1")  # on version 2's row

    size = registry_picture(mlflow_store.uri, tmp_path / "registry.png")  # the README's picture, as it is made
    assert size[0] > 800 and size[1] > 600
