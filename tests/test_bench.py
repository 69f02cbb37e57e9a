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


def test_particles_bench_trains_the_recurrent_particle_beside_the_3d_ones(monkeypatch, capsys):
    """docs/recurrent.md's bench command, on a tiny task: one line per particle with its analytic FLOPs."""
    particles = _load("particles")
    assert {"conv_gru_residual", "conv_gru_k3_residual", "full_residual"} <= set(particles.PARTICLES)
    argv = ["particles.py", "--threads", "1", "--particles", "conv_gru_residual", "full_residual", "--train-size", "32", "--val-size", "16", "--epochs", "1"]
    monkeypatch.setattr("sys.argv", argv)
    particles.main()
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("conv_gru_residual") and "flops 43.9M" in lines[1]
    assert lines[2].startswith("full_residual") and "flops 72.2M" in lines[2]
