from __future__ import annotations

import pytest
import torch

from particle_nas.space import FACTORIZATIONS, WIRINGS, Adapter, NetworkSpec, ParticleSpec, SpecError, adapter_width, add_adapters, build_network

PAIRS = [(f, w) for f in FACTORIZATIONS for w in WIRINGS]


def _network(factorization: str, wiring: str) -> NetworkSpec | None:
    try:
        particle = ParticleSpec(factorization=factorization, wiring=wiring, temporal_kernel=1 if factorization == "spatial_only" else 3, squeeze_excite=0.25)
    except SpecError:
        return None  # a combination the space does not allow
    return NetworkSpec(particle=particle, stem_channels=8, widths=(8, 16), depths=(1, 2), temporal_strides=(1, 2), spatial_strides=(1, 2), clip=(4, 16, 16), num_classes=5)


@pytest.mark.parametrize(("factorization", "wiring"), PAIRS)
def test_fresh_adapters_leave_every_network_unchanged_and_its_keys_in_place(factorization: str, wiring: str) -> None:
    spec = _network(factorization, wiring)
    if spec is None:
        pytest.skip(f"{factorization} / {wiring} is not a valid particle")
    torch.manual_seed(0)
    model = build_network(spec, seed=0).eval()
    x = torch.randn(2, 3, 4, 16, 16)
    before, keys = model(x), set(model.state_dict())
    names = add_adapters(model, reduction=4)
    assert len(names) == sum(spec.depths)
    assert torch.equal(model(x), before)  # the up-projection starts at zero: each adapter is the identity
    added = set(model.state_dict()) - keys
    assert keys <= set(model.state_dict()) and added and all(".adapter." in k for k in added)
    for name in names:
        adapter = model.get_submodule(name).adapter
        assert isinstance(adapter, Adapter) and adapter.down.out_channels == adapter_width(adapter.down.in_channels, reduction=4)
        assert not adapter.up.weight.any() and not adapter.up.bias.any()
    with torch.no_grad():  # trained adapters do change the output
        for name in names:
            model.get_submodule(name).adapter.up.weight.fill_(0.01)
    assert not torch.equal(model(x), before)


def test_add_adapters_refuses_a_second_call_and_bad_reductions() -> None:
    model = build_network(_network("full", "residual"), seed=0)
    with pytest.raises(SpecError, match="add_adapters.reduction must be >= 1.0, but got 0.5"):
        add_adapters(model, reduction=0.5)
    add_adapters(model)
    with pytest.raises(ValueError, match="must be called once per model"):
        add_adapters(model)
    with pytest.raises(ValueError, match="needs a network of particles"):
        add_adapters(torch.nn.Sequential(torch.nn.Conv3d(3, 4, 1)))
