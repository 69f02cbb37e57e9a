"""inception: an inflated Inception module (I3D; S3D with the separable r2plus1d conv)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from .._errors import SpecError
from .._layers import ParallelConcat, ParticleBlock, SqueezeExcite
from .._parts import ACTIVATION_LAYERS, conv3d, pruned_width, se_width
from .._registry import Wiring, create_particle_conv, effective_prune_ratio, particle_conv_cost, register_wiring

if TYPE_CHECKING:
    from .._spec import ParticleSpec
    from .._tally import Tally

# The four branches' shares of the output width (1x1x1, reduce -> conv, reduce -> conv, pool -> 1x1x1), and each
# reduce width as a fraction of its conv's output. Defaults: Inception-v1's (and I3D's) 3a module, 64, 96 -> 128, 16 -> 32, 32.
DEFAULT_BRANCH_FRACTIONS: tuple[float, float, float, float] = (0.25, 0.5, 0.125, 0.125)
DEFAULT_REDUCE_FRACTIONS: tuple[float, float] = (0.75, 0.5)
# Inception fields: only an inception particle may set them (they are ignored by every other wiring).
INCEPTION_FIELDS = {"branch_fractions": DEFAULT_BRANCH_FRACTIONS, "reduce_fractions": DEFAULT_REDUCE_FRACTIONS, "branch_widths": ()}


# ---------------------------------------------------------------- rules
def check_inception(particle: ParticleSpec, prefix: str) -> None:
    """Absolute ``branch_widths`` replace the fractions, which must then be left at their defaults."""
    if particle.branch_widths:
        for name in ("branch_fractions", "reduce_fractions"):
            if getattr(particle, name) != INCEPTION_FIELDS[name]:
                raise SpecError(prefix + name, "must be left at its default when branch_widths is set (the widths replace it)", list(getattr(particle, name)))


def check_inception_width(particle: ParticleSpec, width: int, field: str) -> None:
    """A stage of ``width`` channels holds the particle: its branch widths sum to it, and each of four branches gets one."""
    if particle.inception_out(width) != width:
        raise SpecError(field, f"must be the sum of the stage's inception output branch_widths ({particle.inception_out(width)})", width)
    if width < 4:
        raise SpecError(field, "must be >= 4 for an inception stage (one channel for each of its four branches)", width)


# ---------------------------------------------------------------- widths
def split_width(total: int, fractions: tuple[float, ...]) -> tuple[int, ...]:
    """``total`` channels shared out by ``fractions`` (summing to 1): at least 1 each, the rest by largest remainder.

    Needs ``total >= len(fractions)`` (NetworkSpec checks it for inception stages).
    """
    exact = [f * total for f in fractions]
    parts = [max(1, int(e)) for e in exact]
    while sum(parts) < total:
        i = max(range(len(parts)), key=lambda j: exact[j] - parts[j])
        parts[i] += 1
    while sum(parts) > total:
        i = max((j for j in range(len(parts)) if parts[j] > 1), key=lambda j: parts[j] - exact[j])
        parts[i] -= 1
    return tuple(parts)


def inception_widths(particle: ParticleSpec, cout: int) -> tuple[int, int, int, int, int, int]:
    """Unpruned widths ``(1x1x1, reduce a, a, reduce b, b, pool proj)`` of an inception particle with ``cout`` output channels.

    ``particle.branch_widths`` when set; else ``cout`` split by ``branch_fractions``
    (``split_width``) and each reduce width ``reduce_fractions`` of its conv's output (at least 1).
    """
    if particle.branch_widths:
        return particle.branch_widths  # type: ignore[return-value]
    one, a, b, pool = split_width(cout, particle.branch_fractions)
    reduce_a, reduce_b = (max(1, int(f * n + 0.5)) for f, n in zip(particle.reduce_fractions, (a, b)))
    return one, reduce_a, a, reduce_b, b, pool


def inception_pool(particle: ParticleSpec, stride: tuple[int, int]) -> tuple[tuple[int, int, int], tuple[int, int, int], tuple[int, int, int]]:
    """``(kernel, stride, padding)`` of the pool branch's max pool: 3x3x3 (1x3x3 when the particle does not mix time)."""
    kt = 3 if particle.mixes_time else 1
    return (kt, 3, 3), (stride[0], stride[1], stride[1]), (kt // 2, 1, 1)


# ---------------------------------------------------------------- build and cost
def create_inception_block(*, particle: ParticleSpec, cin: int, cout: int, stride: tuple[int, int]) -> nn.Module:
    """An inflated Inception module (I3D; S3D with the separable r2plus1d conv), widths from ``inception_widths``::

        x -> 1x1x1(cin->one, stride) -> BN -> act -----------------------------------------.
        x -> 1x1x1(cin->reduce a) -> BN -> act -> conv(reduce a->a, stride) -> BN -> act ---+
        x -> 1x1x1(cin->reduce b) -> BN -> act -> conv(reduce b->b, stride) -> BN -> act ---+--> concat [-> SE]
        x -> max pool 3x3x3 (stride, padding 1) -> 1x1x1(cin->pool proj) -> BN -> act -----'

    ``conv`` is the particle's factorized conv; pruning removes ``prune_ratio`` of the
    reduce widths (and of r2plus1d's mid widths), never of the concatenated output.
    The pool is 1x3x3 when the particle does not mix time.
    """
    if particle.inception_out(cout) != cout:
        raise SpecError("build_particle.out_channels", f"must be the sum of the inception output branch_widths ({particle.inception_out(cout)})", cout)
    one, dense_a, a, dense_b, b, proj = inception_widths(particle, cout)
    ratio = effective_prune_ratio(particle)
    act = ACTIVATION_LAYERS[particle.activation]
    full_stride = (stride[0], stride[1], stride[1])

    def tower(dense: int, width: int) -> nn.Module:
        reduce = pruned_width(dense, prune_ratio=ratio)
        return nn.Sequential(
            conv3d(cin, reduce, (1, 1, 1), (1, 1, 1)), nn.BatchNorm3d(reduce), act(),
            create_particle_conv(particle=particle, cin=reduce, cout=width, stride=stride, dense=(dense, width)), nn.BatchNorm3d(width), act(),
        )  # fmt: skip

    kernel, pool_stride, padding = inception_pool(particle, stride)
    branches = ParallelConcat(
        nn.Sequential(conv3d(cin, one, (1, 1, 1), full_stride), nn.BatchNorm3d(one), act()),
        tower(dense_a, a),
        tower(dense_b, b),
        nn.Sequential(nn.MaxPool3d(kernel, stride=pool_stride, padding=padding), conv3d(cin, proj, (1, 1, 1), (1, 1, 1)), nn.BatchNorm3d(proj), act()),
    )
    se = [SqueezeExcite(channels=cout, squeezed=se_width(cout, ratio=particle.squeeze_excite))] if particle.squeeze_excite > 0 else []
    return ParticleBlock(branch=nn.Sequential(branches, *se), shortcut=None, post=None, out_channels=cout)


def inception_cost(tally: Tally, *, particle: ParticleSpec, cin: int, cout: int, stride: tuple[int, int]) -> None:
    one, dense_a, a, dense_b, b, proj = inception_widths(particle, cout)
    ratio = effective_prune_ratio(particle)
    size = (tally.t, tally.h, tally.w)
    tally.conv(cin, one, 1, 1, stride[0], stride[1])
    tally.norm(one)
    tally.act(one)
    for dense, width in ((dense_a, a), (dense_b, b)):
        tally.t, tally.h, tally.w = size  # each branch reads the block's input
        reduce = pruned_width(dense, prune_ratio=ratio)
        tally.conv(cin, reduce, 1, 1, 1, 1)
        tally.norm(reduce)
        tally.act(reduce)
        particle_conv_cost(tally, particle, reduce, width, stride, dense=(dense, width))
        tally.norm(width)
        tally.act(width)
    tally.t, tally.h, tally.w = size
    tally.pooled += cin * tally.t * tally.h * tally.w
    tally.conv(cin, proj, 1, 1, stride[0], stride[1])  # after the free max pool, which strides as the convs do
    tally.keep(cin)  # the max pool's output,
    tally.indices += cin * tally.t * tally.h * tally.w  # and its indices
    tally.norm(proj)
    tally.act(proj)
    tally.keep(cout)  # the concatenated branches
    if particle.squeeze_excite > 0:
        tally.squeeze_excite(cout, particle.squeeze_excite)


# Pruning removes from the reduce widths only; the branch convs write the block's output from them (channel-wise ones tie them).
INCEPTION = register_wiring(
    Wiring(
        name="inception", build=create_inception_block, cost=inception_cost, conv_writes_output=True,
        check=check_inception, check_width=check_inception_width, owned_fields=INCEPTION_FIELDS,
    )
)  # fmt: skip
