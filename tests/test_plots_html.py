"""`dvc plots show` works offline: the page DVC writes with the repository's HTML template
(.dvc/plots_template.html, set in .dvc/config) loads nothing from the internet, and every plot of
dvc.yaml gets its data and draws in a browser that has no internet."""

import json
import re
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser

import pytest
import yaml

from tests.paths import REPO_ROOT

TEMPLATE = REPO_ROOT / ".dvc" / "plots_template.html"

# On the worker that has test_ui's Chromium already, plots_page made once for both its tests.
pytestmark = pytest.mark.xdist_group("browser")


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


# A valid 2x2 RGB PNG (a browser must decode it).
PNG = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0)) + png_chunk(
    b"IDAT", zlib.compress(b"\x00\xff\x00\x00\x00\x00\xff" * 2)) + png_chunk(b"IEND", b"")


class Tags(HTMLParser):
    """Every tag's attributes, and the text inside <script> elements kept apart."""

    def __init__(self):
        super().__init__()
        self.attributes = []
        self.in_script = False
        self.scripts = []

    def handle_starttag(self, tag, attrs):
        self.attributes.append((tag, dict(attrs)))
        self.in_script = tag == "script"

    def handle_endtag(self, tag):
        self.in_script = False if tag == "script" else self.in_script

    def handle_data(self, data):
        if self.in_script:
            self.scripts.append(data)


def plot_definitions():
    return yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["plots"]


def test_dvc_config_uses_the_offline_template():
    config = (REPO_ROOT / ".dvc" / "config").read_text()
    assert re.search(r"^\[plots\]\n\s+html_template = plots_template.html$", config, flags=re.M), config
    page = TEMPLATE.read_text(encoding="utf8")
    assert page.count("{plot_divs}") == 1 and "{scripts}" not in page
    for library in ("vega@5.20.2", "vega-lite@5.2.0", "vega-embed@6.18.2"):
        assert library in page


@pytest.fixture(scope="session")  # not made again when xdist runs other modules in between
def plots_page(tmp_path_factory):
    """`dvc plots show` run in a scratch DVC project holding the repository's dvc.yaml and .dvc
    config, over small made-up files with the columns each plot reads."""
    project = tmp_path_factory.mktemp("plots_project")
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run(["dvc", "init", "-q"], cwd=project, check=True)
    shutil.copyfile(REPO_ROOT / "dvc.yaml", project / "dvc.yaml")
    shutil.copyfile(REPO_ROOT / ".dvc" / "config", project / ".dvc" / "config")
    shutil.copyfile(TEMPLATE, project / ".dvc" / TEMPLATE.name)
    columns = {}
    for plot in plot_definitions():
        if isinstance(plot, str):  # an image
            (project / plot).parent.mkdir(parents=True, exist_ok=True)
            (project / plot).write_bytes(PNG)
            continue
        (spec,) = plot.values()
        for path, fields in spec["y"].items():
            columns.setdefault(path, {spec["x"]}).update([fields] if isinstance(fields, str) else fields)
    for path, names in columns.items():
        names = sorted(names)
        rows = [",".join(str((row + 1) * (col + 1) % 10) for col in range(len(names))) for row in range(4)]
        (project / path).parent.mkdir(parents=True, exist_ok=True)
        (project / path).write_text("\n".join([",".join(names), *rows]) + "\n")
    result = subprocess.run(["dvc", "plots", "show", "-o", "out"], cwd=project, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    return project / "out" / "index.html"


@pytest.mark.slow
def test_the_plots_page_loads_nothing_remote_and_every_plot_has_data(plots_page):
    html = plots_page.read_text(encoding="utf8")
    tags = Tags()
    tags.feed(html)
    for tag, attributes in tags.attributes:
        for name in ("src", "href"):
            assert not re.match(r"\s*(https?:)?//", attributes.get(name) or ""), (tag, attributes)
    specs = [json.loads(spec) for spec in re.findall(r"var spec = (\{.*?\});\s*vegaEmbed", html, flags=re.S)]
    images = [attributes["src"] for tag, attributes in tags.attributes if tag == "img"]
    definitions = plot_definitions()
    assert len(specs) + len(images) == len(definitions)
    for spec in specs:
        assert spec["data"]["values"], spec.get("title")
    for src in images:
        assert (plots_page.parent / src).stat().st_size == len(PNG), src


@pytest.mark.slow
def test_every_plot_draws_in_a_browser_without_internet(plots_page, browser):
    browser.open(plots_page.as_uri(), timeout=60)
    divs = len(re.findall(r"vegaEmbed\('#", plots_page.read_text(encoding="utf8")))

    def drawn():
        return browser.driver.execute_script(
            "return [...document.querySelectorAll('div.vega-embed')]"
            ".filter(d => d.querySelector('svg, canvas')).length") >= divs

    browser.wait_until(drawn, timeout=60, shot="dvc_plots")
    assert len(browser.images()) == len(plot_definitions()) - divs
