"""Cost accounting: parameters and multiply-adds of one clip, as plain functions beside the model.

FLOPs follow the convention of the C3D, R(2+1)D and X3D papers: multiply-adds
of the convolution and linear layers only, for a single clip (batch 1).
Normalization, activations, pooling, additions and shifts are free.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import warnings
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from particle_nas.space import Cost, NetworkSpec, SpecError
from particle_nas.space import cost as analytic_cost

# fvcore's operator names whose counts are multiply-adds of conv and linear layers.
COUNTED_OPERATORS = frozenset({"conv", "linear", "addmm", "matmul", "bmm"})


def _check_input_shape(input_shape: Sequence[int]) -> tuple[int, int, int, int]:
    shape = tuple(input_shape) if isinstance(input_shape, Sequence) else ()
    if len(shape) != 4 or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in shape):
        raise SpecError("count_cost.input_shape", "must be four positive integers (C, T, H, W) of one clip", input_shape)
    return shape  # type: ignore[return-value]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the tracer's warnings and fvcore's logged notes about skipped operators."""
    logger = logging.getLogger("fvcore")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (shared tensors counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_cost(model: nn.Module, *, input_shape: Sequence[int]) -> Cost:
    """Parameters and conv + linear multiply-adds of ``model`` on one clip of ``input_shape`` (C, T, H, W).

    The model is traced once in eval mode under ``torch.no_grad`` on a zero
    clip placed on the model's device; its training mode is restored afterwards.
    """
    shape = _check_input_shape(input_shape)
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    clip = torch.zeros((1, *shape), device=device, dtype=dtype)
    was_training = model.training
    model.eval()
    try:
        with _quiet(), torch.no_grad():
            # Imported here: importing fvcore.nn emits torch.jit deprecation warnings, and costs time.
            from fvcore.nn import FlopCountAnalysis

            analysis = FlopCountAnalysis(model, clip)
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
            by_operator = analysis.by_operator()
    finally:
        model.train(was_training)
    flops = sum(int(count) for name, count in by_operator.items() if name in COUNTED_OPERATORS)
    return Cost(params=count_parameters(model), flops=flops)


@functools.lru_cache(maxsize=512)
def network_cost(spec: NetworkSpec) -> Cost:
    """Cost of the proxy network of ``spec`` on one clip of ``spec.input_shape`` (cached per spec).

    Computed by the analytic model ``particle_nas.space.cost`` from the spec
    alone (no module is built), which equals fvcore's count on the built
    network (tests/space/test_analytic_cost.py checks that over random specs).
    """
    if not isinstance(spec, NetworkSpec):
        raise TypeError(f"network_cost expects a NetworkSpec, but got {type(spec).__name__}.")
    return analytic_cost(spec)
