"""What every builder shares: activation layers, the bias-free conv, and the width arithmetic of inner channels.

Factorization and wiring modules (``space/factorizations/``, ``space/wirings/``)
and ``_build`` import from here; the analytic cost uses the same width rules.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

from torch import nn

from ._layers import SqueezeExcite

if TYPE_CHECKING:
    from ._spec import ParticleSpec

ACTIVATION_LAYERS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "silu": lambda: nn.SiLU(inplace=True),
}


# ---------------------------------------------------------------- width arithmetic
def round_width(width: float, *, divisor: int = 8, min_width: int = 8) -> int:
    """Round to a multiple of ``divisor`` (not below ``min_width``), never more than 10% down."""
    rounded = max(min_width, int(width + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * width:
        rounded += divisor
    return int(rounded)


def dense_inner_width(base: int, *, expansion: float) -> int:
    """Inner channels of an unpruned particle: ``base * expansion`` rounded (at least 1)."""
    return max(1, int(base * expansion + 0.5))


def pruned_width(channels: int, *, prune_ratio: float) -> int:
    """Channels left when structured pruning removes ``prune_ratio`` of ``channels`` (at least 1 stays)."""
    return max(1, int(channels * (1.0 - prune_ratio) + 0.5))


def inner_width(base: int, *, expansion: float, prune_ratio: float) -> int:
    """Inner channels of a particle: the unpruned width minus the pruned fraction (at least 1)."""
    return pruned_width(dense_inner_width(base, expansion=expansion), prune_ratio=prune_ratio)


def se_width(channels: int, *, ratio: float) -> int:
    """Squeeze-excite bottleneck width (X3D's rounding to multiples of 8)."""
    return round_width(channels * ratio)


def channel_groups(cin: int, cout: int) -> int:
    """Channel-wise grouping that works when widths differ: depthwise when they are equal."""
    return math.gcd(cin, cout)


# ---------------------------------------------------------------- layers
def conv3d(cin: int, cout: int, kernel: tuple[int, int, int], stride: tuple[int, int, int], groups: int = 1) -> nn.Conv3d:
    """A bias-free conv padded by ``kernel // 2`` on each axis."""
    padding = tuple(k // 2 for k in kernel)
    return nn.Conv3d(cin, cout, kernel, stride=stride, padding=padding, groups=groups, bias=False)


def norm_se_act(channels: int, particle: ParticleSpec, *, act: bool = True, dense: int | None = None) -> list[nn.Module]:
    """BN [-> SE] [-> act] on ``channels``; the SE bottleneck is sized on the unpruned width ``dense`` and not pruned."""
    layers: list[nn.Module] = [nn.BatchNorm3d(channels)]
    if particle.squeeze_excite > 0:
        squeezed = se_width(channels if dense is None else dense, ratio=particle.squeeze_excite)
        layers.append(SqueezeExcite(channels=channels, squeezed=squeezed))
    if act:
        layers.append(ACTIVATION_LAYERS[particle.activation]())
    return layers
