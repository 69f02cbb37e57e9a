"""The analytic cost model equals fvcore's count on the built network, for any spec (each registry entry: test_space_registry.py)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from particle_nas.evaluators import count_cost
from particle_nas.space import (
    ACTIVATIONS,
    FACTORIZATIONS,
    KERNELS,
    WIRINGS,
    Cost,
    NetworkSpec,
    ParticleSpec,
    SpecError,
    build_network,
    cost,
)
from particle_nas.space._spec import DEFAULT_BRANCH_FRACTIONS, DEFAULT_EXPANSION, DEFAULT_REDUCE_FRACTIONS, EXPANDING_WIRINGS, POOLS


@st.composite
def particles(draw: st.DrawFn, wiring: str) -> ParticleSpec:
    factorization = draw(st.sampled_from(FACTORIZATIONS))
    if factorization == "spatial_only":
        kt = 1
    elif factorization == "temporal_shift":
        kt = draw(st.sampled_from([k for k in KERNELS if k >= 3]))
    else:
        kt = draw(st.sampled_from(KERNELS))
    expansion = draw(st.sampled_from([0.25, 0.5, 1.0, 1.5, 2.0, 4.0, DEFAULT_EXPANSION[wiring]])) if wiring in EXPANDING_WIRINGS else 1.0
    mid = draw(st.sampled_from(["conv", "block", "out"])) if factorization == "r2plus1d" else "conv"
    inception = {}
    if wiring == "inception":
        shares = draw(st.lists(st.integers(1, 8), min_size=4, max_size=4))
        inception = {
            "branch_fractions": tuple(n / sum(shares) for n in shares),
            "reduce_fractions": tuple(draw(st.lists(st.sampled_from([0.1, 0.5, 0.75, 1.0, 2.0]), min_size=2, max_size=2))),
        }
    return ParticleSpec(
        **inception,
        r2plus1d_mid=mid,
        factorization=factorization,
        wiring=wiring,
        temporal_kernel=kt,
        spatial_kernel=draw(st.sampled_from(KERNELS)),
        expansion=expansion,
        squeeze_excite=draw(st.sampled_from([0.0, 0.0, 0.0625, 0.25, 0.5])),
        activation=draw(st.sampled_from(ACTIVATIONS)),
        prune_ratio=draw(st.sampled_from([0.0, 0.0, 0.1, 0.25, 0.5, 0.75, 0.85])),
        shift_fraction=draw(st.sampled_from([0.125, 0.25, 0.5, 1.0])),
    )


@st.composite
def networks(draw: st.DrawFn, wiring: str) -> NetworkSpec:
    stages = draw(st.integers(1, 3))
    stage_ints = lambda low, high: st.lists(st.integers(low, high), min_size=stages, max_size=stages)  # noqa: E731
    t_strides, s_strides = draw(stage_ints(1, 2)), draw(stage_ints(1, 3))
    stem_stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    stem_pool = draw(st.sampled_from(["none", "none", *POOLS]))
    stage_pools = draw(st.sampled_from([(), (), tuple(draw(st.sampled_from(list(POOLS))) for _ in range(stages))]))
    pool_strides = [POOLS[p][1] for p in (stem_pool, *stage_pools) if POOLS[p] is not None]
    t_min = stem_stride[0] * math.prod(t_strides) * math.prod(s[0] for s in pool_strides)
    s_min = stem_stride[1] * math.prod(s_strides) * math.prod(s[1] for s in pool_strides)
    head_flatten = draw(st.booleans())
    shared = draw(st.booleans())
    particle = draw(particles(wiring)) if shared else tuple(draw(particles(wiring)) for _ in range(stages))
    widths = tuple(draw(stage_ints(4 if wiring == "inception" else 1, 20)))
    if wiring == "inception" and not shared and draw(st.booleans()):  # absolute branch widths (as the I3D preset) on the first stage
        branch = tuple(draw(st.lists(st.integers(1, 6), min_size=6, max_size=6)))
        first = particle[0].replace(branch_fractions=DEFAULT_BRANCH_FRACTIONS, reduce_fractions=DEFAULT_REDUCE_FRACTIONS, branch_widths=branch)
        particle = (first, *particle[1:])
        widths = (branch[0] + branch[2] + branch[4] + branch[5], *widths[1:])
    return NetworkSpec(
        particle=particle,
        **draw(st.sampled_from([{}, {}, {"stem_mid_channels": 5}, {"stem_mid_channels": 1}, {"stem_depthwise_temporal": True}])),
        se_every=draw(st.sampled_from([1, 1, 2, 3])),
        head_pre_channels=draw(st.sampled_from([0, 0, 7])),
        head_post_channels=0 if head_flatten else draw(st.sampled_from([0, 0, 9])),
        stem_pool=stem_pool,
        stage_pools=stage_pools,
        head_flatten=head_flatten,
        head_fc=draw(st.sampled_from([(), (), (6,), (5, 3)])),
        widths=widths,
        depths=tuple(draw(stage_ints(1, 2))),
        temporal_strides=tuple(t_strides),
        spatial_strides=tuple(s_strides),
        stem_channels=draw(st.integers(1, 16)),
        stem_kernel=(draw(st.sampled_from(KERNELS)), draw(st.sampled_from(KERNELS))),
        stem_stride=stem_stride,
        clip=(draw(st.integers(t_min, t_min + 5)), draw(st.integers(s_min, s_min + 9)), draw(st.integers(s_min, s_min + 9))),
        in_channels=draw(st.integers(1, 4)),
        num_classes=draw(st.integers(2, 10)),
    )


# 6 wirings x 50 examples = 300 random specs, split so that each test stays well under a minute.
@pytest.mark.slow
@pytest.mark.parametrize("wiring", WIRINGS)
@settings(max_examples=50, deadline=None, derandomize=True)
@given(data=st.data())
def test_analytic_cost_equals_fvcore(wiring: str, data: st.DataObject) -> None:
    spec = data.draw(networks(wiring))
    assert cost(spec) == count_cost(build_network(spec, seed=0), input_shape=spec.input_shape)


def test_cost_at_another_input_size() -> None:
    spec = NetworkSpec()
    bigger = spec.replace(clip=(16, 64, 64))
    assert cost(spec, (16, 64, 64)) == cost(spec, (3, 16, 64, 64)) == cost(bigger)
    assert cost(spec, (16, 64, 64)) == count_cost(build_network(spec), input_shape=(3, 16, 64, 64))
    assert cost(spec) == cost(spec, spec.input_shape)
    assert cost(spec).params == cost(bigger).params and cost(spec).flops < cost(bigger).flops


def test_hand_computed_cost() -> None:
    """A single-stage plain full-conv network, by hand."""
    spec = NetworkSpec(
        particle=ParticleSpec(factorization="full", wiring="plain"), widths=(4,), depths=(1,), temporal_strides=(1,), spatial_strides=(2,),
        stem_channels=2, stem_kernel=(1, 3), stem_stride=(1, 1), clip=(2, 4, 4), in_channels=1, num_classes=3,
    )  # fmt: skip
    stem = 2 * 1 * 9  # weights; output 2 x 4 x 4
    conv1 = 4 * 2 * 27  # stride 2 -> output 2 x 2 x 2
    conv2 = 4 * 4 * 27
    head = 4 * 3
    assert cost(spec) == Cost(
        params=stem + 2 * 2 + conv1 + 2 * 4 + conv2 + 2 * 4 + head + 3,
        flops=stem * 32 + conv1 * 8 + conv2 * 8 + head,
    )


@pytest.mark.parametrize("shape", [(3, 8), (3, 0, 8, 8), (8, 8.0, 8), "388"])
def test_cost_rejects_bad_input_shape(shape: object) -> None:
    with pytest.raises(SpecError, match=r"cost.input_shape must be \(T, H, W\) or \(C, T, H, W\)"):
        cost(NetworkSpec(), shape)  # type: ignore[arg-type]


def test_flattened_head_is_costed_only_at_its_clip() -> None:
    spec = NetworkSpec(head_flatten=True, head_fc=(10,), clip=(4, 16, 16))
    assert spec.feature_shape() == (4, 2, 2)  # stem stride 2, stages (1, 2, 2)
    assert cost(spec) == count_cost(build_network(spec), input_shape=spec.input_shape)
    with pytest.raises(SpecError, match=r"cost.input_shape must give the flattened head the feature map of the spec's clip \[4, 16, 16\]"):
        cost(spec, (4, 32, 32))


def test_pools_shrink_the_feature_map() -> None:
    spec = NetworkSpec(stem_pool="max1x3x3", stage_pools=("max2x2x2", "none", "max1x2x2"), clip=(8, 64, 64))
    # H: 64 -> stem stride 2: 32 -> max1x3x3: 16 -> max2x2x2: 8 -> stride 2: 4 -> stride 2: 2 -> max1x2x2: 1; T: 8 -> 4 (max2x2x2)
    assert spec.feature_shape() == (4, 1, 1)
    model = build_network(spec, seed=0)
    features = model.stages(model.stem(torch.zeros(1, *spec.input_shape)))
    assert tuple(features.shape[2:]) == spec.feature_shape()
    assert cost(spec).flops < cost(spec.replace(stem_pool="none", stage_pools=())).flops


def test_cost_rejects_non_spec() -> None:
    with pytest.raises(TypeError, match="cost expects a NetworkSpec"):
        cost(ParticleSpec())  # type: ignore[arg-type]
