"""The promises the repository makes to a newcomer: the two-command quick start, and CI running it."""

import os
import subprocess
import sys
import tomllib

import pytest

from tests.helpers import quick_start_commands
from tests.paths import REPO_ROOT


def test_quick_start_has_exactly_two_one_line_commands():
    commands = quick_start_commands()
    assert len(commands) == 2
    assert all("\n" not in command for command in commands)
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command_verbatim():
    ci_script = (REPO_ROOT / ".ci" / "run").read_text().splitlines()
    assert quick_start_commands()[1] in [line.split(" || ")[0].strip() for line in ci_script]


def test_required_top_level_layout_exists():
    for name in ["conf", "pipeline", "experiments", "bench", "tests", "pyproject.toml", "README.md", ".ci/run"]:
        assert (REPO_ROOT / name).exists(), name



def test_the_test_command_runs_on_every_core_keeping_each_group_on_one_worker():
    """A bare `pytest` (the README's, CI's) is parallel, grouping by xdist_group (one browser, one
    UI server, one sweep read by several tests: each on one worker)."""
    addopts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["addopts"].split()
    assert "-n" in addopts and addopts[addopts.index("-n") + 1] == "auto"
    assert "--dist" in addopts and addopts[addopts.index("--dist") + 1] == "loadgroup"


GROUPED = """
import os, pytest

pytestmark = pytest.mark.xdist_group("one")


@pytest.mark.parametrize("n", range(6))
def test_worker(n):
    with open(os.environ["WORKERS_FILE"], "a") as f:
        f.write(os.environ["PYTEST_XDIST_WORKER"] + "\\n")
"""


@pytest.mark.slow
def test_tests_of_one_xdist_group_all_run_on_one_worker(tmp_path):
    """The installed pytest and pytest-xdist keep a group together (pytest 9.2 broke xdist 3.8's
    grouping: see the pin in pyproject.toml)."""
    (tmp_path / "test_grouped.py").write_text(GROUPED)
    workers = tmp_path / "workers.txt"
    # pytest-xdist only: the other installed plugins (hypothesis, Hydra's, anyio's) would be imported
    # by each of the three processes for nothing.
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "xdist.plugin", "-n", "2",
                             "--dist", "loadgroup", "--rootdir", str(tmp_path), str(tmp_path / "test_grouped.py")], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "WORKERS_FILE": str(workers), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    ran_on = workers.read_text().split()
    assert len(ran_on) == 6 and len(set(ran_on)) == 1, ran_on
