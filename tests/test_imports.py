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
