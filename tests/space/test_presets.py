"""Reference presets count to their published params and FLOPs (within 0.5%), analytically and with fvcore."""

from __future__ import annotations

import pytest

from particle_nas.evaluators import count_cost
from particle_nas.space import NetworkSpec, ParticleSpec, build_network, cost, presets

TOLERANCE = 0.005


@pytest.mark.parametrize("name", presets.names())
def test_preset_matches_published_figures(name: str) -> None:
    entry = presets.preset(name)
    counted = entry.counted()
    assert abs(counted.params - entry.params) <= TOLERANCE * entry.params, (counted.params, entry.params)
    assert abs(counted.gflops - entry.gflops) <= TOLERANCE * entry.gflops, (counted.gflops, entry.gflops)
    assert entry.source and isinstance(entry.spec, NetworkSpec)


@pytest.mark.slow
@pytest.mark.parametrize("name", presets.names())
def test_built_preset_counts_like_the_analytic_model(name: str) -> None:
    """fvcore on the built module agrees with the analytic count (at a small clip, to stay fast: the layers are the same)."""
    clip = (3, 8, 64, 64)
    assert count_cost(presets.build(name, seed=0), input_shape=clip) == cost(presets.get(name), clip)


def test_video_resnet_wiring_details() -> None:
    """torchvision's R(2+1)D sizes both convs of a block from the block's widths (64 -> 128: 230 mid channels)."""
    model = presets.build("r2plus1d_18")
    first = model.stages[1][0].branch
    assert first[0][0].out_channels == 230 and first[3][0].out_channels == 230
    per_conv = build_network(presets.get("r2plus1d_18").replace(particle=ParticleSpec(factorization="r2plus1d", wiring="residual")))
    assert per_conv.stages[1][0].branch[3][0].out_channels == 288  # the paper's per-conv rule
    stem = model.stem
    assert [m.kernel_size for m in stem if hasattr(m, "kernel_size")] == [(1, 7, 7), (3, 1, 1)]
    mc3 = presets.build("mc3_18")
    assert mc3.stages[0][0].branch[0].kernel_size == (3, 3, 3) and mc3.stages[1][0].branch[0].kernel_size == (1, 3, 3)


def test_x3d_wiring_details() -> None:
    model = presets.build("x3d_m")
    kernels = [(m.kernel_size, m.groups) for m in model.stem if hasattr(m, "kernel_size")]
    assert kernels == [((1, 3, 3), 1), ((5, 1, 1), 24)]
    stage = model.stages[2]
    has_se = [any(type(m).__name__ == "SqueezeExcite" for m in block.branch) for block in stage]
    assert has_se == [i % 2 == 0 for i in range(11)]  # every other block, from the first
    assert stage[0].branch[3].groups == stage[0].branch[3].in_channels == 216  # depthwise 3x3x3 on 2.25 x 96
    assert [m.out_channels for m in model.head if hasattr(m, "out_channels")] == [432, 2048]


def test_preset_round_trips_through_dict() -> None:
    for name in presets.names():
        spec = presets.get(name)
        assert NetworkSpec.from_dict(spec.to_dict()) == spec


def test_unknown_preset() -> None:
    with pytest.raises(ValueError, match=r"preset must be one of \['r3d_18'"):
        presets.get("x3d_xxl")
