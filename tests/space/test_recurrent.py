"""conv_gru: a 2D conv per frame, then a convolutional GRU over time."""

from __future__ import annotations

import pytest
import torch

from particle_nas.evaluators import count_cost
from particle_nas.space import WIRINGS, ConvGRU, NetworkSpec, ParticleSpec, SearchSpace, build_network, build_particle, cost


def _gru(block: torch.nn.Module) -> ConvGRU:
    (gru,) = [m for m in block.modules() if isinstance(m, ConvGRU)][:1]
    return gru


def _reference_gru(gru: ConvGRU, x: torch.Tensor) -> torch.Tensor:
    """The GRU of 1x1x1 gate convs written out per pixel: h_t = (1 - z) h + z tanh(W_n x + U_n (r h))."""

    def mix(conv: torch.nn.Conv3d, v: torch.Tensor) -> torch.Tensor:  # v: (N, C, H, W)
        out = torch.einsum("oc,nchw->nohw", conv.weight[:, :, 0, 0, 0], v)
        return out if conv.bias is None else out + conv.bias.view(1, -1, 1, 1)

    h = torch.zeros(x.shape[0], gru.update_h.out_channels, *x.shape[3:])
    states = []
    for t in range(x.shape[2]):
        frame = x[:, :, t]
        z = torch.sigmoid(mix(gru.update_x, frame) + mix(gru.update_h, h))
        r = torch.sigmoid(mix(gru.reset_x, frame) + mix(gru.reset_h, h))
        n = torch.tanh(mix(gru.candidate_x, frame) + mix(gru.candidate_h, r * h))
        h = (1 - z) * h + z * n
        states.append(h)
    return torch.stack(states, dim=2)


def test_conv_gru_is_the_gru_recurrence():
    torch.manual_seed(0)
    gru = _gru(build_particle(ParticleSpec(factorization="conv_gru", wiring="single", temporal_kernel=1), in_channels=4, out_channels=6))
    with torch.no_grad():
        for p in gru.parameters():
            p.copy_(torch.randn_like(p))  # biases too: the builder zeroes them
        x = torch.randn(2, 6, 5, 3, 4)
        assert torch.allclose(gru(x), _reference_gru(gru, x), atol=1e-5)


def test_conv_gru_is_causal_and_mixes_time():
    """Frame t's output depends on frames 0..t only, and on all of them (h_0 = 0, T preserved)."""
    torch.manual_seed(0)
    block = build_particle(ParticleSpec(factorization="conv_gru", wiring="residual", temporal_kernel=3), in_channels=4, out_channels=4).eval()
    x = torch.randn(1, 4, 6, 8, 8)
    later = x.clone()
    later[:, :, 4:] = torch.randn(1, 4, 2, 8, 8)
    earlier = x.clone()
    earlier[:, :, 0] = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        y, y_later, y_earlier = block(x), block(later), block(earlier)
    assert y.shape == x.shape
    assert torch.equal(y[:, :, :4], y_later[:, :, :4]) and not torch.allclose(y[:, :, 4:], y_later[:, :, 4:])
    assert all(not torch.allclose(y[:, :, t], y_earlier[:, :, t]) for t in range(6))  # frame 0 reaches the last frame
    assert ParticleSpec(factorization="conv_gru", temporal_kernel=1).mixes_time


def test_temporal_stride_subsamples_frames_before_the_gru():
    torch.manual_seed(0)
    block = build_particle(ParticleSpec(factorization="conv_gru", wiring="single"), in_channels=3, out_channels=5, stride=(2, 1)).eval()
    x = torch.randn(1, 3, 7, 6, 6)
    with torch.no_grad():
        y = block(x)
        conv = block.branch[0][0]
        assert y.shape == (1, 5, 4, 6, 6)
        kept = torch.nn.functional.conv3d(x[:, :, ::2], conv.weight, padding=conv.padding)  # frames 0, 2, 4, 6 at stride 1
        assert torch.allclose(conv(x), kept, atol=1e-6)


@pytest.mark.parametrize("kt", [1, 3, 5])
def test_temporal_kernel_sizes_the_gate_convs(kt):
    block = build_particle(ParticleSpec(factorization="conv_gru", wiring="residual", temporal_kernel=kt), in_channels=8, out_channels=8)
    gru = _gru(block)
    assert {m.kernel_size for m in gru.children()} == {(1, kt, kt)}
    assert all(m.bias is not None for m in (gru.update_x, gru.reset_x, gru.candidate_x))
    assert all(m.bias is None for m in (gru.update_h, gru.reset_h, gru.candidate_h))


def test_inverted_wiring_makes_the_gru_channel_wise():
    block = build_particle(ParticleSpec(factorization="conv_gru", wiring="inverted"), in_channels=8, out_channels=8)
    gru = _gru(block)
    inner = gru.update_h.out_channels
    assert inner == 32 and all(m.groups == inner for m in gru.children())


def test_cost_formula_by_hand():
    """One single-wired conv_gru stage: spatial conv, then 3 gates of (x conv + bias) and (h conv), all per frame."""
    particle = ParticleSpec(factorization="conv_gru", wiring="single", temporal_kernel=3, spatial_kernel=3)
    spec = NetworkSpec(particle=particle, widths=(6,), depths=(1,), temporal_strides=(1,), spatial_strides=(1,), stem_channels=4, stem_stride=(1, 1), clip=(5, 8, 8), in_channels=1, num_classes=2)
    positions = 5 * 8 * 8
    stem = 4 * 1 * 9
    spatial = 6 * 4 * 9
    gates = 3 * (6 * 6 * 9 + 6 * 6 * 9)  # per gate: x conv (6 -> 6, 1x3x3) and h conv (6 -> 6, 1x3x3)
    head = 6 * 2
    assert cost(spec).flops == (stem + spatial + gates) * positions + head
    assert cost(spec).params == stem + 2 * 4 + spatial + 2 * 6 + gates + 3 * 6 + 2 * 6 + head + 2
    assert cost(spec) == count_cost(build_network(spec), input_shape=spec.input_shape)


@pytest.mark.parametrize("wiring", WIRINGS)
def test_every_wiring_costs_as_fvcore_counts_with_strides_and_odd_clips(wiring):
    particle = ParticleSpec(factorization="conv_gru", wiring=wiring, temporal_kernel=5, spatial_kernel=1, prune_ratio=0.5, squeeze_excite=0.25)
    spec = NetworkSpec(particle=particle, widths=(6, 10), depths=(2, 1), temporal_strides=(2, 2), spatial_strides=(1, 2), stem_channels=5, clip=(7, 11, 9))
    assert cost(spec) == count_cost(build_network(spec), input_shape=spec.input_shape)


def test_search_domain_asks_the_gate_kernel_under_its_own_name():
    space = SearchSpace.from_dict({"factorization": ["full", "conv_gru"], "temporal_kernel": [1, 3]})
    asked: dict[str, tuple] = {}

    def choose(axis):
        asked[axis.name] = axis.values()
        return axis.values()[-1]

    assert space.sample(lambda axis: "conv_gru" if axis.name == "factorization" else choose(axis)).temporal_kernel == 3
    assert asked == {"temporal_kernel@conv_gru": (1, 3)}
    asked.clear()
    assert space.sample(lambda axis: "full" if axis.name == "factorization" else choose(axis)).factorization == "full"
    assert asked == {"temporal_kernel": (1, 3)}
    grid = list(space.grid())
    assert {(p.factorization, p.temporal_kernel) for p in grid} == {("full", 1), ("full", 3), ("conv_gru", 1), ("conv_gru", 3)}
