"""plain: two particle convs, no skip."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from .._layers import ParticleBlock
from .._parts import ACTIVATION_LAYERS, dense_inner_width, norm_se_act, pruned_width
from .._registry import Wiring, create_particle_conv, effective_prune_ratio, particle_conv_cost, register_wiring

if TYPE_CHECKING:
    from .._spec import ParticleSpec
    from .._tally import Tally


def create_two_conv_branch(*, particle: ParticleSpec, cin: int, cout: int, stride: tuple[int, int], act_last: bool) -> nn.Module:
    """``x -> conv(cin->inner, stride) -> BN -> act -> conv(inner->cout) -> BN [-> SE] [-> act]``, inner = cout * expansion."""
    dense = dense_inner_width(cout, expansion=particle.expansion)
    inner = pruned_width(dense, prune_ratio=effective_prune_ratio(particle))
    return nn.Sequential(
        create_particle_conv(particle=particle, cin=cin, cout=inner, stride=stride, dense=(cin, dense)),
        nn.BatchNorm3d(inner),
        ACTIVATION_LAYERS[particle.activation](),
        create_particle_conv(particle=particle, cin=inner, cout=cout, basis=(cin, dense), dense=(dense, cout)),
        *norm_se_act(cout, particle, act=act_last),
    )


def create_plain_block(*, particle: ParticleSpec, cin: int, cout: int, stride: tuple[int, int]) -> nn.Module:
    """Two particle convs, no skip::

        x -> conv(cin->inner, stride) -> BN -> act -> conv(inner->cout) -> BN [-> SE] -> act
    """
    branch = create_two_conv_branch(particle=particle, cin=cin, cout=cout, stride=stride, act_last=True)
    return ParticleBlock(branch=branch, shortcut=None, post=None)


def plain_cost(tally: Tally, *, particle: ParticleSpec, cin: int, cout: int, stride: tuple[int, int]) -> None:
    dense = dense_inner_width(cout, expansion=particle.expansion)
    inner = pruned_width(dense, prune_ratio=effective_prune_ratio(particle))
    particle_conv_cost(tally, particle, cin, inner, stride, dense=(cin, dense))
    tally.norm(inner)
    tally.act(inner)
    particle_conv_cost(tally, particle, inner, cout, basis=(cin, dense), dense=(dense, cout))
    tally.norm(cout)
    if particle.squeeze_excite > 0:
        tally.squeeze_excite(cout, particle.squeeze_excite)
    tally.act(cout)  # residual: after the sum


PLAIN = register_wiring(Wiring(name="plain", build=create_plain_block, cost=plain_cost, conv_writes_output=True))
