"""The inception wiring: widths, branches, validation, search domain and the I3D and S3D presets' layouts."""

from __future__ import annotations

import pytest
import torch
import yaml
from torch import nn

from particle_nas.evaluators import count_cost
from particle_nas.space import (
    FACTORIZATIONS,
    NetworkSpec,
    ParallelConcat,
    ParticleSpec,
    SearchSpace,
    SpecError,
    build_network,
    build_particle,
    cost,
    inception_widths,
    presets,
    split_width,
)


def _inception(factorization: str = "full", **changes) -> ParticleSpec:
    kt = 1 if factorization == "spatial_only" else 3
    return ParticleSpec(factorization=factorization, wiring="inception", temporal_kernel=kt, **changes)


def test_default_fractions_give_inception_v1_module_3a() -> None:
    """I3D's Mixed_3b (Inception-v1 3a): 64, 96 -> 128, 16 -> 32, 32 out of 256."""
    assert inception_widths(_inception(), 256) == (64, 96, 128, 16, 32, 32)


@pytest.mark.parametrize("total", [4, 5, 7, 13, 100, 257])
@pytest.mark.parametrize("fractions", [(0.25, 0.5, 0.125, 0.125), (0.7, 0.1, 0.1, 0.1), (0.97, 0.01, 0.01, 0.01)])
def test_split_width_sums_and_keeps_every_branch(total: int, fractions: tuple[float, ...]) -> None:
    parts = split_width(total, fractions)
    assert sum(parts) == total and min(parts) >= 1
    assert all(parts[i] >= parts[j] for i in range(4) for j in range(4) if fractions[i] > fractions[j])  # a larger share never gets fewer
    if all(f * total >= 1 for f in fractions):  # no branch lifted to its one channel: each within one channel of its share
        assert all(abs(p - f * total) < 1 for p, f in zip(parts, fractions))


@pytest.mark.parametrize("factorization", FACTORIZATIONS)
@pytest.mark.parametrize("stride", [(1, 1), (2, 2), (1, 2)])
def test_every_factorization_builds_an_inception_block(factorization: str, stride: tuple[int, int]) -> None:
    particle = _inception(factorization, squeeze_excite=0.25, prune_ratio=0.25)
    block = build_particle(particle, in_channels=12, out_channels=20, stride=stride)
    x = torch.randn(2, 12, 5, 9, 9, requires_grad=True)
    y = block(x)
    t, s = (5 - 1) // stride[0] + 1, (9 - 1) // stride[1] + 1
    assert y.shape == (2, 20, t, s, s) and torch.isfinite(y).all()
    y.sum().backward()
    assert torch.isfinite(x.grad).all()
    concat = block.branch[0]
    assert isinstance(concat, ParallelConcat) and len(concat.branches) == 4
    one, _, a, _, b, proj = inception_widths(particle, 20)
    assert [branch(x).shape[1] for branch in concat.branches] == [one, a, b, proj]


def test_pool_branch_is_a_3x3x3_max_pool_then_1x1x1() -> None:
    pool_branch = build_particle(_inception(), in_channels=8, out_channels=16).branch[0].branches[3]
    assert isinstance(pool_branch[0], nn.MaxPool3d) and pool_branch[0].kernel_size == (3, 3, 3) and pool_branch[0].stride == (1, 1, 1)
    assert pool_branch[1].kernel_size == (1, 1, 1)


def test_spatial_only_inception_ignores_frame_order() -> None:
    """Its pool is 1x3x3, so frames never meet (3x3x3 in every particle that mixes time)."""
    spec = NetworkSpec(particle=_inception("spatial_only"), widths=(8, 12), depths=(1, 1), temporal_strides=(1, 1), spatial_strides=(1, 2), clip=(6, 16, 16))
    net = build_network(spec, seed=0).eval()
    x = torch.randn(2, 3, 6, 16, 16)
    with torch.no_grad():
        assert torch.allclose(net(x), net(x[:, :, torch.randperm(6)]), atol=1e-5)
        temporal = build_network(spec.replace(particle=_inception("full")), seed=0).eval()
        assert not torch.allclose(temporal(x), temporal(x.flip(2)), atol=1e-5)


