"""Every registry entry against the others: built cost = the entry's analytic cost = fvcore, and every facet present and obeyed.

Adding a factorization or a wiring is one module in space/factorizations/ or space/wirings/ and its test;
the tests here then run over it with no change.
"""

from __future__ import annotations

import dataclasses

import pytest
from torch import nn

from particle_nas.evaluators import count_cost
from particle_nas.space import (
    FACTORIZATION_BUILDERS,
    FACTORIZATION_COSTS,
    FACTORIZATIONS,
    INFLATABLE,
    KERNELS,
    NOT_INFLATABLE,
    WIRING_BUILDERS,
    WIRING_COSTS,
    WIRINGS,
    Cost,
    Factorization,
    NetworkSpec,
    ParticleSpec,
    SearchSpace,
    SpecError,
    Wiring,
    build_network,
    build_particle,
    cost,
    effective_prune_ratio,
    get_factorization,
    get_wiring,
    register_factorization,
    register_wiring,
)
from particle_nas.space._spec import DEFAULT_EXPANSION, EXPANDING_WIRINGS, NO_TEMPORAL_KERNEL, RECURRENT
from particle_nas.space._tally import Tally

# A value other than the default for every field an entry may own (a new owned field adds its line here).
NON_DEFAULT = {"r2plus1d_mid": "block", "branch_fractions": (0.25, 0.25, 0.25, 0.25), "reduce_fractions": (0.5, 0.5), "branch_widths": (1, 1, 1, 1, 1, 1)}
CLIP = (5, 9, 9)  # (T, H, W) each entry is costed at


def _particle(factorization: str, wiring: str = "residual", **changes) -> ParticleSpec:
    entry = get_factorization(factorization)
    kt = 1 if not entry.temporal_kernel else max(3, entry.min_temporal_kernel)
    return ParticleSpec(factorization=factorization, wiring=wiring, temporal_kernel=kt, **changes)


def _tallied(entry_cost, *args, **kwargs) -> Cost:
    tally = Tally(*CLIP)
    entry_cost(tally, *args, **kwargs)
    return Cost(params=tally.params, flops=tally.flops)


# ---------------------------------------------------------------- built cost = the entry's cost = fvcore
@pytest.mark.parametrize("factorization", FACTORIZATIONS)
@pytest.mark.parametrize(("cin", "cout", "stride", "depthwise"), [(6, 8, (1, 1), False), (6, 8, (2, 2), False), (8, 8, (2, 1), True), (6, 9, (1, 2), True)])
def test_each_factorization_costs_what_it_builds(factorization, cin, cout, stride, depthwise):
    entry = get_factorization(factorization)
    particle = _particle(factorization, squeeze_excite=0.25, prune_ratio=0.25)
    args = dict(cin=cin, cout=cout, kt=particle.temporal_kernel, k=particle.spatial_kernel, stride=stride, depthwise=depthwise, particle=particle, basis=(5, 7), dense=(cin + 2, cout))
    module = entry.build(**args)
    assert _tallied(entry.cost, **args) == count_cost(module, input_shape=(cin, *CLIP))


@pytest.mark.parametrize("factorization", FACTORIZATIONS)
@pytest.mark.parametrize("wiring", WIRINGS)
@pytest.mark.parametrize(("cin", "cout", "stride"), [(8, 8, (1, 1)), (6, 12, (2, 2))])
def test_each_wiring_costs_what_it_builds(factorization, wiring, cin, cout, stride):
    entry = get_wiring(wiring)
    particle = _particle(factorization, wiring, squeeze_excite=0.25, prune_ratio=0.25)
    block = entry.build(particle=particle, cin=cin, cout=cout, stride=stride)
    assert _tallied(entry.cost, particle=particle, cin=cin, cout=cout, stride=stride) == count_cost(block, input_shape=(cin, *CLIP))
    assert isinstance(build_particle(particle, in_channels=cin, out_channels=cout, stride=stride), type(block))


