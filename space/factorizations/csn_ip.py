"""csn_ip (interaction-preserved CSN): 1x1x1, then depthwise kt x k x k."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from .._parts import conv3d
from .._registry import Factorization, register_factorization

if TYPE_CHECKING:
    from .._spec import ParticleSpec
    from .._tally import Tally


def create_csn_ip_conv(*, cin: int, cout: int, kt: int, k: int, stride: tuple[int, int], depthwise: bool, particle: ParticleSpec, basis: tuple[int, int], dense: tuple[int, int]) -> nn.Module:
    """``cin -> [1x1x1] -> cout -> BN -> [depthwise kt x k x k, stride (st, s, s)] -> cout`` (ip-CSN, as VMZ: no act between)."""
    return nn.Sequential(
        conv3d(cin, cout, (1, 1, 1), (1, 1, 1)),
        nn.BatchNorm3d(cout),
        conv3d(cout, cout, (kt, k, k), (stride[0], stride[1], stride[1]), cout),
    )


def csn_ip_cost(tally: Tally, *, cin: int, cout: int, kt: int, k: int, stride: tuple[int, int], depthwise: bool, particle: ParticleSpec, basis: tuple[int, int], dense: tuple[int, int]) -> None:
    tally.conv(cin, cout, 1, 1, 1, 1)
    tally.norm(cout)
    tally.conv(cout, cout, kt, k, stride[0], stride[1], cout)


CSN_IP = register_factorization(Factorization(name="csn_ip", build=create_csn_ip_conv, cost=csn_ip_cost))
