"""The MLflow UI over a store the pipeline wrote, as a user sees it: the README's
`python -m experiments.ui` on 127.0.0.1 and headless Chromium (tests/browser.py). What is asserted
is read from the rendered pages. The screenshots are kept in the session's `screenshots` folder
(pytest's temporary directory), one per page, also when an assertion fails."""

import importlib
import io
import json
import re
import shutil
from contextlib import redirect_stdout
from types import SimpleNamespace

import numpy as np
import pytest
from mlflow import MlflowClient

from pipeline import tracking
from pipeline.w_picture import weights_picture
from tests.browser import project_ui

PRINTED_UI = "http://127.0.0.1:5000"  # where the stages' links point: a local `mlflow ui`
W_PICTURE = "images%2Fweights~W%2Bstep%2B"  # the address of a picture of image key weights/W
SECTION = re.compile(r"\((\d+)\)")
REGISTERED = "registered"  # the experiment of the registry's runs, apart from the pipeline's
# One UI server and one Chromium for every browser test: on one pytest-xdist worker.
pytestmark = pytest.mark.xdist_group("browser")


def stage(compose_config, module, data_dir, *overrides):
    """The stage ``pipeline.<module>`` run in this process on the synthetic digits, into the store
    MLFLOW_TRACKING_URI names: the one line it prints. (Its command line is the stages' own tests':
    here only what it logs and prints is read.)"""
    config = compose_config(module, [f"data.dir={data_dir}", *overrides])
    printed = io.StringIO()
    with redirect_stdout(printed):
        status = importlib.import_module(f"pipeline.{module}").run(config)
    assert status == 0, printed.getvalue()[-3000:]
    [line] = printed.getvalue().splitlines()
    return line


# Session scope: pytest-xdist may run another module's tests between two of this one's, which
# would tear a module's fixtures down and make them again.
@pytest.fixture(scope="session")
def store(session_data_dir, tmp_path_factory, mlflow_template, compose_config):
    """A store with what the pipeline logs: a softmax run trained (3 epochs) and evaluated, and a
    linear run that diverged; and, in an experiment of their own, registered models: two softmax
    runs (the better one the champion) and a linear one. Returns (uri, folder, experiment id,
    softmax run id, the link the train stage printed)."""
    from pipeline.registry import register_best
    from tests.model_helpers import logged_run

    folder = tmp_path_factory.mktemp("ui_store")
    shutil.copyfile(mlflow_template, folder / "mlflow.db")  # migrated once for the session
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    softmax = folder / "softmax"
    data_dir = session_data_dir

    with pytest.MonkeyPatch.context() as patch:  # the stages' store; logging a model sets the process's store URIs
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.setenv("MLFLOW_REGISTRY_URI", uri)
        line = stage(compose_config, "train", data_dir, "model=softmax", "optim.epochs=3", "optim.lr=0.5", f"out_dir={softmax}")
        stage(compose_config, "evaluate", data_dir, "model=softmax", f"train_dir={softmax}")
        stage(compose_config, "train", data_dir, "model=linear", "optim.lr=10", f"out_dir={folder / 'linear'}")
        run = json.loads((softmax / "mlflow_run.json").read_text())
        registry = SimpleNamespace(uri=uri, client=MlflowClient(uri, registry_uri=uri))
        first = logged_run(registry, "softmax", 0.90, experiment=REGISTERED)
        register_best(uri, run_ids=[first])
        better = logged_run(registry, "softmax", 0.93, experiment=REGISTERED)
        register_best(uri, run_ids=[better, logged_run(registry, "linear", 0.80, experiment=REGISTERED)])
        import mlflow

        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
    return uri, folder, run["experiment_id"], run["run_id"], line.rsplit(" ", 1)[1]


@pytest.fixture(scope="session")
def ui(store):
    """The UI's address: one `python -m experiments.ui` over the store, for all of this module's tests."""
    with project_ui(store[0], store[1] / "ui_server.log") as url:
        yield url


def sections(text):
    """The chart sections of a rendered page, in order: each shows as its name, then its count
    of charts in parentheses, then its "Add chart" button."""
    lines = [line.strip() for line in text.splitlines()]
    return [name for name, count, button in zip(lines, lines[1:], lines[2:]) if SECTION.fullmatch(count) and button == "Add chart"]


