from __future__ import annotations

import math
import time

import pytest
import torch
from torch import nn

from particle_nas.evaluators import (
    METRICS,
    ZERO_COST,
    EvaluatorSettings,
    Latency,
    ProxyEvaluator,
    SyntheticConfig,
    TrainConfig,
    make_metric,
    make_synthetic_task,
)
from particle_nas.space import ParticleSpec, SpecError, build_network


@pytest.fixture
def batch(tiny_data: SyntheticConfig) -> tuple[torch.Tensor, torch.Tensor]:
    return make_synthetic_task(tiny_data).train.batch(slice(0, 16))


@pytest.mark.parametrize("name", ZERO_COST)
def test_zero_cost_proxy_is_finite_repeatable_and_leaves_the_model_alone(name: str, tiny_spec, batch) -> None:
    model = build_network(tiny_spec(), seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(0)
    first = make_metric(name).measure(model, batch)
    torch.manual_seed(0)
    again = make_metric(name).measure(model, batch)
    assert isinstance(first, float) and math.isfinite(first) and first == again
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    other = make_metric(name).measure(build_network(tiny_spec(ParticleSpec(factorization="spatial_only", temporal_kernel=1)), seed=0), batch)
    assert other != first  # it tells architectures apart


@pytest.mark.parametrize("name", ["synflow", "grad_norm", "snip"])
def test_gradient_proxies_grow_with_width(name: str, tiny_spec, batch) -> None:
    narrow = build_network(tiny_spec(), seed=0)
    wide = build_network(tiny_spec().replace(widths=(32, 32), stem_channels=32), seed=0)
    assert make_metric(name).measure(wide, batch) > make_metric(name).measure(narrow, batch) > 0


def test_synflow_does_not_depend_on_the_data(tiny_spec, batch) -> None:
    model = build_network(tiny_spec(), seed=0)
    x, y = batch
    assert make_metric("synflow").measure(model, batch) == make_metric("synflow").measure(model, (torch.zeros_like(x), y))


def test_naswot_is_minus_infinity_when_inputs_cannot_be_told_apart(tiny_spec, batch) -> None:
    model = build_network(tiny_spec(), seed=0)
    x, y = batch
    same = x[:1].expand_as(x).contiguous()
    assert make_metric("naswot").measure(model, (same, y)) == -math.inf
    assert math.isfinite(make_metric("naswot").measure(model, batch))


class _Sleeper(nn.Module):
    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.calls = 0
        self.linear = nn.Linear(1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        assert x.shape[0] == 1 and not torch.is_grad_enabled() and not self.training
        time.sleep(self.seconds)
        return x


def test_latency_is_the_median_batch1_forward_after_warmup(batch) -> None:
    model = _Sleeper(0.004)
    latency = Latency(warmup=2, repeats=5).measure(model, batch)
    assert model.calls == 7 and model.training  # warm-up + timed passes; training mode restored
    assert latency >= 4.0  # at least the sleep, in milliseconds


def test_latency_at_a_batch_size_repeats_clips_when_the_batch_is_smaller(batch) -> None:
    seen: list[int] = []
    model = nn.Linear(1, 1)
    model.forward = lambda x: seen.append(x.shape[0]) or x  # type: ignore[method-assign]
    assert Latency(warmup=1, repeats=2, batch_size=batch[0].shape[0] + 3).measure(model, batch) >= 0
    assert seen == [batch[0].shape[0] + 3] * 3


def test_registry_and_validation() -> None:
    assert set(ZERO_COST) < set(METRICS) and METRICS["latency_ms"].direction == "minimize"
    with pytest.raises(SpecError, match=r"^metric must be one of"):
        make_metric("flops")
    with pytest.raises(SpecError, match=r"^EvaluatorSettings.zero_cost must be a list of distinct names from"):
        EvaluatorSettings(zero_cost=["synflow", "jacov"])
    with pytest.raises(SpecError, match=r"^EvaluatorSettings.latency must be true or false, but got 'yes'.$"):
        EvaluatorSettings(latency="yes")  # type: ignore[arg-type]


def test_evaluation_reports_the_enabled_evaluators(tiny_data: SyntheticConfig, tiny_spec) -> None:
    settings = EvaluatorSettings(latency=True, zero_cost=("synflow", "naswot"), latency_repeats=3)
    evaluator = ProxyEvaluator(data=tiny_data, train=TrainConfig(epochs=1, threads=1), evaluators=settings)
    record = evaluator.evaluate(tiny_spec(), seed=0).to_dict()
    assert set(record) == {*settings.outputs, "device", "precision", "latency_device"} and record["latency_ms"] > 0
    assert (record["device"], record["precision"], record["latency_device"]) == ("cpu", "fp32", "cpu")  # no latency_batch_ms off CUDA
    again = evaluator.evaluate(tiny_spec(), seed=0).to_dict()
    assert (again["synflow"], again["naswot"], again["accuracy"]) == (record["synflow"], record["naswot"], record["accuracy"])
    untrained = ProxyEvaluator(data=tiny_data, evaluators=EvaluatorSettings(train=False, zero_cost=("snip",))).evaluate(tiny_spec(), seed=0)
    assert set(untrained.to_dict()) == {"flops", "params", "size_bytes", "snip", "device", "precision"} and untrained.accuracy is None
