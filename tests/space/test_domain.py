from __future__ import annotations

import random
from pathlib import Path

import pytest

from particle_nas.space import FACTORIZATIONS, WIRINGS, Axis, ParticleSpec, SearchSpace, SpecError, read_yaml

FULL = {
    "factorization": list(FACTORIZATIONS),
    "wiring": list(WIRINGS),
    "temporal_kernel": [1, 3, 5],
    "spatial_kernel": [3, 5],
    "expansion": [0.5, 2.0],
    "squeeze_excite": [0.0, 0.25],
    "activation": "silu",
    "prune_ratio": {"low": 0.0, "high": 0.5, "step": 0.25},
}


def _random_chooser(seed: int):
    rng = random.Random(seed)
    asked: list[str] = []

    def choose(axis: Axis):
        asked.append(axis.name)
        return rng.choice(axis.values())

    return choose, asked


def test_sampling_yields_valid_particles_and_skips_axes_that_do_not_apply():
    space = SearchSpace.from_dict(FULL)
    for seed in range(200):
        choose, asked = _random_chooser(seed)
        spec = space.sample(choose)
        assert isinstance(spec, ParticleSpec)
        assert spec.activation == "silu"  # fixed axes are never asked
        assert "activation" not in asked
        if spec.factorization == "spatial_only":
            assert spec.temporal_kernel == 1 and not any(a.startswith("temporal_kernel") for a in asked)
        if spec.factorization == "temporal_shift":
            assert spec.temporal_kernel >= 3 and "temporal_kernel@temporal_shift" in asked
        if spec.wiring in ("plain", "residual"):
            assert spec.expansion == 1.0 and "expansion" not in asked
        assert spec.prune_ratio in (0.0, 0.25, 0.5)


def test_grid_enumerates_distinct_valid_particles():
    space = SearchSpace.from_dict({"factorization": ["full", "spatial_only"], "temporal_kernel": [1, 3], "wiring": ["residual", "bottleneck"], "expansion": [0.25, 0.5]})
    grid = list(space.grid())
    # full: kt in {1, 3}; spatial_only: kt = 1; residual has no expansion, bottleneck two.
    assert len(grid) == (2 + 1) * (1 + 2)
    assert len(set(grid)) == len(grid)


def test_round_trip_through_dict():
    space = SearchSpace.from_dict(FULL)
    assert SearchSpace.from_dict(space.to_dict()) == space
    assert set(space.searched) == set(FULL) - {"activation"}


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"factorization": ["full", "x3d"]}, "space.factorization must be one of ('full'"),
        ({"temporal_kernel": [3, 4]}, "space.temporal_kernel must be one of (1, 3, 5, 7), but got 4"),
        ({"kernel": [3]}, "space.kernel is not a particle axis"),
        ({"prune_ratio": {"low": 0.5, "high": 0.1}}, "low <= high must hold"),
        ({"prune_ratio": {"low": 0.0, "high": 0.95}}, "space.prune_ratio must be in [0.0, 0.9)"),
        ({"prune_ratio": {"low": 0.0}}, "range needs both low and high"),
        ({"wiring": []}, "must list at least one value"),
        ({"wiring": ["plain", "plain"]}, "must not repeat a value"),
        ({"factorization": ["temporal_shift"], "temporal_kernel": [1]}, "must include a kernel >= 3"),
        ("full", "space must be a mapping"),
    ],
)
def test_bad_space_errors(data, fragment):
    with pytest.raises(SpecError) as info:
        SearchSpace.from_dict(data)
    assert fragment in str(info.value)


def test_a_range_with_a_tiny_step_is_refused_rather_than_enumerated():
    with pytest.raises(SpecError, match=r"space.prune_ratio.step must leave at most 10000 values"):
        SearchSpace.from_dict({"prune_ratio": {"low": 0.0, "high": 0.5, "step": 1e-300}})


def test_grid_is_deterministic_distinct_and_counts_the_quickstart_space():
    quickstart = read_yaml(Path(__file__).resolve().parents[2] / "examples" / "quickstart.yaml")["space"]
    grid = list(SearchSpace.from_dict(quickstart).grid())
    assert grid == list(SearchSpace.from_dict(quickstart).grid())
    assert len(set(grid)) == len(grid)
    # kernels: 5 factorizations x 2 + spatial_only's 1; expansions: plain 1, residual 1, bottleneck 3, inverted 3; SE 2; activation 2; prune 3
    assert len(grid) == (5 * 2 + 1) * (1 + 1 + 3 + 3) * 2 * 2 * 3
    assert all(p.temporal_kernel == 1 for p in grid if p.factorization == "spatial_only")
