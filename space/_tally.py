"""The running tally the analytic cost walks a network with: params, FLOPs, and the activations a training step saves.

Every factorization's and wiring's ``cost`` function (see ``space/_registry.py``)
adds its layers to a ``Tally`` in the order its builder makes them; ``_cost``
walks the stem, the blocks and the head with it.
"""

from __future__ import annotations

from ._parts import se_width
from ._spec import POOLS, pool_shape


class Tally:
    """Running params and FLOPs, the (T, H, W) of the activation flowing through, and what backward keeps of it.

    ``saved`` counts the float elements of one clip's activations that a training
    step keeps for backward (each new tensor a layer makes, as the next layer saves
    it), ``indices`` the int64 elements max pools keep, ``pooled`` the elements
    of max pools' inputs (CPU autocast pools in fp32: a float32 copy of each),
    ``largest`` the biggest single activation, ``stats`` the float32 batch
    statistics norms keep (per network, not per clip).
    """

    __slots__ = ("params", "flops", "t", "h", "w", "saved", "indices", "pooled", "largest", "stats", "activation")

    def __init__(self, t: int, h: int, w: int) -> None:
        self.params = 0
        self.flops = 0
        self.t, self.h, self.w = t, h, w
        self.saved = 0
        self.indices = 0
        self.pooled = 0
        self.largest = 0
        self.stats = 0
        self.activation = "relu"  # of the layers being walked (the block's particle; the stem's and head's as the builders pick)

    def keep(self, channels: int) -> None:
        """A new activation of ``channels`` at the current size, saved for backward."""
        elements = channels * self.t * self.h * self.w
        self.saved += elements
        self.largest = max(self.largest, elements)

    def conv(self, cin: int, cout: int, kt: int, k: int, st: int, ss: int, groups: int = 1, *, move: bool = True) -> None:
        """A bias-free ``kt x k x k`` conv padded by ``kernel // 2``, strided ``(st, ss, ss)``; its output is kept."""
        t, h, w = (self.t - 1) // st + 1, (self.h - 1) // ss + 1, (self.w - 1) // ss + 1
        weights = cout * (cin // groups) * kt * k * k
        self.params += weights
        self.flops += weights * t * h * w
        self.saved += cout * t * h * w
        self.largest = max(self.largest, cout * t * h * w)
        if move:
            self.t, self.h, self.w = t, h, w

    def norm(self, channels: int) -> None:
        """Batch norm: scale and shift; its output is kept (by the activation or layer after it)."""
        self.params += 2 * channels
        self.stats += 2 * channels  # the batch's mean and inverse std
        self.keep(channels)

    def act(self, channels: int) -> None:
        """An in-place activation: ReLU keeps the tensor it overwrites; SiLU also keeps a copy of its input."""
        if self.activation == "silu":
            self.keep(channels)

    def pool(self, name: str, channels: int) -> None:
        """Max pool ``name`` (see ``POOLS``) of ``channels``: free, but it shrinks what follows and keeps its output and indices."""
        if POOLS[name] is None:
            return
        self.pooled += channels * self.t * self.h * self.w
        self.t, self.h, self.w = pool_shape(name, (self.t, self.h, self.w))
        self.keep(channels)
        self.indices += channels * self.t * self.h * self.w

    def linear(self, cin: int, cout: int) -> None:
        """A linear layer with bias on a flat vector, which it keeps."""
        self.params += cin * cout + cout
        self.flops += cin * cout
        self.saved += cin

    def squeeze_excite(self, channels: int, ratio: float, dense: int | None = None) -> None:
        """Two 1x1x1 convs with bias on the pooled (1, 1, 1) activation, sized on the unpruned width ``dense``; it keeps the gated product."""
        squeezed = se_width(channels if dense is None else dense, ratio=ratio)
        self.params += 2 * channels * squeezed + squeezed + channels
        self.flops += 2 * channels * squeezed
        self.saved += 2 * channels + squeezed  # the pooled vector, the squeezed one and the gate
        self.keep(channels)