@pytest.mark.parametrize("factorization", FACTORIZATIONS)
@pytest.mark.parametrize("wiring", WIRINGS)
def test_every_factorization_and_wiring_is_costed(factorization: str, wiring: str) -> None:
    particle = _particle(factorization, wiring, squeeze_excite=0.25, prune_ratio=0.25)
    spec = NetworkSpec(particle=particle, widths=(8, 12), depths=(1, 2), temporal_strides=(1, 2), spatial_strides=(1, 2), clip=(5, 15, 15))
    assert cost(spec) == count_cost(build_network(spec), input_shape=spec.input_shape)


# ---------------------------------------------------------------- every facet
def test_the_registry_is_the_order_and_the_views() -> None:
    assert FACTORIZATIONS == ("full", "r2plus1d", "csn_ip", "csn_ir", "spatial_only", "temporal_shift", "p3d_b", "depthwise_2plus1d", "conv_gru")
    assert WIRINGS == ("plain", "residual", "bottleneck", "inverted", "single", "inception")
    assert list(FACTORIZATION_BUILDERS) == list(FACTORIZATION_COSTS) == list(FACTORIZATIONS)
    assert list(WIRING_BUILDERS) == list(WIRING_COSTS) == list(WIRINGS)
    for name in FACTORIZATIONS:
        entry = get_factorization(name)
        assert (FACTORIZATION_BUILDERS[name], FACTORIZATION_COSTS[name]) == (entry.build, entry.cost)
    for name in WIRINGS:
        entry = get_wiring(name)
        assert (WIRING_BUILDERS[name], WIRING_COSTS[name], DEFAULT_EXPANSION[name]) == (entry.build, entry.cost, entry.default_expansion)
    assert INFLATABLE == tuple(n for n in FACTORIZATIONS if get_factorization(n).not_inflatable is None)
    assert NOT_INFLATABLE == {n: get_factorization(n).not_inflatable for n in FACTORIZATIONS if n not in INFLATABLE}
    assert NO_TEMPORAL_KERNEL == {n for n in FACTORIZATIONS if not get_factorization(n).temporal_kernel}
    assert RECURRENT == {n for n in FACTORIZATIONS if get_factorization(n).recurrent}
    assert EXPANDING_WIRINGS == {n for n in WIRINGS if get_wiring(n).expands}


@pytest.mark.parametrize("factorization", FACTORIZATIONS)
def test_every_factorization_has_every_facet(factorization: str) -> None:
    entry = get_factorization(factorization)
    assert isinstance(entry, Factorization) and entry.name == factorization
    assert callable(entry.build) and callable(entry.cost) and callable(entry.check)  # builder, analytic cost, rules
    assert entry.not_inflatable is None or (isinstance(entry.not_inflatable, str) and entry.not_inflatable)  # inflation
    assert isinstance(entry.channelwise_output, bool)  # pruning
    assert all(isinstance(kind, type) and issubclass(kind, nn.Module) for kind in entry.traced_as_identity)
    assert set(entry.owned_fields) <= set(NON_DEFAULT) and all(ParticleSpec.__dataclass_fields__[f].default == d for f, d in entry.owned_fields.items())
    assert set(entry.owned_fields) <= set(entry.reads) <= set(ParticleSpec.__dataclass_fields__)
    # What the pruning tracer must see as the identity is what the builder makes.
    built = build_particle(_particle(factorization), in_channels=8, out_channels=8)
    assert all(any(isinstance(m, kind) for m in built.modules()) for kind in entry.traced_as_identity)


@pytest.mark.parametrize("wiring", WIRINGS)
def test_every_wiring_has_every_facet(wiring: str) -> None:
    entry = get_wiring(wiring)
    assert isinstance(entry, Wiring) and entry.name == wiring
    assert callable(entry.build) and callable(entry.cost) and callable(entry.check)
    assert entry.check_width is None or callable(entry.check_width)
    assert entry.expands or entry.default_expansion == 1.0
    assert isinstance(entry.prunable, bool) and isinstance(entry.conv_writes_output, bool)
    assert set(entry.owned_fields) <= set(NON_DEFAULT) and all(ParticleSpec.__dataclass_fields__[f].default == d for f, d in entry.owned_fields.items())


