"""inverted: the inverted residual (MobileNetV2 style), a channel-wise particle conv between 1x1x1 convs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from .._layers import ParticleBlock
from .._registry import Wiring, register_wiring
from .bottleneck import create_sandwich_branch, sandwich_branch_cost

if TYPE_CHECKING:
    from .._spec import ParticleSpec
    from .._tally import Tally


def create_inverted_block(*, particle: ParticleSpec, cin: int, cout: int, stride: tuple[int, int]) -> nn.Module:
    """Inverted residual (MobileNetV2 style), inner = cin * expansion, channel-wise middle conv::

        x -> 1x1x1(cin->inner) -> BN -> act -> depthwise conv(inner, stride) -> BN [-> SE] -> act
          -> 1x1x1(inner->cout) -> BN (linear) --(+)-->
        x -> identity, only when cin == cout and stride is 1 -'
    """
    branch = create_sandwich_branch(particle=particle, cin=cin, cout=cout, stride=stride, base=cin, depthwise=True)
    shortcut = nn.Identity() if cin == cout and stride == (1, 1) else None
    return ParticleBlock(branch=branch, shortcut=shortcut, post=None)


def inverted_cost(tally: Tally, *, particle: ParticleSpec, cin: int, cout: int, stride: tuple[int, int]) -> None:
    sandwich_branch_cost(tally, particle=particle, cin=cin, cout=cout, stride=stride, base=cin, depthwise=True)


INVERTED = register_wiring(Wiring(name="inverted", build=create_inverted_block, cost=inverted_cost, default_expansion=4.0, expands=True))
