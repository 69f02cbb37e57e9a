"""full (C3D / R3D): one kt x k x k conv."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from .._parts import channel_groups, conv3d
from .._registry import Factorization, register_factorization

if TYPE_CHECKING:
    from .._spec import ParticleSpec
    from .._tally import Tally


def create_full_conv(*, cin: int, cout: int, kt: int, k: int, stride: tuple[int, int], depthwise: bool, particle: ParticleSpec, basis: tuple[int, int], dense: tuple[int, int]) -> nn.Module:
    """``cin -> [kt x k x k, stride (st, s, s)] -> cout`` (C3D / R3D)."""
    groups = channel_groups(cin, cout) if depthwise else 1
    return conv3d(cin, cout, (kt, k, k), (stride[0], stride[1], stride[1]), groups)


def full_cost(tally: Tally, *, cin: int, cout: int, kt: int, k: int, stride: tuple[int, int], depthwise: bool, particle: ParticleSpec, basis: tuple[int, int], dense: tuple[int, int]) -> None:
    tally.conv(cin, cout, kt, k, stride[0], stride[1], channel_groups(cin, cout) if depthwise else 1)


FULL = register_factorization(Factorization(name="full", build=create_full_conv, cost=full_cost))
