"""The analytic cost model: parameters and multiply-adds of a spec's network, without building it.

Pure integer arithmetic over the spec, layer for layer as ``_build`` lays the
network out, sharing its width rules (``dense_inner_width``, ``pruned_width``,
``effective_prune_ratio``, ``r2plus1d_widths``, ``se_width``, ``channel_groups``, ``conv_gru_groups``). It counts what fvcore counts on the built
network (see ``particle_nas.evaluators.count_cost``):

- params: every trainable tensor: conv weights (no bias), batch-norm scale and
  shift, squeeze-excite convs and conv_gru's input-to-gate convs with their
  biases, the linear head with its bias;
- FLOPs: multiply-adds of conv and linear layers for one clip: a conv costs
  ``weights x output positions``, the head ``in x out``. Batch norm,
  activations, pooling, additions, temporal shifts and the GRU's gating
  (sigmoid, tanh, products) are free; its gate convs are convs like any other.

Each factorization and wiring has a cost function in a registry next to the
builder registry; ``tests/space/test_analytic_cost.py`` checks every one against fvcore.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable

from ._build import (
    channel_groups,
    conv_gru_groups,
    dense_inner_width,
    effective_prune_ratio,
    head_in_features,
    inception_widths,
    pruned_width,
    r2plus1d_widths,
    se_width,
)
from ._errors import SpecError
from ._spec import NetworkSpec, ParticleSpec, pool_shape


@dataclass(frozen=True)
class Cost:
    """What one clip costs: trainable parameters and conv + linear multiply-adds."""

    params: int  # number of trainable parameters
    flops: int  # multiply-adds of conv and linear layers, batch 1

    def __post_init__(self) -> None:
        for name in ("params", "flops"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise SpecError(f"Cost.{name}", "must be an integer >= 0", value)

    @property
    def mflops(self) -> float:
        """Multiply-adds in millions."""
        return self.flops / 1e6

    @property
    def gflops(self) -> float:
        """Multiply-adds in billions."""
        return self.flops / 1e9


class _Tally:
    """Running params and FLOPs, and the (T, H, W) of the activation flowing through."""

    __slots__ = ("params", "flops", "t", "h", "w")

    def __init__(self, t: int, h: int, w: int) -> None:
        self.params = 0
        self.flops = 0
        self.t, self.h, self.w = t, h, w

    def conv(self, cin: int, cout: int, kt: int, k: int, st: int, ss: int, groups: int = 1, *, move: bool = True) -> None:
        """A bias-free ``kt x k x k`` conv padded by ``kernel // 2``, strided ``(st, ss, ss)``."""
        t, h, w = (self.t - 1) // st + 1, (self.h - 1) // ss + 1, (self.w - 1) // ss + 1
        weights = cout * (cin // groups) * kt * k * k
        self.params += weights
        self.flops += weights * t * h * w
        if move:
            self.t, self.h, self.w = t, h, w

    def norm(self, channels: int) -> None:
        self.params += 2 * channels

    def pool(self, name: str) -> None:
        """Max pool ``name`` (see ``POOLS``): free, but it shrinks what follows."""
        self.t, self.h, self.w = pool_shape(name, (self.t, self.h, self.w))

    def linear(self, cin: int, cout: int) -> None:
        """A linear layer with bias on a flat vector."""
        self.params += cin * cout + cout
        self.flops += cin * cout

    def squeeze_excite(self, channels: int, ratio: float, dense: int | None = None) -> None:
        """Two 1x1x1 convs with bias on the pooled (1, 1, 1) activation, sized on the unpruned width ``dense``."""
        squeezed = se_width(channels if dense is None else dense, ratio=ratio)
        self.params += 2 * channels * squeezed + squeezed + channels
        self.flops += 2 * channels * squeezed


# ---------------------------------------------------------------- factorized convs
# Each mirrors the builder of the same name in ``_build.FACTORIZATION_BUILDERS``.
ConvCost = Callable[..., None]


def _full_cost(tally: _Tally, *, cin: int, cout: int, kt: int, k: int, stride: tuple[int, int], depthwise: bool, particle: ParticleSpec, basis: tuple[int, int], dense: tuple[int, int]) -> None:
    tally.conv(cin, cout, kt, k, stride[0], stride[1], channel_groups(cin, cout) if depthwise else 1)


def _r2plus1d_cost(tally: _Tally, *, cin: int, cout: int, kt: int, k: int, stride: tuple[int, int], depthwise: bool, particle: ParticleSpec, basis: tuple[int, int], dense: tuple[int, int]) -> None:
    mid, g1, g2 = r2plus1d_widths(cin=cin, cout=cout, kt=kt, k=k, depthwise=depthwise, particle=particle, dense=dense, basis=basis)
    tally.conv(cin, mid, 1, k, 1, stride[1], g1)
    tally.norm(mid)
    tally.conv(mid, cout, kt, 1, stride[0], 1, g2)


def _csn_ip_cost(tally: _Tally, *, cin: int, cout: int, kt: int, k: int, stride: tuple[int, int], depthwise: bool, particle: ParticleSpec, basis: tuple[int, int], dense: tuple[int, int]) -> None:
    tally.conv(cin, cout, 1, 1, 1, 1)
    tally.norm(cout)
    tally.conv(cout, cout, kt, k, stride[0], stride[1], cout)


def _csn_ir_cost(tally: _Tally, *, cin: int, cout: int, kt: int, k: int, stride: tuple[int, int], depthwise: bool, particle: ParticleSpec, basis: tuple[int, int], dense: tuple[int, int]) -> None:
    tally.conv(cin, cout, kt, k, stride[0], stride[1], channel_groups(cin, cout))


def _spatial_only_cost(tally: _Tally, *, cin: int, cout: int, kt: int, k: int, stride: tuple[int, int], depthwise: bool, particle: ParticleSpec, basis: tuple[int, int], dense: tuple[int, int]) -> None:
    tally.conv(cin, cout, 1, k, stride[0], stride[1], channel_groups(cin, cout) if depthwise else 1)


def _p3d_b_cost(tally: _Tally, *, cin: int, cout: int, kt: int, k: int, stride: tuple[int, int], depthwise: bool, particle: ParticleSpec, basis: tuple[int, int], dense: tuple[int, int]) -> None:
    groups = channel_groups(cin, cout) if depthwise else 1
    tally.conv(cin, cout, kt, 1, stride[0], stride[1], groups, move=False)
    tally.conv(cin, cout, 1, k, stride[0], stride[1], groups)


def _depthwise_2plus1d_cost(tally: _Tally, *, cin: int, cout: int, kt: int, k: int, stride: tuple[int, int], depthwise: bool, particle: ParticleSpec, basis: tuple[int, int], dense: tuple[int, int]) -> None:
    tally.conv(cin, cin, 1, k, 1, stride[1], cin)
    tally.norm(cin)
    tally.conv(cin, cout, kt, 1, stride[0], 1, channel_groups(cin, cout))


def _conv_gru_cost(tally: _Tally, *, cin: int, cout: int, kt: int, k: int, stride: tuple[int, int], depthwise: bool, particle: ParticleSpec, basis: tuple[int, int], dense: tuple[int, int]) -> None:
    """Spatial conv, then 3 input-to-gate convs (with bias) on every frame and 3 hidden-to-gate convs once per frame, h_0 included."""
    g_spatial, g_x, g_h = conv_gru_groups(cin, cout, depthwise=depthwise)
    tally.conv(cin, cout, 1, k, stride[0], stride[1], g_spatial)
    tally.norm(cout)
    for _ in range(3):  # update, reset, candidate
        tally.conv(cout, cout, 1, kt, 1, 1, g_x)
        tally.params += cout  # bias
        tally.conv(cout, cout, 1, kt, 1, 1, g_h)  # T calls of one frame each: the same count as one call over T frames


FACTORIZATION_COSTS: dict[str, ConvCost] = {
    "full": _full_cost,
    "r2plus1d": _r2plus1d_cost,
    "csn_ip": _csn_ip_cost,
    "csn_ir": _csn_ir_cost,
    "spatial_only": _spatial_only_cost,
    "temporal_shift": _spatial_only_cost,  # the shift itself is free
    "p3d_b": _p3d_b_cost,
    "depthwise_2plus1d": _depthwise_2plus1d_cost,
    "conv_gru": _conv_gru_cost,
}


def _particle_conv(
    tally: _Tally, particle: ParticleSpec, cin: int, cout: int, stride: tuple[int, int] = (1, 1), depthwise: bool = False,
    basis: tuple[int, int] | None = None, dense: tuple[int, int] | None = None,
) -> None:
    dense = (cin, cout) if dense is None else dense
    FACTORIZATION_COSTS[particle.factorization](
        tally, cin=cin, cout=cout, kt=particle.temporal_kernel, k=particle.spatial_kernel, stride=stride, depthwise=depthwise, particle=particle,
        basis=dense if basis is None else basis, dense=dense,
    )  # fmt: skip


# ---------------------------------------------------------------- wirings
def _projection(tally: _Tally, cin: int, cout: int, stride: tuple[int, int]) -> None:
    """The shortcut's 1x1x1 conv + BN; called after the branch, whose output size it shares."""
    if cin == cout and stride == (1, 1):
        return
    weights = cout * cin
    tally.params += weights + 2 * cout
    tally.flops += weights * tally.t * tally.h * tally.w  # same output size as the branch


def _plain_cost(tally: _Tally, *, particle: ParticleSpec, cin: int, cout: int, stride: tuple[int, int]) -> None:
    dense = dense_inner_width(cout, expansion=particle.expansion)
    inner = pruned_width(dense, prune_ratio=effective_prune_ratio(particle))
    _particle_conv(tally, particle, cin, inner, stride, dense=(cin, dense))
    tally.norm(inner)
    _particle_conv(tally, particle, inner, cout, basis=(cin, dense), dense=(dense, cout))
    tally.norm(cout)
    if particle.squeeze_excite > 0:
        tally.squeeze_excite(cout, particle.squeeze_excite)


def _residual_cost(tally: _Tally, *, particle: ParticleSpec, cin: int, cout: int, stride: tuple[int, int]) -> None:
    _plain_cost(tally, particle=particle, cin=cin, cout=cout, stride=stride)
    _projection(tally, cin, cout, stride)


def _bottleneck_cost(tally: _Tally, *, particle: ParticleSpec, cin: int, cout: int, stride: tuple[int, int]) -> None:
    dense = dense_inner_width(cout, expansion=particle.expansion)
    inner = pruned_width(dense, prune_ratio=effective_prune_ratio(particle))
    tally.conv(cin, inner, 1, 1, 1, 1)
    tally.norm(inner)
    _particle_conv(tally, particle, inner, inner, stride, dense=(dense, dense))
    tally.norm(inner)
    if particle.squeeze_excite > 0:
        tally.squeeze_excite(inner, particle.squeeze_excite, dense)
    tally.conv(inner, cout, 1, 1, 1, 1)
    tally.norm(cout)
    _projection(tally, cin, cout, stride)


def _inverted_cost(tally: _Tally, *, particle: ParticleSpec, cin: int, cout: int, stride: tuple[int, int]) -> None:
    dense = dense_inner_width(cin, expansion=particle.expansion)
    inner = pruned_width(dense, prune_ratio=effective_prune_ratio(particle))
    tally.conv(cin, inner, 1, 1, 1, 1)
    tally.norm(inner)
    _particle_conv(tally, particle, inner, inner, stride, depthwise=True, dense=(dense, dense))
    tally.norm(inner)
    if particle.squeeze_excite > 0:
        tally.squeeze_excite(inner, particle.squeeze_excite, dense)
    tally.conv(inner, cout, 1, 1, 1, 1)
    tally.norm(cout)


def _single_cost(tally: _Tally, *, particle: ParticleSpec, cin: int, cout: int, stride: tuple[int, int]) -> None:
    _particle_conv(tally, particle, cin, cout, stride)
    tally.norm(cout)
    if particle.squeeze_excite > 0:
        tally.squeeze_excite(cout, particle.squeeze_excite)


def _inception_cost(tally: _Tally, *, particle: ParticleSpec, cin: int, cout: int, stride: tuple[int, int]) -> None:
    one, dense_a, a, dense_b, b, proj = inception_widths(particle, cout)
    ratio = effective_prune_ratio(particle)
    size = (tally.t, tally.h, tally.w)
    tally.conv(cin, one, 1, 1, stride[0], stride[1], move=False)
    tally.norm(one)
    for dense, width in ((dense_a, a), (dense_b, b)):
        reduce = pruned_width(dense, prune_ratio=ratio)
        tally.conv(cin, reduce, 1, 1, 1, 1)
        tally.norm(reduce)
        _particle_conv(tally, particle, reduce, width, stride, dense=(dense, width))
        tally.norm(width)
        tally.t, tally.h, tally.w = size  # the next branch reads the block's input
    tally.conv(cin, proj, 1, 1, stride[0], stride[1])  # after the free max pool, which strides as the convs do
    tally.norm(proj)
    if particle.squeeze_excite > 0:
        tally.squeeze_excite(cout, particle.squeeze_excite)


WIRING_COSTS: dict[str, Callable[..., None]] = {
    "plain": _plain_cost,
    "residual": _residual_cost,
    "bottleneck": _bottleneck_cost,
    "inverted": _inverted_cost,
    "single": _single_cost,
    "inception": _inception_cost,
}


# ---------------------------------------------------------------- network
def _clip_of(spec: NetworkSpec, input_shape: Sequence[int] | None) -> tuple[int, int, int, int]:
    if input_shape is None:
        return spec.input_shape
    shape = tuple(input_shape) if isinstance(input_shape, Sequence) and not isinstance(input_shape, str) else ()
    if len(shape) == 3:
        shape = (spec.in_channels, *shape)
    if len(shape) != 4 or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in shape):
        raise SpecError("cost.input_shape", "must be (T, H, W) or (C, T, H, W) positive integers of one clip", input_shape)
    return shape  # type: ignore[return-value]