def test_pruning_shrinks_only_the_reduce_widths() -> None:
    dense, pruned = _inception(), _inception(prune_ratio=0.5)
    a = build_particle(dense, in_channels=32, out_channels=64).branch[0].branches
    b = build_particle(pruned, in_channels=32, out_channels=64).branch[0].branches
    assert a[1][0].out_channels == 24 and b[1][0].out_channels == 12  # reduce of tower a: 0.75 x 32, halved
    assert a[2][0].out_channels == 4 and b[2][0].out_channels == 2
    assert [m[3].out_channels for m in (a[1], b[1])] == [32, 32]  # tower outputs are the block's output: kept


def test_absolute_branch_widths() -> None:
    particle = _inception(branch_widths=(3, 4, 5, 2, 6, 7))
    spec = NetworkSpec(particle=particle, widths=(21,), depths=(2,), temporal_strides=(1,), spatial_strides=(2,), clip=(4, 16, 16))
    net = build_network(spec, seed=0)
    assert net(torch.randn(1, *spec.input_shape)).shape == (1, spec.num_classes)
    assert cost(spec) == count_cost(net, input_shape=spec.input_shape)
    with pytest.raises(SpecError, match=r"NetworkSpec.widths\[0\] must be the sum of the stage's inception output branch_widths \(21\), but got 20"):
        spec.replace(widths=(20,))
    with pytest.raises(SpecError, match=r"build_particle.out_channels must be the sum of the inception output branch_widths \(21\), but got 16"):
        build_particle(particle, in_channels=8, out_channels=16)


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"branch_fractions": (0.5, 0.5, 0.25, 0.25)}, "ParticleSpec.branch_fractions must sum to 1"),
        ({"branch_fractions": (0.5, 0.5, 0.0, 0.0)}, "ParticleSpec.branch_fractions[2] must be in (0.0, 1.0)"),
        ({"branch_fractions": (0.5, 0.5)}, "ParticleSpec.branch_fractions must be a list of 4 numbers"),
        ({"branch_fractions": "half"}, "ParticleSpec.branch_fractions must be a list of 4 numbers"),
        ({"reduce_fractions": (0.5, 0.0)}, "ParticleSpec.reduce_fractions[1] must be in (0.0, 8.0]"),
        ({"branch_widths": (1, 2, 3)}, "ParticleSpec.branch_widths must have 6 entries"),
        ({"branch_widths": (1, 2, 3, 4, 5, 0)}, "ParticleSpec.branch_widths[5] must be in [1, 8192]"),
        ({"branch_widths": (1, 2, 3, 4, 5, 6), "reduce_fractions": (1.0, 1.0)}, "ParticleSpec.reduce_fractions must be left at its default when branch_widths is set"),
        ({"wiring": "residual", "branch_fractions": (0.25, 0.25, 0.25, 0.25)}, "ParticleSpec.branch_fractions must be left at its default unless wiring is 'inception'"),
        ({"wiring": "bottleneck", "branch_widths": (1, 2, 3, 4, 5, 6)}, "ParticleSpec.branch_widths must be left at its default unless wiring is 'inception'"),
        ({"expansion": 2.0}, "ParticleSpec.expansion must be 1.0 for wiring 'inception'"),
    ],
)
def test_bad_inception_fields_are_rejected(changes: dict, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        ParticleSpec(**{"wiring": "inception", **changes})
    assert fragment in str(info.value)


def test_inception_stage_needs_a_channel_per_branch() -> None:
    with pytest.raises(SpecError, match=r"NetworkSpec.widths\[1\] must be >= 4 for an inception stage"):
        NetworkSpec(particle=(ParticleSpec(), _inception()), widths=(8, 3), depths=(1, 1), temporal_strides=(1, 1), spatial_strides=(1, 1))


def test_inception_fields_round_trip_and_stay_out_of_default_records() -> None:
    plain = _inception().to_dict()
    assert not {"branch_fractions", "reduce_fractions", "branch_widths"} & set(plain)
    custom = _inception(branch_fractions=(0.4, 0.3, 0.2, 0.1), reduce_fractions=(1.0, 0.25))
    record = custom.to_dict()
    assert record["branch_fractions"] == [0.4, 0.3, 0.2, 0.1]  # lists: YAML- and JSON-able
    assert ParticleSpec.from_dict(yaml.safe_load(yaml.safe_dump(record))) == custom
    spec = presets.get("i3d")
    assert NetworkSpec.from_dict(yaml.safe_load(yaml.safe_dump(spec.to_dict()))) == spec


def test_search_space_draws_inception_and_fixes_its_fractions() -> None:
    raw = {"wiring": ["residual", "inception"], "factorization": list(FACTORIZATIONS), "branch_fractions": [0.5, 0.25, 0.125, 0.125], "stages": "per_stage"}
    space = SearchSpace.from_dict(raw)
    assert "branch_fractions" not in space.searched
    drawn = set()
    for particle in space.grid():
        drawn.add(particle.wiring)
        expected = (0.5, 0.25, 0.125, 0.125) if particle.wiring == "inception" else (0.25, 0.5, 0.125, 0.125)
        assert particle.branch_fractions == expected
    assert drawn == {"residual", "inception"}
    assert SearchSpace.from_dict(yaml.safe_load(yaml.safe_dump(space.to_dict()))) == space
    with pytest.raises(SpecError, match=r"space.branch_fractions must be one list of numbers \(a fixed value: it is not searched\)"):
        SearchSpace.from_dict({"branch_fractions": [[0.5, 0.25, 0.125, 0.125], [0.25, 0.5, 0.125, 0.125]]})
    with pytest.raises(SpecError, match="space.branch_widths is not a particle axis"):
        SearchSpace.from_dict({"branch_widths": [1, 2, 3, 4, 5, 6]})


def test_i3d_layout() -> None:
    """Carreira and Zisserman's I3D: 7x7x7 stride-2 stem, 1x3x3 pools, 1x1x1 and 3x3x3 convs, nine Inception modules."""
    spec = presets.get("i3d")
    assert spec.widths == (64, 192, 256, 480, 512, 512, 512, 528, 832, 832, 1024)
    assert spec.feature_shape() == (8, 7, 7)  # at 64x224x224, as I3D's Mixed_5c
    model = presets.build("i3d", seed=0)
    stem = [m for m in model.stem if isinstance(m, (nn.Conv3d, nn.MaxPool3d))]
    assert stem[0].kernel_size == (7, 7, 7) and stem[0].stride == (2, 2, 2) and stem[1].kernel_size == (1, 3, 3)
    assert model.stages[0][0].branch[0].kernel_size == (1, 1, 1) and model.stages[1][0].branch[0].kernel_size == (3, 3, 3)
    pools = [m.kernel_size for m in model.stages.modules() if isinstance(m, nn.MaxPool3d) and m.stride != (1, 1, 1)]
    assert pools == [(1, 3, 3), (3, 3, 3), (2, 2, 2)]
    mixed_5c = model.stages[10][0].branch[0].branches
    assert [mixed_5c[0][0].out_channels, mixed_5c[1][0].out_channels, mixed_5c[1][3].out_channels] == [384, 192, 384]
    assert [mixed_5c[2][0].out_channels, mixed_5c[2][3].out_channels, mixed_5c[3][1].out_channels] == [48, 128, 128]
    assert mixed_5c[1][3].kernel_size == (3, 3, 3)
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 8, 64, 64)).shape == (1, 400)


