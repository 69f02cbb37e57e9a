"""depthwise_2plus1d (MoViNet-style): depthwise 1 x k x k, then depthwise kt x 1 x 1."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from .._parts import ACTIVATION_LAYERS, channel_groups, conv3d
from .._registry import Factorization, register_factorization

if TYPE_CHECKING:
    from .._spec import ParticleSpec
    from .._tally import Tally


def create_depthwise_2plus1d_conv(*, cin: int, cout: int, kt: int, k: int, stride: tuple[int, int], depthwise: bool, particle: ParticleSpec, basis: tuple[int, int], dense: tuple[int, int]) -> nn.Module:
    """MoViNet-style (2+1)D, channel-wise in both steps::

        cin -> [depthwise 1 x k x k, stride (1, s, s)] -> cin -> BN -> act
            -> [channel-wise kt x 1 x 1, stride (st, 1, 1), groups gcd(cin, cout)] -> cout
    """
    return nn.Sequential(
        conv3d(cin, cin, (1, k, k), (1, stride[1], stride[1]), cin),
        nn.BatchNorm3d(cin),
        ACTIVATION_LAYERS[particle.activation](),
        conv3d(cin, cout, (kt, 1, 1), (stride[0], 1, 1), channel_groups(cin, cout)),
    )


def depthwise_2plus1d_cost(tally: Tally, *, cin: int, cout: int, kt: int, k: int, stride: tuple[int, int], depthwise: bool, particle: ParticleSpec, basis: tuple[int, int], dense: tuple[int, int]) -> None:
    tally.conv(cin, cin, 1, k, 1, stride[1], cin)
    tally.norm(cin)
    tally.act(cin)
    tally.conv(cin, cout, kt, 1, stride[0], 1, channel_groups(cin, cout))


# Its last conv is channel-wise onto the output: in a block whose particle convs write the output, no inner channel can go.
DEPTHWISE_2PLUS1D = register_factorization(
    Factorization(name="depthwise_2plus1d", build=create_depthwise_2plus1d_conv, cost=depthwise_2plus1d_cost, channelwise_output=True)
)
