"""The README's commands are the ones CI runs, so a new user's first steps are tested."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

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


@pytest.mark.parametrize("version", ["2.13.0", "2.13.0+cpu", "2.11.0+cu130", "2.14.1+cu128", "2.6.0"])
def test_the_torch_requirement_keeps_a_gpu_machines_own_build(version):
    """pyproject.toml asks for a range (docs/gpu.md#install): a CUDA build already installed satisfies it, so pip keeps it."""
    from packaging.requirements import Requirement

    text = (ROOT / "pyproject.toml").read_text()
    torch = [Requirement(m) for m in re.findall(r'"(torch\s*[<>=!~][^"]*)"', text)]  # not torch-pruning
    assert len(torch) == 1 and torch[0].specifier.contains(version), (torch, version)
    assert not torch[0].specifier.contains("1.13.1") and not torch[0].specifier.contains("2.5.1")  # below what the code uses


def test_the_readme_installs_the_cpu_build_of_torch_first():
    """With no torch installed, pip would satisfy the range with a multi-GB CUDA build: the CPU line pins the CPU build first."""
    line = next(c for c in _ci_commands() if "pip install" in c)
    assert line.index("pip install torch==2.13.0") < line.index('pip install -e ".[test]"')
