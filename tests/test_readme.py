"""The README's commands are the ones CI runs, so a new user's first steps are tested."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


GUARD = re.compile(r"^command -v \S+ >/dev/null \|\| \((.*)\)$")  # install-when-missing: the README shows the command


def _ci_commands() -> list[str]:
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    commands = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith(("#", "set ", "cd "))]
    return [GUARD.match(c).group(1) if GUARD.match(c) else c for c in commands]


def test_ci_runs_exactly_the_readme_commands():
    readme = (ROOT / "README.md").read_text()
    commands = _ci_commands()
    assert commands, "no command found in .ci/run"
    for command in commands:
        assert command in readme, f".ci/run runs {command!r}, which README.md does not show"


def test_readme_names_the_quickstart_config_that_exists():
    readme = (ROOT / "README.md").read_text()
    assert "particle-nas search examples/quickstart.yaml" in readme
    assert (ROOT / "examples" / "quickstart.yaml").is_file()
