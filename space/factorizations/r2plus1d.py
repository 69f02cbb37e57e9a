"""r2plus1d (R(2+1)D): 1 x k x k, then kt x 1 x 1, mid channels by the parameter-matching rule."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from .._parts import ACTIVATION_LAYERS, channel_groups, conv3d, pruned_width
from .._registry import Factorization, effective_prune_ratio, register_factorization

if TYPE_CHECKING:
    from .._spec import ParticleSpec
    from .._tally import Tally


def r2plus1d_mid_width(in_channels: int, out_channels: int, *, temporal_kernel: int, spatial_kernel: int) -> int:
    """R(2+1)D's rule: mid channels that give the (2+1)D pair the parameters of the full kt x k x k conv."""
    kt, k = temporal_kernel, spatial_kernel
    return max(1, (kt * k * k * in_channels * out_channels) // (k * k * in_channels + kt * out_channels))


def r2plus1d_widths(
    *, cin: int, cout: int, kt: int, k: int, depthwise: bool, particle: ParticleSpec, dense: tuple[int, int], basis: tuple[int, int]
) -> tuple[int, int, int]:
    """``(mid, groups of the spatial conv, groups of the temporal conv)`` of an r2plus1d conv from ``cin`` to ``cout``.

    ``dense`` and ``basis`` are the unpruned widths of this conv and of the
    block's first conv; the mid width follows R(2+1)D's rule on them, minus the
    pruned fraction (mid channels are inner channels).
    """
    if depthwise:
        return cin, cin, channel_groups(cin, cout)
    mid_in, mid_out = basis if particle.r2plus1d_mid == "block" else dense
    mid = dense[1] if particle.r2plus1d_mid == "out" else r2plus1d_mid_width(mid_in, mid_out, temporal_kernel=kt, spatial_kernel=k)
    return pruned_width(mid, prune_ratio=effective_prune_ratio(particle)), 1, 1


def create_r2plus1d_conv(*, cin: int, cout: int, kt: int, k: int, stride: tuple[int, int], depthwise: bool, particle: ParticleSpec, basis: tuple[int, int], dense: tuple[int, int]) -> nn.Module:
    """``cin -> [1 x k x k, stride (1, s, s)] -> mid -> BN -> act -> [kt x 1 x 1, stride (st, 1, 1)] -> cout``.

    ``mid`` follows R(2+1)D's parameter-matching rule on the unpruned ``(cin, cout)``,
    or on ``basis`` (the block's first particle conv) when ``particle.r2plus1d_mid``
    is "block", minus the pruned fraction; in depthwise mode both convs are
    channel-wise and ``mid = cin`` (see ``r2plus1d_widths``).
    """
    mid, g1, g2 = r2plus1d_widths(cin=cin, cout=cout, kt=kt, k=k, depthwise=depthwise, particle=particle, dense=dense, basis=basis)
    return nn.Sequential(
        conv3d(cin, mid, (1, k, k), (1, stride[1], stride[1]), g1),
        nn.BatchNorm3d(mid),
        ACTIVATION_LAYERS[particle.activation](),
        conv3d(mid, cout, (kt, 1, 1), (stride[0], 1, 1), g2),
    )


def r2plus1d_cost(tally: Tally, *, cin: int, cout: int, kt: int, k: int, stride: tuple[int, int], depthwise: bool, particle: ParticleSpec, basis: tuple[int, int], dense: tuple[int, int]) -> None:
    mid, g1, g2 = r2plus1d_widths(cin=cin, cout=cout, kt=kt, k=k, depthwise=depthwise, particle=particle, dense=dense, basis=basis)
    tally.conv(cin, mid, 1, k, 1, stride[1], g1)
    tally.norm(mid)
    tally.act(mid)
    tally.conv(mid, cout, kt, 1, stride[0], 1, g2)


R2PLUS1D = register_factorization(
    Factorization(
        name="r2plus1d",
        build=create_r2plus1d_conv,
        cost=r2plus1d_cost,
        owned_fields={"r2plus1d_mid": "conv"},  # where the mid width comes from: see R2PLUS1D_MIDS
        reads=("r2plus1d_mid",),
        not_inflatable="its mid width follows the temporal kernel, so its 2D form has other layer widths (and a (2+1)D split is not I3D's rule)",
    )
)
