"""docs/registry.png: MLflow's Model Registry as a user sees it, in headless Chromium.

    PYTHONPATH=. python tests/make_registry_picture.py                         # the project's mlflow.db
    PYTHONPATH=. python tests/make_registry_picture.py sqlite:////tmp/x/mlflow.db --out /tmp/registry.png

Serves the store with tests/browser.py's ``mlflow_server`` (127.0.0.1 only) and draws, one above
the other: the Registered Models page, and the versions of ``handgrad-softmax`` (each version's
``val_accuracy`` tag and the ``@champion`` alias). The README's picture was taken after a
``dvc repro`` with ``tracking.register=true`` and then the preset sweep.
"""

import argparse
import tempfile
from pathlib import Path

from PIL import Image

from tests.browser import Browser, mlflow_server
from tests.paths import REPO_ROOT

MODEL = "handgrad-softmax"
WINDOW = (1300, 1000)
SEPARATOR = 4  # pixels of gray between the two pages
TRAINING_MODE = "?workflowType=machine_learning"  # the UI's "Model training" side, as the stages link it


def rect(browser, text, last=False):
    """The page rectangle (left, top, right, bottom) of the first (or ``last``) element whose own
    text is ``text``."""
    box = browser.driver.execute_script(
        """const all = document.evaluate(`//*[normalize-space(text())=${JSON.stringify(arguments[0])}]`,
               document.body, null, XPathResult.ORDERED_NODE_SNAPSHOT_TYPE, null);
           if (!all.snapshotLength) return null;
           const r = all.snapshotItem(arguments[1] ? all.snapshotLength - 1 : 0).getBoundingClientRect();
           return [r.left, r.top, r.right, r.bottom];""", text, last)
    if box is None:
        raise RuntimeError(f"{browser.driver.current_url}: no element says {text!r}")
    return box


def page(browser, url, *texts):
    """The page at ``url`` once it shows ``texts``, overlays closed: its screenshot as an Image."""
    browser.open(url, *texts, timeout=120)
    browser.dismiss_overlays()
    browser.wait_for(*texts)
    return Image.open(browser.screenshot("page")).convert("RGB")


def registry_picture(store_uri, out):
    with tempfile.TemporaryDirectory() as folder, mlflow_server(store_uri, Path(folder) / "server.log") as url, Browser(folder) as browser:
        return draw_registry(browser, url, out)


def draw_registry(browser, url, out):
    """The picture of the registry served at ``url``, drawn with ``browser`` into ``out``; its size."""
    size = browser.driver.get_window_size()
    browser.driver.set_window_size(*WINDOW)
    try:
        # The main panel only (the side bar's links are the same on every page), each page from
        # its title to the end of its table.
        models = page(browser, f"{url}/#/models{TRAINING_MODE}", "Registered Models", MODEL)
        left = int(rect(browser, "Registered Models")[0]) - 16
        models = models.crop((left, 0, models.width - 20, int(rect(browser, "25 / page")[3]) + 16))
        versions = page(browser, f"{url}/#/models/{MODEL}{TRAINING_MODE}", "Versions", "Version 1")
        top, bottom = rect(browser, MODEL)[1] - 36, rect(browser, "25 / page", last=True)[3] + 16
        versions = versions.crop((left, int(top), versions.width - 20, int(bottom)))
    finally:
        browser.driver.set_window_size(size["width"], size["height"])
    picture = Image.new("RGB", (models.width, models.height + versions.height + SEPARATOR), "#d0d0d0")
    picture.paste(models, (0, 0))
    picture.paste(versions, (0, models.height + SEPARATOR))
    picture.quantize(colors=128).save(out, optimize=True)  # a third of the bytes; the UI has few colours
    return picture.size


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("store", nargs="?", default=f"sqlite:///{REPO_ROOT / 'mlflow.db'}")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "registry.png")
    args = parser.parse_args()
    width, height = registry_picture(args.store, args.out)
    print(f"{args.out}: {width}x{height}")


if __name__ == "__main__":
    main()
