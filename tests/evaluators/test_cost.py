from __future__ import annotations

import logging
import warnings

import pytest
from torch import nn

from particle_nas.evaluators import Cost, count_cost, count_parameters, network_cost
from particle_nas.space import WIRINGS, NetworkSpec, ParticleSpec, SpecError, build_network


def _tiny_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv3d(3, 4, kernel_size=(1, 3, 3), padding=(0, 1, 1), bias=False),  # -> (4, 2, 5, 5)
        nn.BatchNorm3d(4),  # free
        nn.ReLU(),  # free
        nn.Conv3d(4, 4, kernel_size=3, padding=1, groups=4, bias=True),  # depthwise -> (4, 2, 5, 5)
        nn.Flatten(1),
        nn.Linear(4 * 2 * 5 * 5, 7),
    )


def test_count_cost_equals_hand_computed_macs() -> None:
    cost = count_cost(_tiny_net(), input_shape=(3, 2, 5, 5))
    conv = (3 * 1 * 3 * 3) * 4 * (2 * 5 * 5)  # (cin * kernel) MACs per output element
    depthwise = (1 * 3 * 3 * 3) * 4 * (2 * 5 * 5)  # one input channel per group
    linear = 200 * 7
    assert cost.flops == conv + depthwise + linear == 5400 + 5400 + 1400


def test_count_cost_counts_parameters() -> None:
    net = _tiny_net()
    conv, bn, depthwise, linear = 4 * 3 * 9, 2 * 4, 4 * 27 + 4, 200 * 7 + 7
    assert count_cost(net, input_shape=(3, 2, 5, 5)).params == conv + bn + depthwise + linear
    assert count_parameters(net) == conv + bn + depthwise + linear
    net[0].weight.requires_grad_(False)
    assert count_parameters(net) == bn + depthwise + linear


def test_count_cost_restores_training_mode_and_is_quiet(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    net = _tiny_net().train()
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.DEBUG):
        warnings.simplefilter("always")
        count_cost(net, input_shape=(3, 2, 5, 5))
        count_cost(nn.Sequential(nn.Conv3d(3, 3, 1), nn.Identity(), nn.AdaptiveAvgPool3d(1)), input_shape=(3, 2, 5, 5))
    assert net.training
    assert caught == []
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    out, err = capfd.readouterr()
    assert out == err == ""
    net.eval()
    count_cost(net, input_shape=(3, 2, 5, 5))
    assert not net.training


def test_count_cost_uses_batch_one() -> None:
    flops = count_cost(nn.Conv3d(2, 3, 1, bias=False), input_shape=(2, 1, 4, 4)).flops
    assert flops == 2 * 3 * 16


@pytest.mark.parametrize("shape", [(3, 8, 8), (3, 0, 8, 8), (3, 8, 8.0, 8), "3888"])
def test_count_cost_rejects_bad_input_shape(shape: object) -> None:
    with pytest.raises(SpecError, match=r"count_cost.input_shape must be four positive integers"):
        count_cost(nn.Identity(), input_shape=shape)  # type: ignore[arg-type]


def test_network_cost_matches_count_cost_and_is_cached(tiny_spec) -> None:
    spec = tiny_spec()
    direct = count_cost(build_network(spec, seed=1), input_shape=spec.input_shape)
    assert network_cost(spec) == direct
    assert network_cost(spec) is network_cost(spec)
    assert isinstance(direct, Cost) and direct.flops > 0 and direct.params > 0


@pytest.mark.parametrize("wiring", WIRINGS)
@pytest.mark.parametrize("factorization", ["r2plus1d", "full", "csn_ir", "temporal_shift"])
def test_flops_drop_when_pruning(wiring: str, factorization: str, tiny_spec) -> None:
    dense = ParticleSpec(factorization=factorization, wiring=wiring)
    pruned = dense.replace(prune_ratio=0.5)
    spec = tiny_spec(dense, clip=(4, 16, 16)).replace(widths=(16, 32))
    dense_cost = network_cost(spec)
    pruned_cost = network_cost(spec.replace(particle=pruned))
    if (factorization == "csn_ir" and wiring in ("plain", "residual", "inception")) or wiring == "single":  # channel-wise second conv, or no inner channels
        assert pruned_cost == dense_cost
        return
    assert pruned_cost.flops < dense_cost.flops
    assert pruned_cost.params < dense_cost.params


def test_default_network_cost_is_plausible() -> None:
    cost = network_cost(NetworkSpec())
    # stem alone: 3 * 9 MACs per output, 16 channels, 8 x 16 x 16 outputs
    assert cost.flops > 3 * 9 * 16 * 8 * 16 * 16
    assert 10_000 < cost.params < 10_000_000


def test_cost_validates() -> None:
    with pytest.raises(ValueError, match=r"Cost.flops must be an integer >= 0, but got -1."):
        Cost(params=1, flops=-1)
