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

The same walk tallies the activations a training step saves for backward
(``training_memory``): every conv, norm, pool, squeeze-excite product, shift,
sum and GRU state the builders make, per clip; an estimate, not a count
(``tests/space/test_memory_estimate.py`` holds it to what autograd saves).

Each factorization and wiring has a cost function in a registry next to the
builder registry; ``tests/space/test_analytic_cost.py`` checks every one against fvcore.
"""

from __future__ import annotations

import math
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
from ._checks import check_choice, check_int
from ._errors import SpecError
from ._spec import POOLS, NetworkSpec, ParticleSpec, pool_shape

PRECISION_BYTES: dict[str, int] = {"fp32": 4, "bf16": 2, "fp16": 2}  # bytes of an activation element in each training precision


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


# ---------------------------------------------------------------- factorized convs
# Each mirrors the builder of the same name in ``_build.FACTORIZATION_BUILDERS``.
ConvCost = Callable[..., None]


def _full_cost(tally: _Tally, *, cin: int, cout: int, kt: int, k: int, stride: tuple[int, int], depthwise: bool, particle: ParticleSpec, basis: tuple[int, int], dense: tuple[int, int]) -> None:
    tally.conv(cin, cout, kt, k, stride[0], stride[1], channel_groups(cin, cout) if depthwise else 1)


def _r2plus1d_cost(tally: _Tally, *, cin: int, cout: int, kt: int, k: int, stride: tuple[int, int], depthwise: bool, particle: ParticleSpec, basis: tuple[int, int], dense: tuple[int, int]) -> None:
    mid, g1, g2 = r2plus1d_widths(cin=cin, cout=cout, kt=kt, k=k, depthwise=depthwise, particle=particle, dense=dense, basis=basis)
    tally.conv(cin, mid, 1, k, 1, stride[1], g1)
    tally.norm(mid)
    tally.act(mid)
    tally.conv(mid, cout, kt, 1, stride[0], 1, g2)


def _csn_ip_cost(tally: _Tally, *, cin: int, cout: int, kt: int, k: int, stride: tuple[int, int], depthwise: bool, particle: ParticleSpec, basis: tuple[int, int], dense: tuple[int, int]) -> None:
    tally.conv(cin, cout, 1, 1, 1, 1)
    tally.norm(cout)
    tally.conv(cout, cout, kt, k, stride[0], stride[1], cout)


def _csn_ir_cost(tally: _Tally, *, cin: int, cout: int, kt: int, k: int, stride: tuple[int, int], depthwise: bool, particle: ParticleSpec, basis: tuple[int, int], dense: tuple[int, int]) -> None:
    tally.conv(cin, cout, kt, k, stride[0], stride[1], channel_groups(cin, cout))


def _spatial_only_cost(tally: _Tally, *, cin: int, cout: int, kt: int, k: int, stride: tuple[int, int], depthwise: bool, particle: ParticleSpec, basis: tuple[int, int], dense: tuple[int, int]) -> None:
    tally.conv(cin, cout, 1, k, stride[0], stride[1], channel_groups(cin, cout) if depthwise else 1)


def _temporal_shift_cost(tally: _Tally, *, cin: int, cout: int, kt: int, k: int, stride: tuple[int, int], depthwise: bool, particle: ParticleSpec, basis: tuple[int, int], dense: tuple[int, int]) -> None:
    tally.keep(cin)  # the shift is free, but its output is a new tensor
    _spatial_only_cost(tally, cin=cin, cout=cout, kt=kt, k=k, stride=stride, depthwise=depthwise, particle=particle, basis=basis, dense=dense)


def _p3d_b_cost(tally: _Tally, *, cin: int, cout: int, kt: int, k: int, stride: tuple[int, int], depthwise: bool, particle: ParticleSpec, basis: tuple[int, int], dense: tuple[int, int]) -> None:
    groups = channel_groups(cin, cout) if depthwise else 1
    tally.conv(cin, cout, kt, 1, stride[0], stride[1], groups, move=False)
    tally.conv(cin, cout, 1, k, stride[0], stride[1], groups)


def _depthwise_2plus1d_cost(tally: _Tally, *, cin: int, cout: int, kt: int, k: int, stride: tuple[int, int], depthwise: bool, particle: ParticleSpec, basis: tuple[int, int], dense: tuple[int, int]) -> None:
    tally.conv(cin, cin, 1, k, 1, stride[1], cin)
    tally.norm(cin)
    tally.act(cin)
    tally.conv(cin, cout, kt, 1, stride[0], 1, channel_groups(cin, cout))


def _conv_gru_cost(tally: _Tally, *, cin: int, cout: int, kt: int, k: int, stride: tuple[int, int], depthwise: bool, particle: ParticleSpec, basis: tuple[int, int], dense: tuple[int, int]) -> None:
    """Spatial conv, then 3 input-to-gate convs (with bias) on every frame and 3 hidden-to-gate convs once per frame, h_0 included."""
    g_spatial, g_x, g_h = conv_gru_groups(cin, cout, depthwise=depthwise)
    tally.conv(cin, cout, 1, k, stride[0], stride[1], g_spatial)
    tally.norm(cout)
    tally.act(cout)
    for _ in range(3):  # update, reset, candidate
        tally.conv(cout, cout, 1, kt, 1, 1, g_x)
        tally.params += cout  # bias
        tally.conv(cout, cout, 1, kt, 1, 1, g_h)  # T calls of one frame each: the same count as one call over T frames
    tally.keep(cout)  # the stacked hidden states (each gate conv's count stands for one of the per-frame tensors the recurrence keeps)


FACTORIZATION_COSTS: dict[str, ConvCost] = {
    "full": _full_cost,
    "r2plus1d": _r2plus1d_cost,
    "csn_ip": _csn_ip_cost,
    "csn_ir": _csn_ir_cost,
    "spatial_only": _spatial_only_cost,
    "temporal_shift": _temporal_shift_cost,
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
    tally.keep(2 * cout)  # its conv's and its norm's outputs


def _plain_cost(tally: _Tally, *, particle: ParticleSpec, cin: int, cout: int, stride: tuple[int, int]) -> None:
    dense = dense_inner_width(cout, expansion=particle.expansion)
    inner = pruned_width(dense, prune_ratio=effective_prune_ratio(particle))
    _particle_conv(tally, particle, cin, inner, stride, dense=(cin, dense))
    tally.norm(inner)
    tally.act(inner)
    _particle_conv(tally, particle, inner, cout, basis=(cin, dense), dense=(dense, cout))
    tally.norm(cout)
    if particle.squeeze_excite > 0:
        tally.squeeze_excite(cout, particle.squeeze_excite)
    tally.act(cout)  # residual: after the sum


def _residual_cost(tally: _Tally, *, particle: ParticleSpec, cin: int, cout: int, stride: tuple[int, int]) -> None:
    _plain_cost(tally, particle=particle, cin=cin, cout=cout, stride=stride)
    _projection(tally, cin, cout, stride)


def _bottleneck_cost(tally: _Tally, *, particle: ParticleSpec, cin: int, cout: int, stride: tuple[int, int]) -> None:
    dense = dense_inner_width(cout, expansion=particle.expansion)
    inner = pruned_width(dense, prune_ratio=effective_prune_ratio(particle))
    tally.conv(cin, inner, 1, 1, 1, 1)
    tally.norm(inner)
    tally.act(inner)
    _particle_conv(tally, particle, inner, inner, stride, dense=(dense, dense))
    tally.norm(inner)
    if particle.squeeze_excite > 0:
        tally.squeeze_excite(inner, particle.squeeze_excite, dense)
    tally.act(inner)
    tally.conv(inner, cout, 1, 1, 1, 1)
    tally.norm(cout)
    _projection(tally, cin, cout, stride)
    tally.act(cout)  # after the sum


def _inverted_cost(tally: _Tally, *, particle: ParticleSpec, cin: int, cout: int, stride: tuple[int, int]) -> None:
    dense = dense_inner_width(cin, expansion=particle.expansion)
    inner = pruned_width(dense, prune_ratio=effective_prune_ratio(particle))
    tally.conv(cin, inner, 1, 1, 1, 1)
    tally.norm(inner)
    tally.act(inner)
    _particle_conv(tally, particle, inner, inner, stride, depthwise=True, dense=(dense, dense))
    tally.norm(inner)
    if particle.squeeze_excite > 0:
        tally.squeeze_excite(inner, particle.squeeze_excite, dense)
    tally.act(inner)
    tally.conv(inner, cout, 1, 1, 1, 1)
    tally.norm(cout)


def _single_cost(tally: _Tally, *, particle: ParticleSpec, cin: int, cout: int, stride: tuple[int, int]) -> None:
    _particle_conv(tally, particle, cin, cout, stride)
    tally.norm(cout)
    if particle.squeeze_excite > 0:
        tally.squeeze_excite(cout, particle.squeeze_excite)
    tally.act(cout)


def _inception_cost(tally: _Tally, *, particle: ParticleSpec, cin: int, cout: int, stride: tuple[int, int]) -> None:
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
        _particle_conv(tally, particle, reduce, width, stride, dense=(dense, width))
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


def _walk(spec: NetworkSpec, input_shape: Sequence[int] | None, *, caller: str) -> _Tally:
    """The tally of ``build_network(spec)`` on one clip: every layer, in the builders' order."""
    if not isinstance(spec, NetworkSpec):
        raise TypeError(f"{caller} expects a NetworkSpec, but got {type(spec).__name__}.")
    channels, frames, height, width = _clip_of(spec, input_shape)
    tally = _Tally(frames, height, width)
    tally.keep(channels)  # the first conv saves the clip
    tally.activation = spec.stage_particles[0].activation
    kt, ks = spec.stem_kernel
    st, ss = spec.stem_stride
    if spec.stem_depthwise_temporal:
        tally.conv(channels, spec.stem_channels, 1, ks, 1, ss)
        tally.conv(spec.stem_channels, spec.stem_channels, kt, 1, st, 1, spec.stem_channels)
    elif spec.stem_mid_channels:
        tally.conv(channels, spec.stem_mid_channels, 1, ks, 1, ss)
        tally.norm(spec.stem_mid_channels)
        tally.act(spec.stem_mid_channels)
        tally.conv(spec.stem_mid_channels, spec.stem_channels, kt, 1, st, 1)
    else:
        tally.conv(channels, spec.stem_channels, kt, ks, st, ss)
    tally.norm(spec.stem_channels)
    tally.act(spec.stem_channels)
    tally.pool(spec.stem_pool, spec.stem_channels)
    cin = spec.stem_channels
    for s, (width_out, depth, t_stride, s_stride, pool) in enumerate(zip(spec.widths, spec.depths, spec.temporal_strides, spec.spatial_strides, spec.stage_pool_names)):
        for i in range(depth):
            particle = spec.block_particle(s, i)
            tally.activation = particle.activation
            WIRING_COSTS[particle.wiring](tally, particle=particle, cin=cin, cout=width_out, stride=(t_stride, s_stride) if i == 0 else (1, 1))
            cin = width_out
        tally.pool(pool, cin)
    tally.activation = spec.stage_particles[-1].activation
    if spec.head_pre_channels:
        tally.conv(cin, spec.head_pre_channels, 1, 1, 1, 1)
        tally.norm(spec.head_pre_channels)
        tally.act(spec.head_pre_channels)
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
    return tally


