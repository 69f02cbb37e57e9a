"""csn_ir (interaction-reduced CSN): depthwise kt x k x k."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from .._parts import channel_groups, conv3d
from .._registry import Factorization, register_factorization

if TYPE_CHECKING:
    from .._spec import ParticleSpec
    from .._tally import Tally


def create_csn_ir_conv(*, cin: int, cout: int, kt: int, k: int, stride: tuple[int, int], depthwise: bool, particle: ParticleSpec, basis: tuple[int, int], dense: tuple[int, int]) -> nn.Module:
    """``cin -> [channel-wise kt x k x k, groups gcd(cin, cout)] -> cout`` (ir-CSN)."""
    return conv3d(cin, cout, (kt, k, k), (stride[0], stride[1], stride[1]), channel_groups(cin, cout))


def csn_ir_cost(tally: Tally, *, cin: int, cout: int, kt: int, k: int, stride: tuple[int, int], depthwise: bool, particle: ParticleSpec, basis: tuple[int, int], dense: tuple[int, int]) -> None:
    tally.conv(cin, cout, kt, k, stride[0], stride[1], channel_groups(cin, cout))


# Its one conv is channel-wise onto the output: in a block whose particle convs write the output, no inner channel can go.
CSN_IR = register_factorization(Factorization(name="csn_ir", build=create_csn_ir_conv, cost=csn_ir_cost, channelwise_output=True))
