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


def w_pictures(browser):
    """The loaded pictures of image key W (files images/W+step+<step>+...)."""
    return [image for image in browser.images() if "images%2FW%2Bstep%2B" in image[0]]
