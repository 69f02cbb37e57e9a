"""residual: the basic residual unit (ResNet-18 style)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from .._layers import ParticleBlock
from .._parts import ACTIVATION_LAYERS, conv3d
from .._registry import Wiring, register_wiring
from .plain import create_two_conv_branch, plain_cost

if TYPE_CHECKING:
    from .._spec import ParticleSpec
    from .._tally import Tally


def create_projection(cin: int, cout: int, stride: tuple[int, int]) -> nn.Module:
    """The shortcut: the identity, or a 1x1x1 conv (stride) -> BN when the shape changes."""
    if cin == cout and stride == (1, 1):
        return nn.Identity()
    return nn.Sequential(conv3d(cin, cout, (1, 1, 1), (stride[0], stride[1], stride[1])), nn.BatchNorm3d(cout))


def projection_cost(tally: Tally, cin: int, cout: int, stride: tuple[int, int]) -> None:
    """The shortcut's 1x1x1 conv + BN; called after the branch, whose output size it shares."""
    if cin == cout and stride == (1, 1):
        return
    weights = cout * cin
    tally.params += weights + 2 * cout
    tally.flops += weights * tally.t * tally.h * tally.w  # same output size as the branch
    tally.keep(2 * cout)  # its conv's and its norm's outputs


def create_residual_block(*, particle: ParticleSpec, cin: int, cout: int, stride: tuple[int, int]) -> nn.Module:
    """Basic residual unit (ResNet-18 style)::

        x -> conv(cin->inner, stride) -> BN -> act -> conv(inner->cout) -> BN [-> SE] --(+)--> act
        x -> identity, or 1x1x1 conv(stride) -> BN when shape changes ---------------'
    """
    branch = create_two_conv_branch(particle=particle, cin=cin, cout=cout, stride=stride, act_last=False)
    return ParticleBlock(branch=branch, shortcut=create_projection(cin, cout, stride), post=ACTIVATION_LAYERS[particle.activation]())


def residual_cost(tally: Tally, *, particle: ParticleSpec, cin: int, cout: int, stride: tuple[int, int]) -> None:
    plain_cost(tally, particle=particle, cin=cin, cout=cout, stride=stride)
    projection_cost(tally, cin, cout, stride)


RESIDUAL = register_wiring(Wiring(name="residual", build=create_residual_block, cost=residual_cost, conv_writes_output=True))
