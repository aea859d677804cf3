"""A real MLflow UI in a real browser, for tests: the README's `python -m experiments.ui` (or
`mlflow server`) on 127.0.0.1 over a given store, and headless Debian Chromium driven by Selenium
through Debian's chromedriver (both from apt: `chromium`, `chromium-driver`; .ci/run installs
them). No browser or driver is ever downloaded: the paths are given, so Selenium Manager never
runs."""

import os
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from tests.paths import REPO_ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Flags that let Chromium run as root in a container, and keep it from calling home.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1600,1000",
)

# The dialog first, the panel after: the dialog's backdrop takes the clicks meant for the panel.
OVERLAY_CLOSE_BUTTONS = ("[role='dialog'] button[aria-label='Close']", "button[data-component-id='mlflow.assistant.chat_panel.close']")


def browser_missing():
    """Why no browser test can run here, or None: the reason pytest's skip shows."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not Path(path).exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    return f"needs {' and '.join(missing)} (apt-get install chromium chromium-driver)" if missing else None


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def mlflow_server(store_uri, log_path, timeout=120):
    """`mlflow server` over ``store_uri`` on 127.0.0.1 at a free port, one worker; yields its base
    URL once /health answers; its output goes to ``log_path``. Stopped (its process group) at exit."""
    port = free_port()
    # No job runners: each would import MLflow in a process of its own, for jobs no test asks for.
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store_uri,
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {proc.returncode}: {Path(log_path).read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not answer within {timeout} s: {log_path}")
            time.sleep(0.3)
        yield url
    finally:
        stop(proc)


@contextmanager
def project_ui(store_uri, log_path, timeout=120):
    """`python -m experiments.ui` (the README's UI command: MLflow's server app in one process)
    over ``store_uri`` on 127.0.0.1 at a free port, no browser of its own; yields its base URL as
    soon as it prints that it answers (its first line); its errors go to ``log_path``. Stopped by
    SIGTERM at exit, as Ctrl-C stops it."""
    port = free_port()
    env = dict(os.environ, MLFLOW_TRACKING_URI=store_uri, DISPLAY="", WAYLAND_DISPLAY="")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "experiments.ui", "--port", str(port), "--no-browser"], cwd=REPO_ROOT,
                                stdout=subprocess.PIPE, stderr=log, env=env, text=True, start_new_session=True)
    lines = queue.Queue()
    threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()
    try:
        try:
            line = lines.get(timeout=timeout)  # "" when it ended without a word
        except queue.Empty:
            raise RuntimeError(f"python -m experiments.ui did not answer within {timeout} s: {log_path}") from None
        if "answering after" not in line:
            proc.wait(10)
            raise RuntimeError(f"python -m experiments.ui exited with {proc.returncode}: {line}{Path(log_path).read_text()[-2000:]}")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


def stop(proc):
    """SIGTERM to ``proc``'s process group, SIGKILL if it is still there after 10 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, 15)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait()


