from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, Path(__file__).parent.parent / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("a", "b", "tau"),
    [([1, 2, 3, 4], [10, 20, 30, 40], 1.0), ([1, 2, 3, 4], [4, 3, 2, 1], -1.0), ([1, 2, 3], [1, 3, 2], 1 / 3), ([1, 1, 2], [1, 2, 3], 2 / math.sqrt(6))],
)
def test_kendall_tau_b(a, b, tau):
    assert _load("fidelity").kendall_tau(a, b) == pytest.approx(tau)


def test_fidelity_samples_distinct_particles_reproducibly():
    fidelity = _load("fidelity")
    first = fidelity.sample_particles(20, seed=0)
    assert len(set(first)) == 20 and first == fidelity.sample_particles(20, seed=0)