def cost(spec: NetworkSpec, input_shape: Sequence[int] | None = None) -> Cost:
    """Params and conv + linear multiply-adds of ``build_network(spec)`` on one clip, from the spec alone.

    ``input_shape`` is (T, H, W) or (C, T, H, W); by default ``spec.input_shape``.
    Equal to fvcore's count on the built network (``evaluators.count_cost``).
    """
    tally = _walk(spec, input_shape, caller="cost")
    return Cost(params=tally.params, flops=tally.flops)


# ---------------------------------------------------------------- training memory
@dataclass(frozen=True)
class TrainingMemory:
    """Bytes one training step of a network takes, estimated from the spec (``training_memory``)."""

    saved: int  # activations the forward pass keeps for backward, for the whole batch
    workspace: int  # the batch, backward's gradients of the largest activation, a quarter of ``saved`` for temporaries and slack
    weights: int  # parameters, their gradients, the optimizer's state and its step's temporaries, autocast's weight copies
    batch_size: int  # clips per training batch
    precision: str  # fp32, bf16 or fp16: the activations' element size

    @property
    def activations(self) -> int:
        """Bytes that grow with the batch: ``saved + workspace``."""
        return self.saved + self.workspace

    @property
    def total(self) -> int:
        """Everything: ``activations + weights``."""
        return self.activations + self.weights


