"""p3d_b (P3D-B): parallel 1 x k x k and kt x 1 x 1 branches, summed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from .._layers import ParallelSum
from .._parts import channel_groups, conv3d
from .._registry import Factorization, register_factorization

if TYPE_CHECKING:
    from .._spec import ParticleSpec
    from .._tally import Tally


def create_p3d_b_conv(*, cin: int, cout: int, kt: int, k: int, stride: tuple[int, int], depthwise: bool, particle: ParticleSpec, basis: tuple[int, int], dense: tuple[int, int]) -> nn.Module:
    """P3D-B, two parallel branches of the same input, summed::

        cin -> [1 x k x k, stride (st, s, s)] -> cout --(+)--> cout
        cin -> [kt x 1 x 1, stride (st, s, s)] -> cout --'

    In depthwise mode both branches are channel-wise (groups gcd(cin, cout)).
    """
    groups = channel_groups(cin, cout) if depthwise else 1
    full_stride = (stride[0], stride[1], stride[1])
    return ParallelSum(spatial=conv3d(cin, cout, (1, k, k), full_stride, groups), temporal=conv3d(cin, cout, (kt, 1, 1), full_stride, groups))


def p3d_b_cost(tally: Tally, *, cin: int, cout: int, kt: int, k: int, stride: tuple[int, int], depthwise: bool, particle: ParticleSpec, basis: tuple[int, int], dense: tuple[int, int]) -> None:
    groups = channel_groups(cin, cout) if depthwise else 1
    tally.conv(cin, cout, kt, 1, stride[0], stride[1], groups, move=False)
    tally.conv(cin, cout, 1, k, stride[0], stride[1], groups)


P3D_B = register_factorization(Factorization(name="p3d_b", build=create_p3d_b_conv, cost=p3d_b_cost))
