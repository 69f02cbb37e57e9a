"""single: one particle conv, no skip (a C3D / VGG layer)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from .._layers import ParticleBlock
from .._parts import norm_se_act
from .._registry import Wiring, create_particle_conv, particle_conv_cost, register_wiring

if TYPE_CHECKING:
    from .._spec import ParticleSpec
    from .._tally import Tally


def create_single_block(*, particle: ParticleSpec, cin: int, cout: int, stride: tuple[int, int]) -> nn.Module:
    """One particle conv, no skip (a C3D / VGG layer)::

        x -> conv(cin->cout, stride) -> BN [-> SE] -> act
    """
    branch = nn.Sequential(create_particle_conv(particle=particle, cin=cin, cout=cout, stride=stride), *norm_se_act(cout, particle))
    return ParticleBlock(branch=branch, shortcut=None, post=None)


def single_cost(tally: Tally, *, particle: ParticleSpec, cin: int, cout: int, stride: tuple[int, int]) -> None:
    particle_conv_cost(tally, particle, cin, cout, stride)
    tally.norm(cout)
    if particle.squeeze_excite > 0:
        tally.squeeze_excite(cout, particle.squeeze_excite)
    tally.act(cout)


# Its one conv writes the block's output: no inner channels, nothing to prune.
SINGLE = register_wiring(Wiring(name="single", build=create_single_block, cost=single_cost, prunable=False))
