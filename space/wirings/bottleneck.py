"""bottleneck: 1x1x1 down, the particle conv, 1x1x1 up, with a shortcut (ResNet-50 style)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from .._layers import ParticleBlock
from .._parts import ACTIVATION_LAYERS, conv3d, dense_inner_width, norm_se_act, pruned_width
from .._registry import Wiring, create_particle_conv, effective_prune_ratio, particle_conv_cost, register_wiring
from .residual import create_projection, projection_cost

if TYPE_CHECKING:
    from .._spec import ParticleSpec
    from .._tally import Tally


def create_sandwich_branch(*, particle: ParticleSpec, cin: int, cout: int, stride: tuple[int, int], base: int, depthwise: bool) -> nn.Module:
    """``x -> 1x1x1(cin->inner) -> BN -> act -> conv(inner->inner, stride) -> BN [-> SE] -> act -> 1x1x1(inner->cout) -> BN``.

    inner = ``base`` * expansion (bottleneck: cout; inverted: cin), the particle conv channel-wise when ``depthwise``.
    """
    dense = dense_inner_width(base, expansion=particle.expansion)
    inner = pruned_width(dense, prune_ratio=effective_prune_ratio(particle))
    return nn.Sequential(
        conv3d(cin, inner, (1, 1, 1), (1, 1, 1)),
        nn.BatchNorm3d(inner),
        ACTIVATION_LAYERS[particle.activation](),
        create_particle_conv(particle=particle, cin=inner, cout=inner, stride=stride, depthwise=depthwise, dense=(dense, dense)),
        *norm_se_act(inner, particle, dense=dense),
        conv3d(inner, cout, (1, 1, 1), (1, 1, 1)),
        nn.BatchNorm3d(cout),
    )


def sandwich_branch_cost(tally: Tally, *, particle: ParticleSpec, cin: int, cout: int, stride: tuple[int, int], base: int, depthwise: bool) -> None:
    """What ``create_sandwich_branch`` costs."""
    dense = dense_inner_width(base, expansion=particle.expansion)
    inner = pruned_width(dense, prune_ratio=effective_prune_ratio(particle))
    tally.conv(cin, inner, 1, 1, 1, 1)
    tally.norm(inner)
    tally.act(inner)
    particle_conv_cost(tally, particle, inner, inner, stride, depthwise=depthwise, dense=(dense, dense))
    tally.norm(inner)
    if particle.squeeze_excite > 0:
        tally.squeeze_excite(inner, particle.squeeze_excite, dense)
    tally.act(inner)
    tally.conv(inner, cout, 1, 1, 1, 1)
    tally.norm(cout)


def create_bottleneck_block(*, particle: ParticleSpec, cin: int, cout: int, stride: tuple[int, int]) -> nn.Module:
    """Bottleneck unit, inner = cout * expansion::

        x -> 1x1x1(cin->inner) -> BN -> act -> conv(inner->inner, stride) -> BN [-> SE] -> act
          -> 1x1x1(inner->cout) -> BN --(+)--> act
        x -> identity, or 1x1x1 conv(stride) -> BN ----'
    """
    branch = create_sandwich_branch(particle=particle, cin=cin, cout=cout, stride=stride, base=cout, depthwise=False)
    return ParticleBlock(branch=branch, shortcut=create_projection(cin, cout, stride), post=ACTIVATION_LAYERS[particle.activation]())


def bottleneck_cost(tally: Tally, *, particle: ParticleSpec, cin: int, cout: int, stride: tuple[int, int]) -> None:
    sandwich_branch_cost(tally, particle=particle, cin=cin, cout=cout, stride=stride, base=cout, depthwise=False)
    projection_cost(tally, cin, cout, stride)
    tally.act(cout)  # after the sum


BOTTLENECK = register_wiring(Wiring(name="bottleneck", build=create_bottleneck_block, cost=bottleneck_cost, default_expansion=0.25, expands=True))