# ---------------------------------------------------------------- the rules each entry states are the rules a spec obeys
@pytest.mark.parametrize("factorization", FACTORIZATIONS)
def test_temporal_kernel_rules_come_from_the_entry(factorization: str) -> None:
    entry = get_factorization(factorization)
    if not entry.temporal_kernel:
        with pytest.raises(SpecError, match=rf"ParticleSpec.temporal_kernel must be 1 when factorization is '{factorization}'"):
            ParticleSpec(factorization=factorization, temporal_kernel=3)
    for kt in (k for k in (1, 3) if k < entry.min_temporal_kernel):
        with pytest.raises(SpecError, match=rf"ParticleSpec.temporal_kernel must be >= {entry.min_temporal_kernel} when factorization is '{factorization}'"):
            ParticleSpec(factorization=factorization, temporal_kernel=kt)
    assert _particle(factorization).mixes_time == (entry.recurrent or entry.temporal_kernel)
    # A search samples only the kernels it accepts, and asks the fields only it reads.
    space = SearchSpace.from_dict({"factorization": [factorization], "temporal_kernel": list(KERNELS) if entry.temporal_kernel else [1]})
    asked: list[str] = []
    for particle in space.grid():
        assert particle.temporal_kernel >= entry.min_temporal_kernel
    space.sample(lambda axis: asked.append(axis.name) or axis.values()[-1])
    assert not any(name in asked for other in FACTORIZATIONS if other != factorization for name in get_factorization(other).reads)


@pytest.mark.parametrize("owner", [*(("factorization", n) for n in FACTORIZATIONS), *(("wiring", n) for n in WIRINGS)], ids=str)
def test_owned_fields_are_refused_elsewhere(owner) -> None:
    kind, name = owner
    entry = get_factorization(name) if kind == "factorization" else get_wiring(name)
    other = next(n for n in (FACTORIZATIONS if kind == "factorization" else WIRINGS) if n != name)
    for field in entry.owned_fields:
        with pytest.raises(SpecError, match=rf"ParticleSpec.{field} must .* unless {kind} is '{name}'"):
            ParticleSpec(**{kind: other, field: NON_DEFAULT[field]})


@pytest.mark.parametrize("factorization", FACTORIZATIONS)
@pytest.mark.parametrize("wiring", WIRINGS)
def test_pruning_rule_comes_from_both_entries(factorization: str, wiring: str) -> None:
    conv, block = get_factorization(factorization), get_wiring(wiring)
    tied = (conv.channelwise_output and block.conv_writes_output) or not block.prunable
    assert effective_prune_ratio(_particle(factorization, wiring, prune_ratio=0.5)) == (0.0 if tied else 0.5)


# ---------------------------------------------------------------- registering
def test_a_name_is_registered_once() -> None:
    with pytest.raises(ValueError, match=r"^Factorization.name must be unique, but got 'full' \(already registered\)$"):
        register_factorization(get_factorization("full"))
    with pytest.raises(ValueError, match=r"^Wiring.name must be unique, but got 'plain' \(already registered\)$"):
        register_wiring(dataclasses.replace(get_wiring("plain")))
    assert FACTORIZATIONS == tuple(FACTORIZATION_BUILDERS)


def test_an_entry_must_be_an_entry_with_callables() -> None:
    with pytest.raises(TypeError, match="register_factorization expects a Factorization, but got Wiring"):
        register_factorization(get_wiring("plain"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^Factorization.cost must be callable, but got None$"):
        register_factorization(dataclasses.replace(get_factorization("full"), name="toy", cost=None))
    with pytest.raises(ValueError, match=r"^Wiring.name must be a short identifier, but got 'two words'$"):
        register_wiring(dataclasses.replace(get_wiring("plain"), name="two words"))
    with pytest.raises(KeyError):
        get_factorization("toy")
