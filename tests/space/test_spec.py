from __future__ import annotations

import pytest

from particle_nas.space import FACTORIZATIONS, WIRINGS, NetworkSpec, ParticleSpec, SpecError


def test_defaults_are_valid_and_expansion_follows_wiring():
    assert ParticleSpec().expansion == 1.0
    assert ParticleSpec(wiring="bottleneck").expansion == 0.25
    assert ParticleSpec(wiring="inverted").expansion == 4.0


@pytest.mark.parametrize(
    ("changes", "field", "fragment"),
    [
        ({"temporal_kernel": 4}, "ParticleSpec.temporal_kernel", "must be one of (1, 3, 5, 7)"),
        ({"spatial_kernel": 0}, "ParticleSpec.spatial_kernel", "must be one of (1, 3, 5, 7)"),
        ({"factorization": "conv4d"}, "ParticleSpec.factorization", "must be one of ('full'"),
        ({"wiring": "dense"}, "ParticleSpec.wiring", "must be one of ('plain'"),
        ({"activation": "gelu"}, "ParticleSpec.activation", "must be one of ('relu', 'silu')"),
        ({"prune_ratio": 0.9}, "ParticleSpec.prune_ratio", "must be in [0.0, 0.9)"),
        ({"prune_ratio": -0.1}, "ParticleSpec.prune_ratio", "must be in [0.0, 0.9)"),
        ({"squeeze_excite": 1.0}, "ParticleSpec.squeeze_excite", "must be in [0.0, 1.0)"),
        ({"expansion": 0.0, "wiring": "bottleneck"}, "ParticleSpec.expansion", "must be in (0.0, 8.0]"),
        ({"expansion": 2.0, "wiring": "residual"}, "ParticleSpec.expansion", "must be 1.0 for wiring 'residual'"),
        ({"factorization": "spatial_only"}, "ParticleSpec.temporal_kernel", "must be 1 when factorization is 'spatial_only'"),
        ({"factorization": "temporal_shift", "temporal_kernel": 1}, "ParticleSpec.temporal_kernel", "must be >= 3"),
        ({"temporal_kernel": True}, "ParticleSpec.temporal_kernel", "must be one of"),
        ({"prune_ratio": float("nan")}, "ParticleSpec.prune_ratio", "must be a finite number"),
    ],
)
def test_particle_validation_names_field_rule_and_value(changes, field, fragment):
    with pytest.raises(SpecError) as info:
        ParticleSpec(**changes)
    err = info.value
    assert err.field == field
    assert fragment in str(err)
    assert "but got" in str(err)
    assert "\n" not in str(err)


@pytest.mark.parametrize("factorization", FACTORIZATIONS)
@pytest.mark.parametrize("wiring", WIRINGS)
def test_dict_round_trip(factorization, wiring):
    kt = 1 if factorization == "spatial_only" else 5
    spec = ParticleSpec(factorization=factorization, wiring=wiring, temporal_kernel=kt, squeeze_excite=0.25, prune_ratio=0.5)
    assert ParticleSpec.from_dict(spec.to_dict()) == spec
    net = NetworkSpec(particle=spec, widths=(8, 16), depths=(2, 1), temporal_strides=(1, 2), spatial_strides=(2, 2))
    assert NetworkSpec.from_dict(net.to_dict()) == net


def test_unknown_field_is_named():
    with pytest.raises(SpecError, match=r"ParticleSpec.kernel is not a field"):
        ParticleSpec.from_dict({"kernel": 3})


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"clip": (1, 32, 32), "temporal_strides": (1, 2, 1)}, "at least as many frames as the total temporal stride (2)"),
        ({"clip": (8, 4, 4)}, "at least as high and wide as the total spatial stride (8)"),
        ({"depths": (1, 1)}, "must have one entry per stage (3, as widths)"),
        ({"widths": (16, 0, 64)}, "NetworkSpec.widths[1] must be in [1, 8192]"),
        ({"widths": ()}, "must list 1 to 16 stages"),
        ({"stem_kernel": (2, 3)}, "NetworkSpec.stem_kernel[0] must be one of (1, 3, 5, 7)"),
        ({"num_classes": 1}, "NetworkSpec.num_classes must be in [2, 100000]"),
        ({"widths": "wide"}, "NetworkSpec.widths must be a list of integers"),
        ({"stem_pool": "avg3"}, "NetworkSpec.stem_pool must be one of ('none', 'max1x3x3', 'max1x2x2', 'max2x2x2', 'max3x3x3'), but got 'avg3'"),
        ({"stage_pools": ("max2x2x2",)}, "NetworkSpec.stage_pools must have one entry per stage (3, as widths), or none"),
        ({"stage_pools": ("none", "none", "max3")}, "NetworkSpec.stage_pools[2] must be one of"),
        ({"stage_pools": "max2x2x2"}, "NetworkSpec.stage_pools must be a list of pool names"),
        ({"head_flatten": True, "head_post_channels": 8}, "NetworkSpec.head_post_channels must be 0 when head_flatten is set"),
        ({"head_fc": (16, 0)}, "NetworkSpec.head_fc[1] must be in [1, 65536]"),
        ({"clip": (1, 8, 8), "stage_pools": ("none", "none", "max2x2x2")}, "must be large enough for every stride and pool"),
    ],
)
def test_impossible_networks_are_rejected(changes, fragment):
    with pytest.raises(SpecError) as info:
        NetworkSpec(**changes)
    assert fragment in str(info.value)


def test_specs_are_frozen_and_hashable():
    spec = ParticleSpec()
    with pytest.raises(AttributeError):
        spec.wiring = "plain"  # type: ignore[misc]
    assert len({spec, ParticleSpec(), spec.replace(prune_ratio=0.5)}) == 2
