"""temporal_shift (TSM): shift a fraction of channels along time, then 1 x k x k."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from .._layers import TemporalShift
from .._registry import Factorization, register_factorization
from .spatial_only import create_spatial_only_conv, spatial_only_cost

if TYPE_CHECKING:
    from .._spec import ParticleSpec
    from .._tally import Tally


def shift_fold(channels: int, *, fraction: float, reach: int) -> int:
    """Channels per shifted group: ``fraction`` of the channels split over 2 * reach groups (at least 1 each)."""
    return max(1, min(channels // (2 * reach), int(channels * fraction / (2 * reach))))


def create_temporal_shift_conv(*, cin: int, cout: int, kt: int, k: int, stride: tuple[int, int], depthwise: bool, particle: ParticleSpec, basis: tuple[int, int], dense: tuple[int, int]) -> nn.Module:
    """``cin -> shift (reach (kt-1)/2 frames) -> [1 x k x k, stride (st, s, s)] -> cout`` (TSM)."""
    reach = (kt - 1) // 2
    if 2 * reach > cin:
        reach = max(1, cin // 2)
    shift = TemporalShift(fold=shift_fold(cin, fraction=particle.shift_fraction, reach=reach), reach=reach)
    return nn.Sequential(shift, create_spatial_only_conv(cin=cin, cout=cout, kt=1, k=k, stride=stride, depthwise=depthwise, particle=particle, basis=basis, dense=dense))


def temporal_shift_cost(tally: Tally, *, cin: int, cout: int, kt: int, k: int, stride: tuple[int, int], depthwise: bool, particle: ParticleSpec, basis: tuple[int, int], dense: tuple[int, int]) -> None:
    tally.keep(cin)  # the shift is free, but its output is a new tensor
    spatial_only_cost(tally, cin=cin, cout=cout, kt=kt, k=k, stride=stride, depthwise=depthwise, particle=particle, basis=basis, dense=dense)


TEMPORAL_SHIFT = register_factorization(
    Factorization(
        name="temporal_shift",
        build=create_temporal_shift_conv,
        cost=temporal_shift_cost,
        min_temporal_kernel=3,
        min_temporal_kernel_reason="it sets the shift reach",
        reads=("shift_fraction",),  # the fraction of channels it moves
        not_inflatable="it needs a temporal kernel >= 3 and shifts channels instead of convolving frames: it has no 2D form",
        traced_as_identity=(TemporalShift,),  # channel i out is channel i in, which is all pruning's dependency graph needs
    )
)
