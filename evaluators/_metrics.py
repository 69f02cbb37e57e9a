"""Scores of a built network that need no training: latency and zero-cost proxies.

Every metric has the same small interface (``Metric``): a name, whether more
is better, and ``measure(model, batch)`` returning one float. The model is
an untrained network fresh from ``build_network``; metrics that change it
(synflow rewrites the weights) work on a copy. ``METRICS`` is the registry.

Zero-cost proxies (scores at initialization that are meant to rank
architectures like training would):

- ``synflow`` (Tanaka et al. 2020; Abdelfattah et al. 2021): weights made
  positive, an all-ones input, R = sum of the outputs; score = sum over conv
  and linear weights of |w * dR/dw|. Computed in float64, batch norm in eval
  mode, so it depends on the architecture only.
- ``grad_norm``: sum over conv and linear weights of the L2 norm of the
  cross-entropy gradient on one batch.
- ``snip`` (Lee et al. 2019): sum of |w * dL/dw| over conv and linear weights.
- ``naswot`` (Mellor et al. 2021): log-determinant of the kernel
  K[i, j] = (number of ReLU/SiLU units where clips i and j agree on being active)
  over one batch; networks that separate inputs into different linear regions score higher.

The zero-cost scores compute in full fp32 (float64 for synflow) on every
device: on CUDA with TF32 off (``full_fp32``), so a GPU scores as the CPU does
up to summation order.

Latency (``latency_ms``): median time of a batch-1 forward pass in eval
mode under no_grad on the model's device, after warm-up passes (wall time on
the CPU, CUDA events on a GPU; see docs/gpu.md).
"""

from __future__ import annotations

import copy
import statistics
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from particle_nas.space import SpecError, check_int

from ._device import full_fp32
from ._quantize import size_bytes
from ._registry import METRIC_INFO, ZERO_COST

_WEIGHTED = (nn.Conv3d, nn.Conv2d, nn.Linear)


class Metric(ABC):
    """One score of an untrained network: ``measure(model, batch) -> float``."""

    name: str = ""
    direction: str = "maximize"  # or "minimize": which way is better, from METRIC_INFO

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            cls.direction = METRIC_INFO[cls.name].direction

    @abstractmethod
    def measure(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> float:
        """Score ``model`` (left as it was) using ``batch`` = (clips (N, C, T, H, W) float, labels (N,))."""


def _weights(model: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in model.modules() if isinstance(m, _WEIGHTED) and m.weight is not None and m.weight.requires_grad]


def _loss_gradients(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight, dL/dweight) for every conv and linear weight, cross-entropy on ``batch``, in train mode, on a copy."""
    model = copy.deepcopy(model).train()
    x, y = batch
    weights = _weights(model)
    with full_fp32():
        loss = F.cross_entropy(model(x), y)
        grads = torch.autograd.grad(loss, weights, allow_unused=True)
    return [(w.detach(), g if g is not None else torch.zeros_like(w)) for w, g in zip(weights, grads)]


class Synflow(Metric):
    name = "synflow"

    def measure(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> float:
        net = copy.deepcopy(model).double().eval()
        with torch.no_grad():
            for p in net.parameters():
                p.abs_()
            for buf_name, buf in net.named_buffers():
                if buf_name.endswith("running_mean"):
                    buf.zero_()
                elif buf_name.endswith("running_var"):
                    buf.fill_(1.0)
        weights = _weights(net)
        x = torch.ones((1, *batch[0].shape[1:]), dtype=torch.float64, device=batch[0].device)
        with full_fp32():
            grads = torch.autograd.grad(net(x).sum(), weights, allow_unused=True)
        return sum(float((w.detach() * g).abs().sum()) for w, g in zip(weights, grads) if g is not None)


class GradNorm(Metric):
    name = "grad_norm"

    def measure(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> float:
        return sum(float(g.norm()) for _, g in _loss_gradients(model, batch))


class Snip(Metric):
    name = "snip"

    def measure(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> float:
        return sum(float((w * g).abs().sum()) for w, g in _loss_gradients(model, batch))


class Naswot(Metric):
    name = "naswot"

    def measure(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> float:
        net = copy.deepcopy(model).train()
        x = batch[0]
        n = x.shape[0]
        kernel = torch.zeros((n, n), dtype=torch.float64, device=x.device)

        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            # ReLU and SiLU are positive exactly where their input is (and in-place ones overwrite it).
            code = (output.detach().reshape(n, -1) > 0).to(torch.float64)
            kernel.add_(code @ code.T).add_((1.0 - code) @ (1.0 - code).T)

        handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, (nn.ReLU, nn.SiLU))]
        try:
            with torch.no_grad(), full_fp32():
                net(x)
        finally:
            for h in handles:
                h.remove()
        sign, logdet = torch.linalg.slogdet(kernel)
        return float(logdet) if sign > 0 else float("-inf")


@dataclass(frozen=True)
class Latency(Metric):
    """Median forward time in milliseconds of ``batch_size`` clips (default 1), after ``warmup`` passes, over ``repeats`` timed passes.

    On the CPU each pass is timed with ``time.perf_counter``. On CUDA each is
    timed with a pair of CUDA events (GPU time of the pass, launch overhead
    included), after the warm-up passes and a synchronize.
    """

    warmup: int = 3
    repeats: int = 15
    batch_size: int = 1
    name = "latency_ms"

    def __post_init__(self) -> None:
        check_int("evaluators.latency_warmup", self.warmup, low=0)
        check_int("evaluators.latency_repeats", self.repeats, low=1)
        check_int("Latency.batch_size", self.batch_size, low=1)

    def measure(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> float:
        x = batch[0][: self.batch_size]
        if x.shape[0] < self.batch_size:  # fewer clips than asked: repeat them
            x = x.repeat(-(-self.batch_size // x.shape[0]), *([1] * (x.dim() - 1)))[: self.batch_size]
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                times = self._cuda_times(model, x) if x.device.type == "cuda" else self._wall_times(model, x)
        finally:
            model.train(was_training)
        return statistics.median(times)

    def _wall_times(self, model: nn.Module, x: torch.Tensor) -> list[float]:
        times = []
        for i in range(self.warmup + self.repeats):
            start = time.perf_counter()
            model(x)
            if i >= self.warmup:
                times.append(1000.0 * (time.perf_counter() - start))
        return times

    def _cuda_times(self, model: nn.Module, x: torch.Tensor) -> list[float]:
        with torch.cuda.device(x.device):  # events record on the current device's stream: make it the model's
            for _ in range(self.warmup):
                model(x)
            torch.cuda.synchronize(x.device)
            events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(self.repeats)]
            for start, end in events:
                start.record()
                model(x)
                end.record()
            torch.cuda.synchronize(x.device)
        return [start.elapsed_time(end) for start, end in events]


class SizeBytes(Metric):
    """Bytes of the network's stored weights (``evaluators.size_bytes``: float32 state, or the int8 model's tensors)."""

    name = "size_bytes"

    def measure(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> float:
        return float(size_bytes(model))


METRICS: dict[str, type[Metric]] = {"synflow": Synflow, "grad_norm": GradNorm, "snip": Snip, "naswot": Naswot, "latency_ms": Latency, "size_bytes": SizeBytes}
METRIC_DIRECTIONS: dict[str, str] = {name: METRIC_INFO[name].direction for name in METRICS}


def make_metric(name: str, **options: int) -> Metric:
    """The metric registered as ``name`` (see METRICS); ``options`` go to its constructor (latency only)."""
    if name not in METRICS:
        raise SpecError("metric", f"must be one of {tuple(METRICS)}", name)
    return METRICS[name](**options)
