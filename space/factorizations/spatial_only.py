"""spatial_only: 1 x k x k, no temporal mixing at all."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from .._parts import channel_groups, conv3d
from .._registry import Factorization, register_factorization

if TYPE_CHECKING:
    from .._spec import ParticleSpec
    from .._tally import Tally


def create_spatial_only_conv(*, cin: int, cout: int, kt: int, k: int, stride: tuple[int, int], depthwise: bool, particle: ParticleSpec, basis: tuple[int, int], dense: tuple[int, int]) -> nn.Module:
    """``cin -> [1 x k x k, stride (st, s, s)] -> cout``: frames never meet."""
    groups = channel_groups(cin, cout) if depthwise else 1
    return conv3d(cin, cout, (1, k, k), (stride[0], stride[1], stride[1]), groups)


def spatial_only_cost(tally: Tally, *, cin: int, cout: int, kt: int, k: int, stride: tuple[int, int], depthwise: bool, particle: ParticleSpec, basis: tuple[int, int], dense: tuple[int, int]) -> None:
    tally.conv(cin, cout, 1, k, stride[0], stride[1], channel_groups(cin, cout) if depthwise else 1)


SPATIAL_ONLY = register_factorization(Factorization(name="spatial_only", build=create_spatial_only_conv, cost=spatial_only_cost, temporal_kernel=False))
