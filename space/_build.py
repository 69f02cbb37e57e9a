"""Builders: keyword-only ``create_*`` functions that do the channel and stride arithmetic.

Registries map the short names in a spec to builders, so a new factorization or
wiring is one function and one registry entry.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from ._errors import SpecError
from ._layers import ConvGRU, ParallelConcat, ParallelSum, ParticleBlock, ParticleNet, SqueezeExcite, TemporalShift
from ._spec import POOLS, NetworkSpec, ParticleSpec

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


# Factorizations whose channel-wise conv ties every inner channel of a plain/residual block to an output channel.
CHANNELWISE_TIED = frozenset({"csn_ir", "depthwise_2plus1d"})


def effective_prune_ratio(particle: ParticleSpec) -> float:
    """The fraction of inner channels pruning removes from ``particle``.

    The pruned network is the unpruned one minus this fraction of each inner
    width (channels off the residual stream). In plain and residual blocks of
    csn_ir and depthwise_2plus1d, the second conv is channel-wise from the
    inner channels onto the block's output, so no inner channel can be removed
    without removing an output channel: pruning leaves those blocks whole; so
    it does in inception blocks, whose branch convs run channel-wise from the
    reduce widths onto the block's output. A ``single`` block has no inner
    channels at all.
    """
    if particle.factorization in CHANNELWISE_TIED and particle.wiring in ("plain", "residual", "inception"):
        return 0.0
    if particle.wiring == "single":  # its one conv writes the block's output: no inner channels
        return 0.0
    return particle.prune_ratio


def inner_width(base: int, *, expansion: float, prune_ratio: float) -> int:
    """Inner channels of a particle: the unpruned width minus the pruned fraction (at least 1)."""
    return pruned_width(dense_inner_width(base, expansion=expansion), prune_ratio=prune_ratio)


def r2plus1d_mid_width(in_channels: int, out_channels: int, *, temporal_kernel: int, spatial_kernel: int) -> int:
    """R(2+1)D's rule: mid channels that give the (2+1)D pair the parameters of the full kt x k x k conv."""
    kt, k = temporal_kernel, spatial_kernel
    return max(1, (kt * k * k * in_channels * out_channels) // (k * k * in_channels + kt * out_channels))


def r2plus1d_widths(
    *, cin: int, cout: int, kt: int, k: int, depthwise: bool, particle: ParticleSpec, dense: tuple[int, int], basis: tuple[int, int]
) -> tuple[int, int, int]:
    """``(mid, groups of the spatial conv, groups of the temporal conv)`` of an r2plus1d conv from ``cin`` to ``cout``.

    ``dense`` and ``basis`` are the unpruned widths of this conv and of the
    block's first conv; the mid width follows R(2+1)D's rule on them, minus the
    pruned fraction (mid channels are inner channels).
    """
    if depthwise:
        return cin, cin, channel_groups(cin, cout)
    mid_in, mid_out = basis if particle.r2plus1d_mid == "block" else dense
    mid = dense[1] if particle.r2plus1d_mid == "out" else r2plus1d_mid_width(mid_in, mid_out, temporal_kernel=kt, spatial_kernel=k)
    return pruned_width(mid, prune_ratio=effective_prune_ratio(particle)), 1, 1


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


def se_width(channels: int, *, ratio: float) -> int:
    """Squeeze-excite bottleneck width (X3D's rounding to multiples of 8)."""
    return round_width(channels * ratio)


def shift_fold(channels: int, *, fraction: float, reach: int) -> int:
    """Channels per shifted group: ``fraction`` of the channels split over 2 * reach groups (at least 1 each)."""
    return max(1, min(channels // (2 * reach), int(channels * fraction / (2 * reach))))


# ---------------------------------------------------------------- factorized convs
def _conv(cin: int, cout: int, kernel: tuple[int, int, int], stride: tuple[int, int, int], groups: int = 1) -> nn.Conv3d:
    padding = tuple(k // 2 for k in kernel)
    return nn.Conv3d(cin, cout, kernel, stride=stride, padding=padding, groups=groups, bias=False)


def channel_groups(cin: int, cout: int) -> int:
    """Channel-wise grouping that works when widths differ: depthwise when they are equal."""
    return math.gcd(cin, cout)


ConvBuilder = Callable[..., nn.Module]


def create_full_conv(*, cin: int, cout: int, kt: int, k: int, stride: tuple[int, int], depthwise: bool, particle: ParticleSpec, basis: tuple[int, int], dense: tuple[int, int]) -> nn.Module:
    """``cin -> [kt x k x k, stride (st, s, s)] -> cout`` (C3D / R3D)."""
    groups = channel_groups(cin, cout) if depthwise else 1
    return _conv(cin, cout, (kt, k, k), (stride[0], stride[1], stride[1]), groups)


def create_r2plus1d_conv(*, cin: int, cout: int, kt: int, k: int, stride: tuple[int, int], depthwise: bool, particle: ParticleSpec, basis: tuple[int, int], dense: tuple[int, int]) -> nn.Module:
    """``cin -> [1 x k x k, stride (1, s, s)] -> mid -> BN -> act -> [kt x 1 x 1, stride (st, 1, 1)] -> cout``.

    ``mid`` follows R(2+1)D's parameter-matching rule on the unpruned ``(cin, cout)``,
    or on ``basis`` (the block's first particle conv) when ``particle.r2plus1d_mid``
    is "block", minus the pruned fraction; in depthwise mode both convs are
    channel-wise and ``mid = cin`` (see ``r2plus1d_widths``).
    """
    mid, g1, g2 = r2plus1d_widths(cin=cin, cout=cout, kt=kt, k=k, depthwise=depthwise, particle=particle, dense=dense, basis=basis)
    return nn.Sequential(
        _conv(cin, mid, (1, k, k), (1, stride[1], stride[1]), g1),
        nn.BatchNorm3d(mid),
        ACTIVATION_LAYERS[particle.activation](),
        _conv(mid, cout, (kt, 1, 1), (stride[0], 1, 1), g2),
    )


def create_csn_ip_conv(*, cin: int, cout: int, kt: int, k: int, stride: tuple[int, int], depthwise: bool, particle: ParticleSpec, basis: tuple[int, int], dense: tuple[int, int]) -> nn.Module:
    """``cin -> [1x1x1] -> cout -> BN -> [depthwise kt x k x k, stride (st, s, s)] -> cout`` (ip-CSN, as VMZ: no act between)."""
    return nn.Sequential(
        _conv(cin, cout, (1, 1, 1), (1, 1, 1)),
        nn.BatchNorm3d(cout),
        _conv(cout, cout, (kt, k, k), (stride[0], stride[1], stride[1]), cout),
    )


def create_csn_ir_conv(*, cin: int, cout: int, kt: int, k: int, stride: tuple[int, int], depthwise: bool, particle: ParticleSpec, basis: tuple[int, int], dense: tuple[int, int]) -> nn.Module:
    """``cin -> [channel-wise kt x k x k, groups gcd(cin, cout)] -> cout`` (ir-CSN)."""
    return _conv(cin, cout, (kt, k, k), (stride[0], stride[1], stride[1]), channel_groups(cin, cout))


def create_spatial_only_conv(*, cin: int, cout: int, kt: int, k: int, stride: tuple[int, int], depthwise: bool, particle: ParticleSpec, basis: tuple[int, int], dense: tuple[int, int]) -> nn.Module:
    """``cin -> [1 x k x k, stride (st, s, s)] -> cout``: frames never meet."""
    groups = channel_groups(cin, cout) if depthwise else 1
    return _conv(cin, cout, (1, k, k), (stride[0], stride[1], stride[1]), groups)


def create_temporal_shift_conv(*, cin: int, cout: int, kt: int, k: int, stride: tuple[int, int], depthwise: bool, particle: ParticleSpec, basis: tuple[int, int], dense: tuple[int, int]) -> nn.Module:
    """``cin -> shift (reach (kt-1)/2 frames) -> [1 x k x k, stride (st, s, s)] -> cout`` (TSM)."""
    reach = (kt - 1) // 2
    if 2 * reach > cin:
        reach = max(1, cin // 2)
    shift = TemporalShift(fold=shift_fold(cin, fraction=particle.shift_fraction, reach=reach), reach=reach)
    return nn.Sequential(shift, create_spatial_only_conv(cin=cin, cout=cout, kt=1, k=k, stride=stride, depthwise=depthwise, particle=particle, basis=basis, dense=dense))


def create_p3d_b_conv(*, cin: int, cout: int, kt: int, k: int, stride: tuple[int, int], depthwise: bool, particle: ParticleSpec, basis: tuple[int, int], dense: tuple[int, int]) -> nn.Module:
    """P3D-B, two parallel branches of the same input, summed::

        cin -> [1 x k x k, stride (st, s, s)] -> cout --(+)--> cout
        cin -> [kt x 1 x 1, stride (st, s, s)] -> cout --'

    In depthwise mode both branches are channel-wise (groups gcd(cin, cout)).
    """
    groups = channel_groups(cin, cout) if depthwise else 1
    full_stride = (stride[0], stride[1], stride[1])
    return ParallelSum(spatial=_conv(cin, cout, (1, k, k), full_stride, groups), temporal=_conv(cin, cout, (kt, 1, 1), full_stride, groups))


def create_depthwise_2plus1d_conv(*, cin: int, cout: int, kt: int, k: int, stride: tuple[int, int], depthwise: bool, particle: ParticleSpec, basis: tuple[int, int], dense: tuple[int, int]) -> nn.Module:
    """MoViNet-style (2+1)D, channel-wise in both steps::

        cin -> [depthwise 1 x k x k, stride (1, s, s)] -> cin -> BN -> act
            -> [channel-wise kt x 1 x 1, stride (st, 1, 1), groups gcd(cin, cout)] -> cout
    """
    return nn.Sequential(
        _conv(cin, cin, (1, k, k), (1, stride[1], stride[1]), cin),
        nn.BatchNorm3d(cin),
        ACTIVATION_LAYERS[particle.activation](),
        _conv(cin, cout, (kt, 1, 1), (stride[0], 1, 1), channel_groups(cin, cout)),
    )


def conv_gru_groups(cin: int, cout: int, *, depthwise: bool) -> tuple[int, int, int]:
    """Groups of conv_gru's ``(spatial conv, input-to-gate convs, hidden-to-gate convs)``: all 1, or channel-wise in depthwise mode."""
    if not depthwise:
        return 1, 1, 1
    return channel_groups(cin, cout), cout, cout


def _gate(cin: int, cout: int, kg: int, groups: int, *, bias: bool) -> nn.Conv3d:
    return nn.Conv3d(cin, cout, (1, kg, kg), padding=(0, kg // 2, kg // 2), groups=groups, bias=bias)


def create_conv_gru_conv(*, cin: int, cout: int, kt: int, k: int, stride: tuple[int, int], depthwise: bool, particle: ParticleSpec, basis: tuple[int, int], dense: tuple[int, int]) -> nn.Module:
    """ConvNet + recurrence: a 2D conv per frame, then a convolutional GRU over time (``ConvGRU``)::

        cin -> [1 x k x k, stride (st, s, s)] -> cout -> BN -> act -> x_t (every st-th frame)
        x_t, h_{t-1} -> gates z, r and candidate n: [1 x kt x kt] convs on x_t (with bias) + on h_{t-1} (or r * h_{t-1})
                     -> h_t = (1 - z) h_{t-1} + z n, h_0 = 0 -> cout, one hidden state per frame

    ``kt`` (the particle's temporal_kernel) is the gate convs' kernel: the GRU
    itself reaches every earlier frame. In depthwise mode every conv is channel-wise.
    """
    g_spatial, g_x, g_h = conv_gru_groups(cin, cout, depthwise=depthwise)
    return nn.Sequential(
        _conv(cin, cout, (1, k, k), (stride[0], stride[1], stride[1]), g_spatial),
        nn.BatchNorm3d(cout),
        ACTIVATION_LAYERS[particle.activation](),
        ConvGRU(
            update_x=_gate(cout, cout, kt, g_x, bias=True),
            reset_x=_gate(cout, cout, kt, g_x, bias=True),
            candidate_x=_gate(cout, cout, kt, g_x, bias=True),
            update_h=_gate(cout, cout, kt, g_h, bias=False),
            reset_h=_gate(cout, cout, kt, g_h, bias=False),
            candidate_h=_gate(cout, cout, kt, g_h, bias=False),
        ),
    )


FACTORIZATION_BUILDERS: dict[str, ConvBuilder] = {
    "full": create_full_conv,
    "r2plus1d": create_r2plus1d_conv,
    "csn_ip": create_csn_ip_conv,
    "csn_ir": create_csn_ir_conv,
    "spatial_only": create_spatial_only_conv,
    "temporal_shift": create_temporal_shift_conv,
    "p3d_b": create_p3d_b_conv,
    "depthwise_2plus1d": create_depthwise_2plus1d_conv,
    "conv_gru": create_conv_gru_conv,
}


def create_particle_conv(
    *,
    particle: ParticleSpec,
    cin: int,
    cout: int,
    stride: tuple[int, int] = (1, 1),
    depthwise: bool = False,
    basis: tuple[int, int] | None = None,
    dense: tuple[int, int] | None = None,
) -> nn.Module:
    """The particle's factorized spatiotemporal conv from ``cin`` to ``cout`` channels.

    ``dense`` is this conv's (in, out) widths before pruning (default: ``(cin, cout)``);
    ``basis`` the unpruned (in, out) widths of the block's first particle conv (default: ``dense``).
    """
    builder = FACTORIZATION_BUILDERS[particle.factorization]
    dense = (cin, cout) if dense is None else dense
    basis = dense if basis is None else basis
    return builder(
        cin=cin, cout=cout, kt=particle.temporal_kernel, k=particle.spatial_kernel, stride=stride, depthwise=depthwise, particle=particle, basis=basis, dense=dense
    )


# ---------------------------------------------------------------- wirings
def _norm_se_act(channels: int, particle: ParticleSpec, *, act: bool = True, dense: int | None = None) -> list[nn.Module]:
    """BN [-> SE] [-> act] on ``channels``; the SE bottleneck is sized on the unpruned width ``dense`` and not pruned."""
    layers: list[nn.Module] = [nn.BatchNorm3d(channels)]
    if particle.squeeze_excite > 0:
        squeezed = se_width(channels if dense is None else dense, ratio=particle.squeeze_excite)
        layers.append(SqueezeExcite(channels=channels, squeezed=squeezed))
    if act:
        layers.append(ACTIVATION_LAYERS[particle.activation]())
    return layers


def _projection(cin: int, cout: int, stride: tuple[int, int]) -> nn.Module:
    if cin == cout and stride == (1, 1):
        return nn.Identity()
    return nn.Sequential(_conv(cin, cout, (1, 1, 1), (stride[0], stride[1], stride[1])), nn.BatchNorm3d(cout))


def create_plain_block(*, particle: ParticleSpec, cin: int, cout: int, stride: tuple[int, int]) -> nn.Module:
    """Two particle convs, no skip::

        x -> conv(cin->inner, stride) -> BN -> act -> conv(inner->cout) -> BN [-> SE] -> act
    """
    dense = dense_inner_width(cout, expansion=particle.expansion)
    inner = pruned_width(dense, prune_ratio=effective_prune_ratio(particle))
    act = ACTIVATION_LAYERS[particle.activation]
    branch = nn.Sequential(
        create_particle_conv(particle=particle, cin=cin, cout=inner, stride=stride, dense=(cin, dense)),
        nn.BatchNorm3d(inner),
        act(),
        create_particle_conv(particle=particle, cin=inner, cout=cout, basis=(cin, dense), dense=(dense, cout)),
        *_norm_se_act(cout, particle),
    )
    return ParticleBlock(branch=branch, shortcut=None, post=None)


def create_residual_block(*, particle: ParticleSpec, cin: int, cout: int, stride: tuple[int, int]) -> nn.Module:
    """Basic residual unit (ResNet-18 style)::

        x -> conv(cin->inner, stride) -> BN -> act -> conv(inner->cout) -> BN [-> SE] --(+)--> act
        x -> identity, or 1x1x1 conv(stride) -> BN when shape changes ---------------'
    """
    dense = dense_inner_width(cout, expansion=particle.expansion)
    inner = pruned_width(dense, prune_ratio=effective_prune_ratio(particle))
    act = ACTIVATION_LAYERS[particle.activation]
    branch = nn.Sequential(
        create_particle_conv(particle=particle, cin=cin, cout=inner, stride=stride, dense=(cin, dense)),
        nn.BatchNorm3d(inner),
        act(),
        create_particle_conv(particle=particle, cin=inner, cout=cout, basis=(cin, dense), dense=(dense, cout)),
        *_norm_se_act(cout, particle, act=False),
    )
    return ParticleBlock(branch=branch, shortcut=_projection(cin, cout, stride), post=act())


def create_bottleneck_block(*, particle: ParticleSpec, cin: int, cout: int, stride: tuple[int, int]) -> nn.Module:
    """Bottleneck unit, inner = cout * expansion::

        x -> 1x1x1(cin->inner) -> BN -> act -> conv(inner->inner, stride) -> BN [-> SE] -> act
          -> 1x1x1(inner->cout) -> BN --(+)--> act
        x -> identity, or 1x1x1 conv(stride) -> BN ----'
    """
    dense = dense_inner_width(cout, expansion=particle.expansion)
    inner = pruned_width(dense, prune_ratio=effective_prune_ratio(particle))
    act = ACTIVATION_LAYERS[particle.activation]
    branch = nn.Sequential(
        _conv(cin, inner, (1, 1, 1), (1, 1, 1)),
        nn.BatchNorm3d(inner),
        act(),
        create_particle_conv(particle=particle, cin=inner, cout=inner, stride=stride, dense=(dense, dense)),
        *_norm_se_act(inner, particle, dense=dense),
        _conv(inner, cout, (1, 1, 1), (1, 1, 1)),
        nn.BatchNorm3d(cout),
    )
    return ParticleBlock(branch=branch, shortcut=_projection(cin, cout, stride), post=act())


def create_inverted_block(*, particle: ParticleSpec, cin: int, cout: int, stride: tuple[int, int]) -> nn.Module:
    """Inverted residual (MobileNetV2 style), inner = cin * expansion, channel-wise middle conv::

        x -> 1x1x1(cin->inner) -> BN -> act -> depthwise conv(inner, stride) -> BN [-> SE] -> act
          -> 1x1x1(inner->cout) -> BN (linear) --(+)-->
        x -> identity, only when cin == cout and stride is 1 -'
    """
    dense = dense_inner_width(cin, expansion=particle.expansion)
    inner = pruned_width(dense, prune_ratio=effective_prune_ratio(particle))
    act = ACTIVATION_LAYERS[particle.activation]
    branch = nn.Sequential(
        _conv(cin, inner, (1, 1, 1), (1, 1, 1)),
        nn.BatchNorm3d(inner),
        act(),
        create_particle_conv(particle=particle, cin=inner, cout=inner, stride=stride, depthwise=True, dense=(dense, dense)),
        *_norm_se_act(inner, particle, dense=dense),
        _conv(inner, cout, (1, 1, 1), (1, 1, 1)),
        nn.BatchNorm3d(cout),
    )
    shortcut = nn.Identity() if cin == cout and stride == (1, 1) else None
    return ParticleBlock(branch=branch, shortcut=shortcut, post=None)


def create_single_block(*, particle: ParticleSpec, cin: int, cout: int, stride: tuple[int, int]) -> nn.Module:
    """One particle conv, no skip (a C3D / VGG layer)::

        x -> conv(cin->cout, stride) -> BN [-> SE] -> act
    """
    branch = nn.Sequential(create_particle_conv(particle=particle, cin=cin, cout=cout, stride=stride), *_norm_se_act(cout, particle))
    return ParticleBlock(branch=branch, shortcut=None, post=None)


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
            _conv(cin, reduce, (1, 1, 1), (1, 1, 1)), nn.BatchNorm3d(reduce), act(),
            create_particle_conv(particle=particle, cin=reduce, cout=width, stride=stride, dense=(dense, width)), nn.BatchNorm3d(width), act(),
        )  # fmt: skip

    kernel, pool_stride, padding = inception_pool(particle, stride)
    branches = ParallelConcat(
        nn.Sequential(_conv(cin, one, (1, 1, 1), full_stride), nn.BatchNorm3d(one), act()),
        tower(dense_a, a),
        tower(dense_b, b),
        nn.Sequential(nn.MaxPool3d(kernel, stride=pool_stride, padding=padding), _conv(cin, proj, (1, 1, 1), (1, 1, 1)), nn.BatchNorm3d(proj), act()),
    )
    se = [SqueezeExcite(channels=cout, squeezed=se_width(cout, ratio=particle.squeeze_excite))] if particle.squeeze_excite > 0 else []
    return ParticleBlock(branch=nn.Sequential(branches, *se), shortcut=None, post=None, out_channels=cout)


WIRING_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "plain": create_plain_block,
    "residual": create_residual_block,
    "bottleneck": create_bottleneck_block,
    "inverted": create_inverted_block,
    "single": create_single_block,
    "inception": create_inception_block,
}


def build_particle(particle: ParticleSpec, *, in_channels: int, out_channels: int, stride: tuple[int, int] = (1, 1)) -> nn.Module:
    """One particle as a module mapping (N, in_channels, T, H, W) to (N, out_channels, T', H', W')."""
    return WIRING_BUILDERS[particle.wiring](particle=particle, cin=in_channels, cout=out_channels, stride=tuple(stride))


# ---------------------------------------------------------------- network
def _init_weights(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm3d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)


def build_network(spec: NetworkSpec, *, seed: int | None = None) -> ParticleNet:
    """The proxy network of ``spec``.

    With ``seed`` the initial weights are reproducible and the caller's global
    RNG state is left untouched; without it they come from the global RNG.
    """
    if not isinstance(spec, NetworkSpec):
        raise TypeError(f"build_network expects a NetworkSpec, but got {type(spec).__name__}.")
    if seed is None:
        return _create_network(spec)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _create_network(spec)


def create_pool(name: str) -> list[nn.Module]:
    """The max pool ``name`` of ``POOLS`` as a one-layer list, or no layer for "none"."""
    spec = POOLS[name]
    if spec is None:
        return []
    kernel, stride, padding = spec
    return [nn.MaxPool3d(kernel, stride=stride, padding=padding)]


def create_stem(spec: NetworkSpec) -> nn.Module:
    """One conv, or with ``stem_mid_channels`` the (2+1)D stem of R(2+1)D, or with ``stem_depthwise_temporal`` X3D's,
    then ``stem_pool`` when set::

        C -> [kt x k x k, stride (st, s, s)] -> stem_channels -> BN -> act
        C -> [1 x k x k, stride (1, s, s)] -> mid -> BN -> act -> [kt x 1 x 1, stride (st, 1, 1)] -> stem_channels -> BN -> act
        C -> [1 x k x k, stride (1, s, s)] -> stem_channels -> [depthwise kt x 1 x 1, stride (st, 1, 1)] -> BN -> act
    """
    act = ACTIVATION_LAYERS[spec.stage_particles[0].activation]
    kt, ks = spec.stem_kernel
    st, ss = spec.stem_stride
    c = spec.stem_channels
    pool = create_pool(spec.stem_pool)
    if spec.stem_depthwise_temporal:
        return nn.Sequential(_conv(spec.in_channels, c, (1, ks, ks), (1, ss, ss)), _conv(c, c, (kt, 1, 1), (st, 1, 1), c), nn.BatchNorm3d(c), act(), *pool)
    if spec.stem_mid_channels == 0:
        return nn.Sequential(_conv(spec.in_channels, c, (kt, ks, ks), (st, ss, ss)), nn.BatchNorm3d(c), act(), *pool)
    mid = spec.stem_mid_channels
    return nn.Sequential(
        _conv(spec.in_channels, mid, (1, ks, ks), (1, ss, ss)),
        nn.BatchNorm3d(mid),
        act(),
        _conv(mid, c, (kt, 1, 1), (st, 1, 1)),
        nn.BatchNorm3d(c),
        act(),
        *pool,
    )


def head_in_features(spec: NetworkSpec, channels: int) -> int:
    """Features the head's first linear layer takes: ``channels``, or with ``head_flatten`` channels x T x H x W of the last feature map."""
    return channels * math.prod(spec.feature_shape()) if spec.head_flatten else channels


def create_head(spec: NetworkSpec, *, in_channels: int) -> nn.Module:
    """The classifier (brackets: parts that are set)::

        [1x1x1 conv -> BN -> act (X3D)] -> global pool [-> 1x1x1 conv -> act (X3D)] -> flatten
                                        or, with head_flatten, flatten the whole map (C3D)
          -> [linear -> act -> dropout, per head_fc (C3D's fc6, fc7)] or dropout -> linear(num_classes)
    """
    act = ACTIVATION_LAYERS[spec.stage_particles[-1].activation]
    layers: list[nn.Module] = []
    cin = in_channels
    if spec.head_pre_channels:
        layers += [_conv(cin, spec.head_pre_channels, (1, 1, 1), (1, 1, 1)), nn.BatchNorm3d(spec.head_pre_channels), act()]
        cin = spec.head_pre_channels
    if not spec.head_flatten:
        layers.append(nn.AdaptiveAvgPool3d(1))
    if spec.head_post_channels:
        layers += [_conv(cin, spec.head_post_channels, (1, 1, 1), (1, 1, 1)), act()]
        cin = spec.head_post_channels
    layers.append(nn.Flatten(1))
    cin = head_in_features(spec, cin)
    for width in spec.head_fc:
        layers += [nn.Linear(cin, width), act(), nn.Dropout(spec.dropout)]
        cin = width
    if not spec.head_fc:
        layers.append(nn.Dropout(spec.dropout))
    return nn.Sequential(*layers, nn.Linear(cin, spec.num_classes))


def _create_network(spec: NetworkSpec) -> ParticleNet:
    stem = create_stem(spec)
    stages = []
    cin = spec.stem_channels
    for s, (width, depth, t_stride, s_stride, pool) in enumerate(zip(spec.widths, spec.depths, spec.temporal_strides, spec.spatial_strides, spec.stage_pool_names)):
        blocks = []
        for i in range(depth):
            stride = (t_stride, s_stride) if i == 0 else (1, 1)
            blocks.append(build_particle(spec.block_particle(s, i), in_channels=cin, out_channels=width, stride=stride))
            cin = width
        stages.append(nn.Sequential(*blocks, *create_pool(pool)))
    head = create_head(spec, in_channels=cin)
    net = ParticleNet(stem=stem, stages=nn.Sequential(*stages), head=head)
    _init_weights(net)
    return net