def test_separable_inception_is_s3d_shaped() -> None:
    """S3D's separable conv: 1 x k x k to the output width, then kt x 1 x 1 (r2plus1d_mid "out")."""
    block = build_particle(_inception("r2plus1d", r2plus1d_mid="out", branch_widths=(64, 96, 128, 16, 32, 32)), in_channels=192, out_channels=256)
    tower = block.branch[0].branches[1][3]
    assert [(m.kernel_size, m.in_channels, m.out_channels) for m in tower if isinstance(m, nn.Conv3d)] == [((1, 3, 3), 96, 128), ((3, 1, 1), 128, 128)]


def test_s3d_is_torchvisions_layout() -> None:
    """torchvision's S3D: (2+1)D stem 1x7x7 (1, 2, 2) -> 64 -> 7x1x1 (2, 1, 1), separable 2c, separable towers, dropout 0.2."""
    spec = presets.get("s3d")
    assert spec.widths == presets.get("i3d").widths and spec.stem_mid_channels == 64 and spec.dropout == 0.2
    model = presets.build("s3d", seed=0)
    stem = [(m.kernel_size, m.stride, m.out_channels) for m in model.stem if isinstance(m, nn.Conv3d)]
    assert stem == [((1, 7, 7), (1, 2, 2), 64), ((7, 1, 1), (2, 1, 1), 64)]
    conv_2c = [(m.kernel_size, m.in_channels, m.out_channels) for m in model.stages[1].modules() if isinstance(m, nn.Conv3d)]
    assert conv_2c == [((1, 3, 3), 64, 192), ((3, 1, 1), 192, 192)]
    mixed_5c = model.stages[10][0].branch[0].branches
    tower = [(m.kernel_size, m.in_channels, m.out_channels) for m in mixed_5c[2].modules() if isinstance(m, nn.Conv3d)]
    assert tower == [((1, 1, 1), 832, 48), ((1, 3, 3), 48, 128), ((3, 1, 1), 128, 128)]
    assert mixed_5c[3][0].kernel_size == (3, 3, 3)  # the pool branch's max pool mixes time, as torchvision's
    pools = [m.kernel_size for m in model.stages.modules() if isinstance(m, nn.MaxPool3d) and m.stride != (1, 1, 1)]
    assert pools == [(1, 3, 3), (3, 3, 3), (2, 2, 2)]
    # torchvision's published count and its GFLOPS at 16x224x224, where its 2x7x7 average pool leaves one position
    assert cost(spec, (16, 224, 224)) == presets.preset("s3d").counted() and spec.feature_shape((16, 224, 224)) == (2, 7, 7)
    assert (cost(spec).params, round(cost(spec).gflops, 2)) == (8_320_048, 71.91)  # at the paper's 64x224x224


