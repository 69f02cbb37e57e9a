"""The analytic cost model: parameters and multiply-adds of a spec's network, without building it.

Pure integer arithmetic over the spec, layer for layer as ``_build`` lays the
network out: each factorization's and wiring's registry entry has a ``cost``
function beside its builder, sharing its width rules. It counts what fvcore
counts on the built network (see ``particle_nas.evaluators.count_cost``):

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

``tests/space/test_space_registry.py`` checks every entry's cost against fvcore.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ._build import head_in_features
from ._checks import check_choice, check_int
from ._errors import SpecError
from ._registry import BlockCost, ConvCost, get_factorization, get_wiring
from ._spec import FACTORIZATIONS, WIRINGS, NetworkSpec
from ._tally import Tally

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


# Views of the registry: each factorization's and wiring's cost function by short name (see ``Tally``).
FACTORIZATION_COSTS: dict[str, ConvCost] = {name: get_factorization(name).cost for name in FACTORIZATIONS}
WIRING_COSTS: dict[str, BlockCost] = {name: get_wiring(name).cost for name in WIRINGS}


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


def _walk(spec: NetworkSpec, input_shape: Sequence[int] | None, *, caller: str) -> Tally:
    """The tally of ``build_network(spec)`` on one clip: every layer, in the builders' order."""
    if not isinstance(spec, NetworkSpec):
        raise TypeError(f"{caller} expects a NetworkSpec, but got {type(spec).__name__}.")
    channels, frames, height, width = _clip_of(spec, input_shape)
    tally = Tally(frames, height, width)
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
            get_wiring(particle.wiring).cost(tally, particle=particle, cin=cin, cout=width_out, stride=(t_stride, s_stride) if i == 0 else (1, 1))
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
