"""Reference presets count to their published params and FLOPs (within 0.5%), analytically and with fvcore."""

from __future__ import annotations

import pytest
import torch

from particle_nas.evaluators import count_cost
from particle_nas.space import NetworkSpec, ParticleSpec, build_network, cost, presets

TOLERANCE = 0.005


# X3D-XS's published 0.60 GFLOPs is 0.9% under its count, I3D's quoted figures 5.3% and 2.9% (see space/presets.py);
# strict, so a fix shows up here.
KNOWN_GAPS = {
    "x3d_xs": "X3D-XS counts 0.6053 GFLOPs against 0.60 published",
    "i3d": "I3D counts 12.70M params (12.69M with kinetics-i3d's scale-free BN) and 111.15 GFLOPs at 64x224x224 against the quoted "
    "12.06M and 108 (+5.3%, +2.9%); docs/i3d.md lists the conventions checked",
}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.xfail(reason=KNOWN_GAPS[n], strict=True)) if n in KNOWN_GAPS else n for n in presets.names()]
)
def test_preset_matches_published_figures(name: str) -> None:
    entry = presets.preset(name)
    counted = entry.counted()
    assert abs(counted.params - entry.params) <= TOLERANCE * entry.params, (counted.params, entry.params)
    assert abs(counted.gflops - entry.gflops) <= TOLERANCE * entry.gflops, (counted.gflops, entry.gflops)
    assert entry.source and isinstance(entry.spec, NetworkSpec)


@pytest.mark.slow
@pytest.mark.parametrize("name", presets.names())
def test_built_preset_counts_like_the_analytic_model(name: str) -> None:
    """fvcore on the built module agrees with the analytic count (at a small clip, to stay fast: the layers are the same;
    C3D's flattened head only takes its own clip)."""
    spec = presets.get(name)
    clip = spec.input_shape if spec.head_flatten else (3, 8, 64, 64)
    assert count_cost(presets.build(name, seed=0), input_shape=clip) == cost(spec, clip)


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


def test_every_paper_the_issue_names_has_a_preset() -> None:
    assert {"r3d_18", "mc3_18", "r2plus1d_18", "ir_csn_152", "ip_csn_152", "x3d_xs", "x3d_s", "x3d_m", "x3d_l", "c3d", "i3d", "s3d"} <= set(presets.names())


def test_csn_wiring_details() -> None:
    """VMZ's CSN: 3x7x7 stem + 1x3x3 max pool; ir = depthwise 3x3x3, ip = 1x1x1 + BN + depthwise; stride on the 3x3x3."""
    ir, ip = presets.build("ir_csn_152"), presets.build("ip_csn_152")
    pool = ir.stem[-1]
    assert isinstance(pool, torch.nn.MaxPool3d) and pool.kernel_size == (1, 3, 3) and pool.stride == (1, 2, 2)
    assert [len(stage) for stage in ir.stages] == [3, 8, 36, 3]
    first = ir.stages[1][0].branch
    assert first[0].kernel_size == (1, 1, 1) and first[0].stride == (1, 1, 1)
    assert first[3].groups == first[3].in_channels == 128 and first[3].stride == (2, 2, 2)
    ip_conv = ip.stages[1][0].branch[3]
    assert [type(m).__name__ for m in ip_conv] == ["Conv3d", "BatchNorm3d", "Conv3d"] and ip_conv[2].groups == 128
    out = ir(torch.randn(1, 3, 8, 64, 64))
    assert out.shape == (1, 400)


def test_c3d_wiring_details() -> None:
    """C3D: 8 convs of 3x3x3, 5 max pools, fc6 from 512 x 1 x 3 x 3, fc7, fc8."""
    model = presets.build("c3d")
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv3d)]
    assert [m.out_channels for m in convs] == [64, 128, 256, 256, 512, 512, 512, 512]
    assert all(m.kernel_size == (3, 3, 3) and m.stride == (1, 1, 1) for m in convs)
    pools = [m.kernel_size for m in model.modules() if isinstance(m, torch.nn.MaxPool3d)]
    assert pools == [(1, 2, 2)] + [(2, 2, 2)] * 4
    linears = [(m.in_features, m.out_features) for m in model.head if isinstance(m, torch.nn.Linear)]
    assert linears == [(512 * 3 * 3, 4096), (4096, 4096), (4096, 400)]
    assert presets.get("c3d").feature_shape() == (1, 3, 3)
    model.eval()
    assert model(torch.randn(1, 3, 16, 112, 112)).shape == (1, 400)


def test_vmz_flops_are_counted_at_the_resize_scale() -> None:
    """At the listed crop, VMZ's fully convolutional models count (7/8)^2 of their published FLOPs (to 0.2%)."""
    for name in ("ir_csn_152", "ip_csn_152", "r2plus1d_34", "r2plus1d_152"):
        entry = presets.preset(name)
        t, h, w = entry.spec.clip
        assert entry.flops_clip == (t, h * 8 // 7, w * 8 // 7)
        at_crop = cost(entry.spec).gflops
        assert abs(at_crop / (entry.gflops * 49 / 64) - 1) < 0.002, (name, at_crop)


def test_preset_round_trips_through_dict() -> None:
    for name in presets.names():
        spec = presets.get(name)
        assert NetworkSpec.from_dict(spec.to_dict()) == spec


def test_unknown_preset() -> None:
    with pytest.raises(ValueError, match=r"preset must be one of \['r3d_18'"):
        presets.get("x3d_xxl")