def open_page(browser, url, *texts, shot):
    """Open ``url``, wait for ``texts`` and the last section's "Add section" button, assistant
    panel closed; the page's text."""
    browser.open(url, *texts, "Add section", timeout=120)
    browser.close_assistant()
    return browser.wait_for(*texts, shot=shot)


def logged_picture(store, run_id, step, thumbnail=False):
    """The picture of W the run logged at ``step`` (or the thumbnail MLflow made of it), RGB."""
    from PIL import Image

    uri, folder, *_ = store
    client = MlflowClient(uri)
    ending = "+compressed.webp" if thumbnail else ".png"
    [path] = [a.path for a in client.list_artifacts(run_id, "images")
              if a.path.startswith(f"images/weights~W+step+{step}+") and a.path.endswith(ending)]
    return np.asarray(Image.open(client.download_artifacts(run_id, path, str(folder / "download"))).convert("RGB"))


def thumbnail(picture):
    """The copy of ``picture`` MLflow's image card shows: scaled to 256 pixels, saved as WebP."""
    import io

    from mlflow.tracking.multimedia import compress_image_size
    from PIL import Image

    buffer = io.BytesIO()
    compress_image_size(Image.fromarray(picture)).save(buffer, format="webp")
    return np.asarray(Image.open(buffer).convert("RGB"))


def w_picture_shown(browser):
    """Scroll to the weights section until its card has loaded the picture at the slider's step."""
    browser.scroll_to("weights", last=True)
    return browser.show_image(W_PICTURE)


@pytest.mark.slow
def test_the_printed_link_opens_the_run_itself_in_model_training_mode(store, ui, browser):
    *_, run_id, link = store
    assert link.startswith(PRINTED_UI + "/#/experiments/") and f"/runs/{run_id}?workflowType=machine_learning" in link

    text = browser.open(link.replace(PRINTED_UI, ui), "softmax lr=0.5 bs=32", "Overview", "Parameters", timeout=120)
    browser.close_assistant()
    browser.screenshot("run_overview")

    assert "Evaluations" not in text and "Evaluation runs" not in text  # not MLflow's GenAI mode
    assert "mnist-synthetic (" in text  # the data it read, as a dataset
    params = text.split("Parameters (", 1)[1].split("About this run", 1)[0]
    assert "optim.lr" in params and "dtype" in params  # its settings as params, nothing else
    assert not any(name in params for name in ("mirrors", "sha256", "timeout", "tracking.", "out_dir", "data.dir"))


@pytest.mark.slow
def test_a_runs_page_opens_on_the_loss_curves_then_the_accuracy_curves(store, ui, browser):
    uri, _, experiment_id, run_id, _ = store
    text = open_page(browser, tracking.run_page(ui, experiment_id, run_id, tab="model-metrics"),
                     "softmax lr=0.5 bs=32 (loss/train_step)", shot="run_metrics")

    found = sections(text)
    assert found[:2] == ["loss", "score"], found
    assert len(found) == len(set(found)) and "final" not in found and "test" not in found
    # The first screen: the three loss curves, in the window without scrolling (once the charts
    # are laid out: on a loaded machine that comes after their titles' text).
    def loss_curves_in_view():
        return browser.driver.execute_script(
            """return [...document.querySelectorAll('*')].filter(e => e.children.length === 0
                         && /\\(loss\\/(train|train_step|val)\\)$/.test(e.textContent.trim())
                         && e.getBoundingClientRect().bottom <= window.innerHeight).length""") >= 3

    browser.wait_until(loss_curves_in_view, timeout=60, shot="run_metrics_loss_in_view")


@pytest.mark.slow
def test_the_chart_view_opens_on_the_loss_curves_and_shows_W_at_its_first_step(store, ui, browser):
    uri, _, experiment_id, _, _ = store
    text = open_page(browser, tracking.runs_page(ui, experiment_id) + "&compareRunsMode=CHART",
                     "diverged: linear lr=10 bs=32", "softmax lr=0.5 bs=32 (loss/train)", shot="chart_view")

    found = sections(text)
    assert found[:2] == ["loss", "score"] and "weights" in found, found
    browser.wait_until(lambda: w_picture_shown(browser), timeout=120, shot="chart_view_W")
    pictures = [image for image in browser.images() if W_PICTURE in image[0]]
    assert len(pictures) == 2 and all(f"{W_PICTURE}0%2B" in src for src, _, _ in pictures)  # the slider's first step, 0
    check_picture(browser, store, store[3])