def cost(spec: NetworkSpec, input_shape: Sequence[int] | None = None) -> Cost:
    """Params and conv + linear multiply-adds of ``build_network(spec)`` on one clip, from the spec alone.

    ``input_shape`` is (T, H, W) or (C, T, H, W); by default ``spec.input_shape``.
    Equal to fvcore's count on the built network (``evaluators.count_cost``).
    """
    if not isinstance(spec, NetworkSpec):
        raise TypeError(f"cost expects a NetworkSpec, but got {type(spec).__name__}.")
    channels, frames, height, width = _clip_of(spec, input_shape)
    tally = _Tally(frames, height, width)
    kt, ks = spec.stem_kernel
    st, ss = spec.stem_stride
    if spec.stem_depthwise_temporal:
        tally.conv(channels, spec.stem_channels, 1, ks, 1, ss)
        tally.conv(spec.stem_channels, spec.stem_channels, kt, 1, st, 1, spec.stem_channels)
    elif spec.stem_mid_channels:
        tally.conv(channels, spec.stem_mid_channels, 1, ks, 1, ss)
        tally.norm(spec.stem_mid_channels)
        tally.conv(spec.stem_mid_channels, spec.stem_channels, kt, 1, st, 1)
    else:
        tally.conv(channels, spec.stem_channels, kt, ks, st, ss)
    tally.norm(spec.stem_channels)
    tally.pool(spec.stem_pool)
    cin = spec.stem_channels
    for s, (width_out, depth, t_stride, s_stride, pool) in enumerate(zip(spec.widths, spec.depths, spec.temporal_strides, spec.spatial_strides, spec.stage_pool_names)):
        for i in range(depth):
            particle = spec.block_particle(s, i)
            WIRING_COSTS[particle.wiring](tally, particle=particle, cin=cin, cout=width_out, stride=(t_stride, s_stride) if i == 0 else (1, 1))
            cin = width_out
        tally.pool(pool)
    if spec.head_pre_channels:
        tally.conv(cin, spec.head_pre_channels, 1, 1, 1, 1)
        tally.norm(spec.head_pre_channels)
        cin = spec.head_pre_channels
    if spec.head_post_channels:  # on the pooled (1, 1, 1) activation
        tally.params += cin * spec.head_post_channels
        tally.flops += cin * spec.head_post_channels
        cin = spec.head_post_channels
    if spec.head_flatten:
        expected = spec.feature_shape()  # at least 1 x 1 x 1: the spec checks its clip
        if (tally.t, tally.h, tally.w) != expected:
            raise SpecError(
                "cost.input_shape",
                f"must give the flattened head the feature map of the spec's clip {list(spec.clip)} ({list(expected)}, head_flatten)",
                list(input_shape or ()),
            )
        cin = head_in_features(spec, cin)
    for width_out in spec.head_fc:
        tally.linear(cin, width_out)
        cin = width_out
    tally.linear(cin, spec.num_classes)
    return Cost(params=tally.params, flops=tally.flops)
