from __future__ import annotations

import pytest
import torch

from particle_nas.space import (
    FACTORIZATIONS,
    WIRINGS,
    NetworkSpec,
    ParticleSpec,
    TemporalShift,
    build_network,
    build_particle,
    effective_prune_ratio,
    r2plus1d_mid_width,
)


def _particle(factorization: str, wiring: str, **changes) -> ParticleSpec:
    kt = 1 if factorization == "spatial_only" else 3
    return ParticleSpec(factorization=factorization, wiring=wiring, temporal_kernel=kt, **changes)


@pytest.mark.parametrize("factorization", FACTORIZATIONS)
@pytest.mark.parametrize("wiring", WIRINGS)
def test_every_particle_builds_and_runs(factorization, wiring):
    torch.manual_seed(0)
    spec = NetworkSpec(particle=_particle(factorization, wiring, squeeze_excite=0.25), widths=(8, 16), depths=(1, 2), spatial_strides=(1, 2), temporal_strides=(1, 2), clip=(4, 16, 16))
    net = build_network(spec, seed=0)
    x = torch.randn(2, *spec.input_shape)
    y = net(x)
    assert y.shape == (2, spec.num_classes)
    assert torch.isfinite(y).all()
    y.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters() if p.requires_grad)


@pytest.mark.parametrize("factorization", FACTORIZATIONS)
@pytest.mark.parametrize("wiring", WIRINGS)
@pytest.mark.parametrize(("stride", "cin", "cout"), [((1, 1), 8, 8), ((2, 2), 8, 16)])
def test_particle_output_shape(factorization, wiring, stride, cin, cout):
    block = build_particle(_particle(factorization, wiring), in_channels=cin, out_channels=cout, stride=stride).eval()
    y = block(torch.randn(1, cin, 6, 10, 10))
    assert y.shape == (1, cout, 3 if stride[0] == 2 else 6, 5 if stride[1] == 2 else 10, 5 if stride[1] == 2 else 10)


def test_seeded_build_is_reproducible():
    spec = NetworkSpec()
    a, b = build_network(spec, seed=3), build_network(spec, seed=3)
    c = build_network(spec, seed=4)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert not all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), c.state_dict().values()))


def test_spatial_only_network_ignores_frame_order():
    """No temporal mixing and global pooling: shuffling frames cannot change the output."""
    net = build_network(NetworkSpec(particle=_particle("spatial_only", "residual"), clip=(6, 16, 16)), seed=0).eval()
    x = torch.randn(2, 3, 6, 16, 16)
    with torch.no_grad():
        assert torch.allclose(net(x), net(x[:, :, torch.randperm(6)]), atol=1e-5)
        temporal = build_network(NetworkSpec(particle=_particle("full", "residual"), clip=(6, 16, 16)), seed=0).eval()
        assert not torch.allclose(temporal(x), temporal(x.flip(2)), atol=1e-5)


def test_r2plus1d_mid_width_matches_full_conv_params():
    cin, cout, kt, k = 64, 64, 3, 3
    mid = r2plus1d_mid_width(cin, cout, temporal_kernel=kt, spatial_kernel=k)
    assert mid == 144  # the R(2+1)D paper's figure for 64 -> 64 with 3x3x3
    full = kt * k * k * cin * cout
    factored = k * k * cin * mid + kt * mid * cout
    assert abs(factored - full) / full < 0.01


def test_temporal_shift_moves_channels_and_zero_fills():
    x = torch.arange(8.0).view(1, 1, 8, 1, 1).repeat(1, 8, 1, 1, 1)  # channel c, frame t holds t
    y = TemporalShift(fold=2, reach=1)(x)
    assert y[0, 0, :, 0, 0].tolist() == [1, 2, 3, 4, 5, 6, 7, 0]  # sees the next frame
    assert y[0, 2, :, 0, 0].tolist() == [0, 0, 1, 2, 3, 4, 5, 6]  # sees the previous frame
    assert torch.equal(y[:, 4:], x[:, 4:])


@pytest.mark.parametrize("wiring", WIRINGS)
def test_pruning_shrinks_inner_layers(wiring):
    full = build_particle(_particle("full", wiring), in_channels=16, out_channels=16)
    pruned = build_particle(_particle("full", wiring, prune_ratio=0.5), in_channels=16, out_channels=16)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    if wiring == "single":  # its one conv writes the block's output: nothing inner to prune
        assert count(pruned) == count(full) and effective_prune_ratio(_particle("full", wiring, prune_ratio=0.5)) == 0
        return
    assert count(pruned) < 0.75 * count(full)


def test_seeded_build_leaves_the_global_rng_alone():
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    build_network(NetworkSpec(), seed=5)
    assert torch.equal(torch.rand(3), expected)
