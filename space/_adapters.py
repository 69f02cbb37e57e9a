"""Bottleneck adapters: small residual modules put after each particle, for cheap fine-tuning.

``add_adapters(model, reduction=4)`` puts one ``Adapter`` after every
``ParticleBlock`` of a built network (in the block's ``adapter`` slot, so the
network's own state_dict keys do not move and its weights still load). Each
adapter starts as the identity; trained alone with the head, they adapt a
frozen network to new data (Houlsby et al., 2019; here with 1x1x1 convs).
"""

from __future__ import annotations

from torch import nn

from ._build import ACTIVATION_LAYERS
from ._checks import check_choice, check_number
from ._layers import Adapter, ParticleBlock
from ._spec import ACTIVATIONS


def adapter_width(channels: int, *, reduction: float) -> int:
    """Hidden channels of an adapter on ``channels``: ``channels / reduction`` rounded (at least 1)."""
    return max(1, int(channels / reduction + 0.5))


def create_adapter(*, channels: int, reduction: float = 4.0, activation: str = "relu") -> Adapter:
    """An adapter on ``channels``: down-projection (kaiming init), activation, up-projection at zero."""
    hidden = adapter_width(channels, reduction=reduction)
    down = nn.Conv3d(channels, hidden, kernel_size=1, bias=True)
    nn.init.kaiming_normal_(down.weight, mode="fan_out", nonlinearity="relu")
    nn.init.zeros_(down.bias)
    up = nn.Conv3d(hidden, channels, kernel_size=1, bias=True)
    nn.init.zeros_(up.weight)
    nn.init.zeros_(up.bias)
    return Adapter(down=down, act=ACTIVATION_LAYERS[activation](), up=up)


def block_out_channels(block: ParticleBlock) -> int:
    """Output channels of ``block``: as its builder stated them, else the width of the last batch norm of its branch.

    Every single-path wiring ends its branch on a batch norm of the output width; a multi-branch one (inception)
    ends on a concatenation, so its builder states the width.
    """
    if block.out_channels is not None:
        return int(block.out_channels)
    norms = [m for m in block.branch.modules() if isinstance(m, nn.BatchNorm3d)]
    if not norms:
        raise ValueError(f"add_adapters needs a batch norm at the end of each particle's branch, but got a block without one: {block.branch!r}"[:300])
    return norms[-1].num_features


def add_adapters(model: nn.Module, *, reduction: float = 4.0, activation: str = "relu") -> list[str]:
    """Put a fresh ``Adapter`` after every particle (``ParticleBlock``) of ``model``, in place.

    Returns the names of the blocks that got one. The adapters are created on
    the model's device and dtype; seed torch beforehand for reproducible ones.
    Refuses a model that already has adapters, or has no particles.
    """
    check_number("add_adapters.reduction", reduction, low=1.0)
    check_choice("add_adapters.activation", activation, ACTIVATIONS)
    blocks = [(name, m) for name, m in model.named_modules() if isinstance(m, ParticleBlock)]
    if not blocks:
        raise ValueError("add_adapters needs a network of particles (ParticleBlock modules), but got none in the model.")
    if any(isinstance(m.adapter, Adapter) for _, m in blocks):
        raise ValueError("add_adapters must be called once per model, but the model already has adapters.")
    first = next(model.parameters(), None)
    for _, block in blocks:
        adapter = create_adapter(channels=block_out_channels(block), reduction=reduction, activation=activation)
        block.adapter = adapter if first is None else adapter.to(device=first.device, dtype=first.dtype)
    return [name for name, _ in blocks]
