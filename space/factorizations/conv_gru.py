"""conv_gru (ConvNet + recurrence): 1 x k x k per frame, then a convolutional GRU over time (gate convs 1 x kt x kt)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from .._layers import ConvGRU
from .._parts import ACTIVATION_LAYERS, channel_groups, conv3d
from .._registry import Factorization, register_factorization

if TYPE_CHECKING:
    from .._spec import ParticleSpec
    from .._tally import Tally


def conv_gru_groups(cin: int, cout: int, *, depthwise: bool) -> tuple[int, int, int]:
    """Groups of conv_gru's ``(spatial conv, input-to-gate convs, hidden-to-gate convs)``: all 1, or channel-wise in depthwise mode."""
    if not depthwise:
        return 1, 1, 1
    return channel_groups(cin, cout), cout, cout


def _gate(cin: int, cout: int, kg: int, groups: int, *, bias: bool) -> nn.Conv3d:
    return nn.Conv3d(cin, cout, (1, kg, kg), padding=(0, kg // 2, kg // 2), groups=groups, bias=bias)


def create_conv_gru_conv(*, cin: int, cout: int, kt: int, k: int, stride: tuple[int, int], depthwise: bool, particle: ParticleSpec, basis: tuple[int, int], dense: tuple[int, int]) -> nn.Module:
    """ConvNet + recurrence: a 2D conv per frame, then a convolutional GRU over time (``ConvGRU``)::

        cin -> [1 x k x k, stride (st, s, s)] -> cout -> BN -> act -> x_t (every st-th frame)
        x_t, h_{t-1} -> gates z, r and candidate n: [1 x kt x kt] convs on x_t (with bias) + on h_{t-1} (or r * h_{t-1})
                     -> h_t = (1 - z) h_{t-1} + z n, h_0 = 0 -> cout, one hidden state per frame

    ``kt`` (the particle's temporal_kernel) is the gate convs' kernel: the GRU
    itself reaches every earlier frame. In depthwise mode every conv is channel-wise.
    """
    g_spatial, g_x, g_h = conv_gru_groups(cin, cout, depthwise=depthwise)
    return nn.Sequential(
        conv3d(cin, cout, (1, k, k), (stride[0], stride[1], stride[1]), g_spatial),
        nn.BatchNorm3d(cout),
        ACTIVATION_LAYERS[particle.activation](),
        ConvGRU(
            update_x=_gate(cout, cout, kt, g_x, bias=True),
            reset_x=_gate(cout, cout, kt, g_x, bias=True),
            candidate_x=_gate(cout, cout, kt, g_x, bias=True),
            update_h=_gate(cout, cout, kt, g_h, bias=False),
            reset_h=_gate(cout, cout, kt, g_h, bias=False),
            candidate_h=_gate(cout, cout, kt, g_h, bias=False),
        ),
    )


def conv_gru_cost(tally: Tally, *, cin: int, cout: int, kt: int, k: int, stride: tuple[int, int], depthwise: bool, particle: ParticleSpec, basis: tuple[int, int], dense: tuple[int, int]) -> None:
    """Spatial conv, then 3 input-to-gate convs (with bias) on every frame and 3 hidden-to-gate convs once per frame, h_0 included."""
    g_spatial, g_x, g_h = conv_gru_groups(cin, cout, depthwise=depthwise)
    tally.conv(cin, cout, 1, k, stride[0], stride[1], g_spatial)
    tally.norm(cout)
    tally.act(cout)
    for _ in range(3):  # update, reset, candidate
        tally.conv(cout, cout, 1, kt, 1, 1, g_x)
        tally.params += cout  # bias
        tally.conv(cout, cout, 1, kt, 1, 1, g_h)  # T calls of one frame each: the same count as one call over T frames
    tally.keep(cout)  # the stacked hidden states (each gate conv's count stands for one of the per-frame tensors the recurrence keeps)


# Pruning: the GRU's hidden channels are inner channels; torch-pruning follows the recurrence through the traced frames.
CONV_GRU = register_factorization(
    Factorization(
        name="conv_gru",
        build=create_conv_gru_conv,
        cost=conv_gru_cost,
        recurrent=True,
        not_inflatable="its temporal_kernel sizes the GRU's gate convs, which a 2D network does not have: nothing to inflate",
    )
)
