"""The promises the repository makes to a newcomer: the two-command quick start, and CI running it."""

import re

from tests.paths import REPO_ROOT


def quick_start_commands():
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S)]


def test_quick_start_has_exactly_two_one_line_commands():
    commands = quick_start_commands()
    assert len(commands) == 2
    assert all("\n" not in command for command in commands)
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command_verbatim():
    ci_script = (REPO_ROOT / ".ci" / "run").read_text().splitlines()
    assert quick_start_commands()[1] in [line.split(" || ")[0].strip() for line in ci_script]


def test_required_top_level_layout_exists():
    for name in ["conf", "pipeline", "experiments", "tests", "pyproject.toml", "README.md", ".ci/run"]:
        assert (REPO_ROOT / name).exists(), name