def test_tf_slim_s3d_counts_as_docs_i3d_md_states() -> None:
    """Google's S3D (TF-slim nets/s3dg.py) has one full stem conv: 7x7x7 in the paper, 3x7x7 by its code's default."""
    s3d = presets.get("s3d")
    counts = {kt: cost(s3d.replace(stem_mid_channels=0, stem_kernel=(kt, 7))) for kt in (7, 3)}
    assert {kt: (c.params, round(c.gflops, 2)) for kt, c in counts.items()} == {7: (8_347_696, 79.29), 3: (8_310_064, 64.18)}


def test_i3d_figures_docs_i3d_md_states() -> None:
    """kinetics-i3d's BN has no scale (Sonnet's default), and the quoted figures sit where 1x1x1 second towers would be."""
    spec = presets.get("i3d")
    assert (cost(spec).params, round(cost(spec).gflops, 2)) == (12_697_264, 111.15)
    model = presets.build("i3d", seed=0)
    bn_channels = sum(m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm3d))
    assert cost(spec).params - bn_channels == 12_689_984  # Sonnet BN: a shift per channel, no scale
    assert cost(spec).params - 2 * bn_channels == 12_682_704 and cost(spec).params - (1024 * 400 + 400) == 12_287_264
    flow = cost(spec.replace(in_channels=2)).params - bn_channels  # the two-stream network's flow stream
    assert 12_689_984 + flow == 25_358_016
    towers = [stage[0].branch[0].branches[2][3] for stage in model.stages[2:]]
    assert all(t.kernel_size == (3, 3, 3) for t in towers)
    weights = sum(t.weight.numel() for t in towers)
    # Every conv's output at 8x64x64 is 1/98 of its output at 64x224x224 (strides halve 8 and 64 as they do 64 and 224).
    outputs = []
    hooks = [t.register_forward_hook(lambda _m, _i, out: outputs.append(out[0, 0].numel())) for t in towers]
    model.eval()
    with torch.no_grad():
        model(torch.randn(1, 3, 8, 64, 64))
    for hook in hooks:
        hook.remove()
    macs = sum(98 * positions * t.weight.numel() for positions, t in zip(outputs, towers))
    one_by_one = (cost(spec).params - weights * 26 // 27, cost(spec).flops - macs * 26 // 27)
    assert weights == 642_816 and (one_by_one[0], round(one_by_one[1] / 1e9, 2)) == (12_078_256, 107.89)