class Browser:
    """One headless Chromium session. ``shots`` is where screenshots go."""

    def __init__(self, shots):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.shots = Path(shots)
        self.shots.mkdir(parents=True, exist_ok=True)
        self._profile = tempfile.mkdtemp(prefix="chromium-profile-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in CHROMIUM_FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={self._profile}")
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)

    def open(self, url, *texts, timeout=60, shot=None):
        """Open ``url`` and wait until the rendered page shows every one of ``texts``; returns the
        page's visible text. A screenshot goes to ``shots/<shot>.png`` either way (the page as it
        was when the wait ended), so a failure can be looked at."""
        self.driver.get(url)
        return self.wait_for(*texts, timeout=timeout, shot=shot)

    def wait_for(self, *texts, timeout=60, shot=None):
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        def shown(driver):
            body = driver.execute_script("return document.body ? document.body.innerText : ''")
            return body if all(text in body for text in texts) else False

        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.25).until(shown)
        except TimeoutException:
            body = self.text()
            missing = [text for text in texts if text not in body]
            raise AssertionError(f"{self.driver.current_url}: not shown within {timeout} s: {missing}\n"
                                 f"page text: {body[:2000]}") from None
        finally:
            if shot:
                self.screenshot(shot)

    def wait_until(self, condition, timeout=60, shot=None):
        """Wait until ``condition()`` is true (AssertionError with the page's text if not)."""
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.25).until(lambda driver: condition())
        except TimeoutException:
            raise AssertionError(f"{self.driver.current_url}: not true within {timeout} s: {condition}\n"
                                 f"page text: {self.text()[:2000]}") from None
        finally:
            if shot:
                self.screenshot(shot)

    def scroll_to(self, text, last=False):
        """Scroll the first (or ``last``) element whose own text is exactly ``text`` to the top of
        its view; False if there is none (yet)."""
        return self.driver.execute_script(
            """const all = document.evaluate(`//*[normalize-space(text())=${JSON.stringify(arguments[0])}]`,
                   document.body, null, XPathResult.ORDERED_NODE_SNAPSHOT_TYPE, null);
               if (!all.snapshotLength) return false;
               all.snapshotItem(arguments[1] ? all.snapshotLength - 1 : 0).scrollIntoView({block: 'start'});
               return true;""", text, last)

    def dismiss_overlays(self):
        """Close what MLflow's UI opens over a page on a first visit: the "new model registry UI"
        dialog and the assistant's chat panel. Returns how many were closed."""
        from selenium.webdriver.common.by import By

        closed = 0
        for selector in OVERLAY_CLOSE_BUTTONS:
            for button in self.driver.find_elements(By.CSS_SELECTOR, selector):
                if button.is_displayed():
                    button.click()
                    closed += 1
        if closed:
            time.sleep(0.5)  # the panels' closing animations
        return closed

    def images(self):
        """The page's images that finished loading with a picture in them: (src, width, height)."""
        return [tuple(image) for image in self.driver.execute_script(
            "return [...document.images].filter(i => i.complete && i.naturalWidth > 0)"
            ".map(i => [i.currentSrc || i.src, i.naturalWidth, i.naturalHeight])")]

    def text(self):
        return self.driver.execute_script("return document.body ? document.body.innerText : ''")

    def close_assistant(self):
        """Close MLflow's assistant side panel if it is open (a quarter of the window otherwise)."""
        self.driver.execute_script(
            "const close = document.querySelector('[data-component-id=\"mlflow.assistant.chat_panel.close\"]');"
            "if (close) close.click();")

    def show_image(self, src_part):
        """Scroll the first loaded image whose address contains ``src_part`` into view, in the
        page and in any scrolled box it sits in; False if there is none (yet)."""
        return self.driver.execute_script(
            """const image = [...document.images].find(i => i.complete && i.naturalWidth > 0
                                                             && (i.currentSrc || i.src).includes(arguments[0]));
               if (!image) return false;
               image.scrollIntoView({block: 'center'});
               return true;""", src_part)

    def image_pixels(self, *src_parts):
        """The pixels the browser decoded for the first loaded image whose address contains every
        one of ``src_parts``, an RGB uint8 array (read back through a canvas: same origin); None if
        there is no such image."""
        import base64
        import io

        import numpy as np
        from PIL import Image

        data_url = self.driver.execute_script(
            """const image = [...document.images].find(i => i.complete && i.naturalWidth > 0
                                                             && arguments[0].every(p => (i.currentSrc || i.src).includes(p)));
               if (!image) return null;
               const canvas = document.createElement('canvas');
               canvas.width = image.naturalWidth; canvas.height = image.naturalHeight;
               canvas.getContext('2d').drawImage(image, 0, 0);
               return canvas.toDataURL('image/png');""", list(src_parts))
        if data_url is None:
            return None
        png = base64.b64decode(data_url.split(",", 1)[1])
        return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))

    def screenshot(self, name):
        path = self.shots / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def close(self):
        self.driver.quit()
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
