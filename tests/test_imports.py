"""The space is the bottom of the package graph: importing it loads neither results, plotly nor ray."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("particle_nas.space", ("plotly", "ray", "particle_nas.results", "particle_nas.search")),
        ("particle_nas.search", ("plotly", "ray", "particle_nas.results")),
    ],
)
def test_importing_a_package_loads_nothing_downstream(module, forbidden):
    code = f"import {module}, sys; loaded = sorted(m for m in sys.modules if m.startswith({forbidden!r})); assert not loaded, loaded"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_package_loads_results_only_when_asked():
    code = "import particle_nas, sys; assert 'particle_nas.results' not in sys.modules; particle_nas.load_network; assert 'particle_nas.results' in sys.modules"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def _cli_imports() -> dict[str, set[str]]:
    """Module of particle_nas/ (the CLI and its config) -> the modules of particle_nas/ it imports, at its top or inside a function."""
    import ast
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "particle_nas"
    names = {path.stem for path in folder.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in folder.glob("*.py"):
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == "particle_nas":  # from particle_nas import cli, __version__
                found |= {alias.name if alias.name in names else "__init__" for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("particle_nas."):
                found.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                found |= {alias.name.split(".")[1] for alias in node.names if alias.name.startswith("particle_nas.")}
        graph[path.stem] = (found & names) - {path.stem}
    return graph


def test_the_cli_modules_import_each_other_without_a_cycle():
    """finetune and config never import the CLI (cli may import them, lazily or not); exit_codes imports nothing of the project."""
    graph = _cli_imports()
    assert "cli" not in graph["finetune"] and "cli" not in graph["config"]
    assert graph["exit_codes"] == set()
    assert "exit_codes" in graph["cli"] and "exit_codes" in graph["finetune"]

    def reaches(start: str, goal: str, seen: frozenset[str] = frozenset()) -> bool:
        return any(m == goal or (m not in seen and reaches(m, goal, seen | {m})) for m in graph.get(start, ()))

    cycles = sorted(module for module in graph if reaches(module, module))
    assert not cycles, f"modules on an import cycle: {cycles} ({graph})"