@pytest.mark.slow
def test_a_runs_W_card_shows_a_labelled_picture_at_its_first_step(store, ui, browser):
    uri, _, experiment_id, run_id, _ = store
    open_page(browser, tracking.run_page(ui, experiment_id, run_id, tab="model-metrics"), "softmax lr=0.5 bs=32 (loss/val)",
              shot="run_metrics_again")

    browser.wait_until(lambda: w_picture_shown(browser), timeout=120, shot="run_W")
    [(src, width, height)] = [image for image in browser.images() if W_PICTURE in image[0]]
    assert f"{W_PICTURE}0%2B" in src and (width, height) == (256, 216)  # MLflow's 256-pixel copy of it
    check_picture(browser, store, run_id)


def check_picture(browser, store, run_id):
    """The card shows, at the slider's first step, the run's picture of W after its first epoch:
    the pixels the browser rendered are those of the thumbnail logged at step 0 (the picture of
    epoch 1 again), not those of a W of zeros."""
    np.testing.assert_array_equal(logged_picture(store, run_id, 0), logged_picture(store, run_id, 1))
    rendered = browser.image_pixels(f"{W_PICTURE}0%2B", f"run_uuid={run_id}").astype(int)
    assert np.abs(rendered - logged_picture(store, run_id, 0, thumbnail=True)).mean() < 1
    blank = thumbnail(weights_picture(np.zeros((10, 784)), title="W after epoch 1")).astype(int)
    assert rendered.shape == blank.shape and np.abs(rendered - blank).mean() > 5


@pytest.mark.slow
def test_the_runs_table_shows_the_dataset_and_which_runs_diverged(store, ui, browser):
    uri, _, experiment_id, _, _ = store
    browser.open(tracking.runs_page(ui, experiment_id), "diverged: linear lr=10 bs=32", "softmax lr=0.5 bs=32", timeout=120)
    browser.close_assistant()
    text = browser.wait_for("mnist-synthetic (", shot="runs_table")

    rows = text.split("Dataset", 1)[1]
    assert rows.count("mnist-synthetic (") >= 2  # the Dataset column, for both runs
    assert "comparison" not in text


@pytest.mark.slow
def test_the_runs_table_links_the_runs_model_in_its_models_column(store, ui, browser):
    uri, _, experiment_id, _, _ = store
    browser.open(tracking.runs_page(ui, experiment_id), "softmax lr=0.5 bs=32", "Models", timeout=120)
    browser.dismiss_overlays()
    table = " ".join(browser.wait_for("Models", shot="runs_models").split())
    # The softmax run's model is called "model"; the diverged linear run has none.
    assert "model" in table.split("Models", 1)[1], table[:1000]
    links = browser.driver.execute_script("return [...document.querySelectorAll('a')].map(a => [a.innerText.trim(), a.href])")
    assert any(text == "model" and "/models/m-" in href for text, href in links), links


def w_pictures(browser):
    """The loaded pictures of image key W (files images/W+step+<step>+...)."""
    return [image for image in browser.images() if "images%2FW%2Bstep%2B" in image[0]]


@pytest.mark.slow
def test_the_registry_page_shows_each_variant_with_its_champion(ui, browser, tmp_path):
    from tests.make_registry_picture import draw_registry

    browser.open(f"{ui}/#/models?workflowType=machine_learning", "handgrad-softmax", "handgrad-linear", timeout=120)
    browser.dismiss_overlays()
    rows = " ".join(browser.wait_for("Aliased versions", shot="registry").split())
    assert "handgrad-linear Version 1 @ champion : Version 1" in rows
    assert "handgrad-softmax Version 2 @ champion : Version 2" in rows

    browser.open(f"{ui}/#/models/handgrad-softmax?workflowType=machine_learning", "Version 2", "Version 1", timeout=120)
    browser.dismiss_overlays()
    versions = " ".join(browser.wait_for("Aliases", shot="registry_softmax").split())
    assert "Version 2" in versions and "val_accuracy : 0.93" in versions and "val_accuracy : 0.9 " in versions
    assert versions.index("@ champion") < versions.index("Version 1")  # on version 2's row

    size = draw_registry(browser, ui, tmp_path / "registry.png")  # the README's picture, as it is made
    assert size[0] > 800 and size[1] > 600