def training_memory(
    spec: NetworkSpec, *, batch_size: int, precision: str = "fp32", optimizer_states: int = 2, input_shape: Sequence[int] | None = None
) -> TrainingMemory:
    """An upper-ish estimate of the memory a training step of ``build_network(spec)`` needs, without building it.

    The walk that counts FLOPs also tallies, per clip, each activation a layer
    makes that autograd keeps for backward (conv and norm outputs, the input
    copies in-place SiLUs keep, pool outputs and their int64 indices,
    squeeze-excite products, shifted and concatenated tensors, the GRU's
    per-frame states), at ``PRECISION_BYTES[precision]`` per element, times
    ``batch_size`` (in bf16 and fp16 also a float32 copy of each max pool's
    input, as CPU autocast pools in fp32): ``saved``. ``workspace``: the fp32
    batch, backward's gradients of the largest activation and of its input,
    and a quarter of ``saved`` for backward's other temporaries and the
    allocator's slack. ``weights``: per parameter the fp32 weight, its gradient,
    ``optimizer_states`` fp32 tensors (AdamW 2, SGD with momentum 1) and one for
    the step's temporaries, plus autocast's weight copy in bf16 and fp16.
    ``tests/space/test_memory_estimate.py`` holds ``saved`` to what autograd
    saves; ``bench/memory_estimate.py`` compares ``total`` with a real step's
    peak memory (docs/space.md).
    """
    check_int("training_memory.batch_size", batch_size, low=1)
    check_choice("training_memory.precision", precision, tuple(PRECISION_BYTES))
    check_int("training_memory.optimizer_states", optimizer_states, low=0, high=8)
    tally = _walk(spec, input_shape, caller="training_memory")
    element = PRECISION_BYTES[precision]
    clip = math.prod(_clip_of(spec, input_shape))
    saved = batch_size * (tally.saved * element + tally.indices * 8 + (tally.pooled * 4 if element < 4 else 0)) + tally.stats * 4
    workspace = batch_size * (clip * 4 + 2 * tally.largest * element) + saved // 4
    weights = tally.params * (4 * (3 + optimizer_states) + (element if element != 4 else 0))
    return TrainingMemory(saved=saved, workspace=workspace, weights=weights, batch_size=batch_size, precision=precision)
