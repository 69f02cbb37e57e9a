"""Baselines: every hand-designed particle builds, counts and runs in the quickstart's proxy network."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from particle_nas.config import load_config
from particle_nas.evaluators import count_cost
from particle_nas.space import BASELINES, ParticleSpec, SpecError, baseline_names, build_network, cost, presets

QUICKSTART = load_config(Path(__file__).resolve().parents[2] / "examples" / "quickstart.yaml")


@pytest.mark.parametrize("name", list(BASELINES))
def test_baseline_builds_and_counts_in_the_quickstart_network(name: str) -> None:
    baseline = BASELINES[name]
    assert baseline.name == name and baseline.source and isinstance(baseline.particle, ParticleSpec)
    network = QUICKSTART.network.replace(particle=baseline.particle)
    assert network.widths == QUICKSTART.network.widths and network.clip == QUICKSTART.network.clip  # only the particle changes
    model = build_network(network, seed=0).eval()
    clip = torch.randn(2, *network.input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(clip)
    assert out.shape == (2, network.num_classes) and torch.isfinite(out).all()
    counted = count_cost(model, input_shape=network.input_shape)
    assert (counted.flops, counted.params) == (cost(network).flops, cost(network).params)


@pytest.mark.parametrize("name", [n for n, b in BASELINES.items() if b.preset is not None])
def test_a_baseline_with_a_preset_has_that_presets_particle(name: str) -> None:
    assert presets.get(BASELINES[name].preset).particle == BASELINES[name].particle


def test_baseline_names_reads_true_false_and_lists() -> None:
    assert baseline_names(True) == tuple(BASELINES) and baseline_names(False) == ()
    assert baseline_names(["X3D", "C3D"]) == ("X3D", "C3D")


@pytest.mark.parametrize("value", ["C3D", ["C3D", "C3D"], ["ResNet"], 1, None])
def test_baseline_names_refuses_anything_else_in_one_line(value) -> None:
    with pytest.raises(SpecError, match=r"^search.baselines must be true, false or a list|^search.baselines must list distinct names"):
        baseline_names(value)
