"""The quantize axis: ParticleSpec.quantize (none | int8) validates, round-trips and is sampled like other choices."""

from __future__ import annotations

import random

import pytest
import yaml

from particle_nas.space import QUANTIZE_MODES, NetworkSpec, ParticleSpec, SearchSpace, SpecError, build_network, cost


def test_quantize_defaults_to_none_and_is_left_out_of_files_then():
    assert QUANTIZE_MODES == ("none", "int8")
    assert ParticleSpec().quantize == "none"
    assert "quantize" not in ParticleSpec().to_dict()  # files written before the axis read the same
    assert ParticleSpec(quantize="int8").to_dict()["quantize"] == "int8"


@pytest.mark.parametrize("value", ["int4", "INT8", "", None, True, 8])
def test_bad_quantize_names_field_rule_and_value(value):
    with pytest.raises(SpecError, match=r"^ParticleSpec.quantize must be one of \('none', 'int8'\), but got ") as info:
        ParticleSpec(quantize=value)
    assert info.value.field == "ParticleSpec.quantize"


@pytest.mark.parametrize("mode", QUANTIZE_MODES)
def test_particle_and_network_round_trip_through_yaml(mode):
    particle = ParticleSpec(factorization="csn_ir", wiring="inverted", quantize=mode)
    assert ParticleSpec.from_dict(yaml.safe_load(yaml.safe_dump(particle.to_dict()))) == particle
    network = NetworkSpec(particle=(particle, particle.replace(quantize="none")), widths=(8, 16), depths=(1, 1), temporal_strides=(1, 1), spatial_strides=(1, 2))
    assert NetworkSpec.from_dict(yaml.safe_load(yaml.safe_dump(network.to_dict()))) == network


def test_quantize_changes_neither_the_built_network_nor_its_cost():
    spec = NetworkSpec(widths=(8, 16), depths=(1, 1), temporal_strides=(1, 1), spatial_strides=(1, 2))
    int8 = spec.replace(particle=ParticleSpec(quantize="int8"))
    assert cost(int8) == cost(spec)
    assert [tuple(t.shape) for t in build_network(int8, seed=0).state_dict().values()] == [tuple(t.shape) for t in build_network(spec, seed=0).state_dict().values()]


def test_space_samples_quantize_like_other_choices():
    space = SearchSpace.from_dict(yaml.safe_load("quantize: [none, int8]\nwiring: [residual, bottleneck]\n"))
    assert "quantize" in space.searched
    assert SearchSpace.from_dict(yaml.safe_load(yaml.safe_dump(space.to_dict()))) == space
    rng = random.Random(0)
    asked: list[str] = []

    def choose(axis):
        asked.append(axis.name)
        return rng.choice(axis.values())

    seen = {space.sample(choose).quantize for _ in range(40)}
    assert seen == {"none", "int8"} and "quantize" in asked
    grid = list(space.grid())
    assert {p.quantize for p in grid} == {"none", "int8"} and len(grid) == 4
    assert SearchSpace.from_dict({"quantize": "int8"}).sample(lambda axis: pytest.fail("a fixed axis is not asked")).quantize == "int8"


def test_per_stage_space_asks_quantize_per_stage():
    space = SearchSpace.from_dict({"quantize": ["none", "int8"], "stages": "per_stage"})
    asked: list[str] = []

    def choose(axis):
        asked.append(axis.name)
        return axis.values()[len(asked) % 2]

    particles = space.sample_network(choose, stages=2)
    assert asked == ["stage0.quantize", "stage1.quantize"]
    assert [p.quantize for p in particles] == ["int8", "none"]


@pytest.mark.parametrize(("raw", "fragment"), [(["none", "int4"], "space.quantize must be one of ('none', 'int8'), but got 'int4'"), (["int8", "int8"], "must not repeat a value")])
def test_bad_quantize_axis_is_one_clear_error(raw, fragment):
    with pytest.raises(SpecError) as info:
        SearchSpace.from_dict({"quantize": raw})
    assert fragment in str(info.value)
