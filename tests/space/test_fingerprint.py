"""Networks identified by what they build: equal fingerprints compute the same outputs from the same weights, unequal ones differ."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from particle_nas.config import load_config
from particle_nas.space import NetworkSpec, ParticleSpec, build_network, effective_prune_ratio, network_fingerprint

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart.yaml"
SMALL = NetworkSpec(widths=(8, 16), depths=(1, 1), temporal_strides=(1, 1), spatial_strides=(1, 2), stem_channels=8, clip=(4, 16, 16), num_classes=4)


def _outputs(spec: NetworkSpec, *, weights_of: NetworkSpec | None = None) -> torch.Tensor:
    """``spec``'s network in eval mode on a fixed clip, its weights and buffers taken in order from ``weights_of``'s seeded network."""
    model = build_network(spec, seed=0)
    if weights_of is not None:
        source = build_network(weights_of, seed=0)
        mine, theirs = list(model.state_dict().items()), list(source.state_dict().values())
        assert [tuple(v.shape) for _, v in mine] == [tuple(v.shape) for v in theirs]  # the same tensors, in the same order
        model.load_state_dict({k: v for (k, _), v in zip(mine, theirs)})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        clip = torch.randn(2, spec.in_channels, *spec.clip)
    with torch.no_grad():
        return model.eval()(clip)


def _stages(spec: NetworkSpec) -> list[NetworkSpec]:
    """The networks a spec's evaluation runs: the one it builds, and first, when it prunes, the unpruned one it trains."""
    unpruned = spec.replace(particle=spec.particle.replace(prune_ratio=0.0))
    return [spec, unpruned] if effective_prune_ratio(spec.particle) > 0 else [spec, spec]


def _check(specs: list[NetworkSpec]) -> tuple[int, int]:
    """Group ``specs`` by fingerprint; every member of a group computes its first member's outputs from its weights (in the network
    it trains and in the one it ends with), and the groups' outputs all differ.

    A spec that prunes counts with the network it trains: bottleneck expansion 2 pruned by half ends as expansion 1 unpruned,
    but trains twice the width first, so they are two networks.
    """
    groups: dict[str, list[NetworkSpec]] = {}
    for spec in specs:
        groups.setdefault(network_fingerprint(spec), []).append(spec)
    outputs = []
    for members in groups.values():
        first = torch.cat([_outputs(s).flatten() for s in _stages(members[0])])
        for twin in members[1:]:
            again = torch.cat([_outputs(s, weights_of=w).flatten() for s, w in zip(_stages(twin), _stages(members[0]))])
            assert torch.equal(again, first), (members[0].particle, twin.particle)
        outputs.append(first)
    stacked = torch.stack(outputs).double()
    norms = stacked.norm(dim=1)
    gaps = torch.cdist(stacked, stacked) / (norms[:, None] + norms[None, :]) + torch.eye(len(outputs)) * 1e9  # relative: some outputs are tiny at init
    assert gaps.min().item() > 1e-4  # no two networks with different fingerprints compute the same thing
    return len(specs), len(groups)


def test_twins_share_a_fingerprint_and_their_outputs():
    """csn_ir/inverted builds full/inverted (the middle conv is depthwise either way); csn_ir/plain cannot prune."""
    twins = [
        ParticleSpec(factorization="full", wiring="inverted", expansion=2.0, squeeze_excite=0.25, prune_ratio=0.5),
        ParticleSpec(factorization="csn_ir", wiring="inverted", expansion=2.0, squeeze_excite=0.25, prune_ratio=0.5),
        ParticleSpec(factorization="csn_ir", wiring="plain"),
        ParticleSpec(factorization="csn_ir", wiring="plain", prune_ratio=0.25),
    ]
    others = [
        ParticleSpec(factorization="full", wiring="inverted", expansion=2.0, squeeze_excite=0.25, prune_ratio=0.25),  # another width
        ParticleSpec(factorization="full", wiring="inverted", expansion=2.0, squeeze_excite=0.25, activation="silu", prune_ratio=0.5),
        ParticleSpec(factorization="csn_ip", wiring="inverted", expansion=2.0, squeeze_excite=0.25, prune_ratio=0.5),
        ParticleSpec(factorization="full", wiring="residual"),
        ParticleSpec(factorization="temporal_shift", wiring="residual", temporal_kernel=3),
        ParticleSpec(factorization="temporal_shift", wiring="residual", temporal_kernel=3, shift_fraction=0.125),
    ]
    specs = [SMALL.replace(particle=p) for p in twins + others]
    assert _check(specs) == (10, 8)
    fingerprints = [network_fingerprint(s) for s in specs]
    assert fingerprints[0] == fingerprints[1] and fingerprints[2] == fingerprints[3] and len(set(fingerprints[4:])) == 6
    assert network_fingerprint(SMALL.replace(clip=(4, 32, 32), particle=twins[0])) != fingerprints[0]  # the input clip is part of it
    assert network_fingerprint(SMALL.replace(particle=twins[3].replace(quantize="int8"))) != fingerprints[3]  # so is what is done after training


def test_a_fingerprint_leaves_the_global_random_state_as_it_was():
    torch.manual_seed(3)
    before = torch.random.get_rng_state()
    network_fingerprint(SMALL.replace(particle=ParticleSpec(factorization="r2plus1d", wiring="bottleneck", activation="silu")))
    assert torch.equal(torch.random.get_rng_state(), before)


@pytest.mark.slow
def test_over_the_whole_quickstart_grid_equal_fingerprints_compute_equal_outputs_and_unequal_ones_differ():
    config = load_config(QUICKSTART)
    specs = [config.network.replace(particle=p) for p in config.space.grid()]
    assert _check(specs) == (1056, 952)
