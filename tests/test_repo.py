"""The promises the repository makes to a newcomer: the two-command quick start, and CI running it."""

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
