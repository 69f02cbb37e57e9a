from __future__ import annotations

import dataclasses
import json
import pickle
import subprocess
import sys

import pytest
import torch

from particle_nas.evaluators import (
    ESTIMATED,
    Evaluation,
    EvaluatorSettings,
    PrecisionPolicy,
    ProxyEvaluator,
    SyntheticConfig,
    TrainConfig,
    TrialOutOfMemory,
    TrialStopped,
    human,
    network_cost,
    unpruned_spec,
)
from particle_nas.space import NetworkSpec, ParticleSpec, SpecError, training_memory

CPU, FP32 = torch.device("cpu"), PrecisionPolicy("fp32", None, False)


@pytest.fixture
def evaluator(tiny_data: SyntheticConfig, tiny_train: TrainConfig) -> ProxyEvaluator:
    return ProxyEvaluator(data=tiny_data, train=tiny_train)


def test_evaluate_counts_cost_and_trains(evaluator: ProxyEvaluator, tiny_spec) -> None:
    spec = tiny_spec()
    epochs: list[int] = []
    result = evaluator.evaluate(spec, seed=0, on_epoch=lambda e, a: epochs.append(e))
    assert isinstance(result, Evaluation)
    assert epochs == [1, 2] and len(result.epoch_accuracy) == 2 and result.accuracy == result.epoch_accuracy[-1]
    cost = network_cost(spec)
    assert (result.flops, result.params) == (cost.flops, cost.params)
    assert set(result.to_dict()) == {"accuracy", "epoch_accuracy", "train_loss", "flops", "params", "duration_s", "size_bytes", "device", "precision"}  # accuracy_before_prune only when the spec prunes
    assert (result.device, result.precision) == ("cpu", "fp32")
    assert result.accuracy_before_prune is None  # the spec does not prune


def test_a_trial_stopped_by_on_epoch_carries_its_cost_and_time(evaluator: ProxyEvaluator, tiny_spec) -> None:
    spec = tiny_spec()

    def stop(epoch: int, accuracy: float) -> None:
        raise TrialStopped("stopped", epoch=epoch, epoch_accuracy=(accuracy,), rule="MO-ASHA")

    with pytest.raises(TrialStopped) as err:
        evaluator.evaluate(spec, seed=0, on_epoch=stop)
    record, cost = err.value.record, network_cost(spec)
    assert (record["flops"], record["params"]) == (cost.flops, cost.params) and record["duration_s"] > 0 and record["device"] == "cpu"
    again = pickle.loads(pickle.dumps(err.value))  # a worker process hands it back whole
    assert (again.epoch, again.epoch_accuracy, again.rule, again.record) == (1, err.value.epoch_accuracy, "MO-ASHA", record)


def test_evaluate_is_reproducible_per_seed(evaluator: ProxyEvaluator, tiny_spec) -> None:
    spec = tiny_spec()
    a = evaluator.evaluate(spec, seed=1)
    b = evaluator.evaluate(spec, seed=1)
    c = evaluator.evaluate(spec, seed=2)
    assert a.epoch_accuracy == b.epoch_accuracy and a.train_loss == b.train_loss
    assert c.train_loss != a.train_loss


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"clip": (8, 32, 32)}, "NetworkSpec.clip"), ({"num_classes": 6}, "NetworkSpec.num_classes"), ({"in_channels": 1}, "NetworkSpec.in_channels")],
)
def test_evaluate_rejects_a_mismatched_spec(evaluator: ProxyEvaluator, tiny_spec, changes: dict, field: str) -> None:
    spec = tiny_spec().replace(**changes)
    with pytest.raises(ValueError, match=rf"^{field} must match the synthetic task's .* \(SyntheticConfig\), but got "):
        evaluator.evaluate(spec, seed=0)


def test_network_spec_matches_the_task(evaluator: ProxyEvaluator) -> None:
    spec = evaluator.network_spec(widths=(8, 8), depths=(1, 1), temporal_strides=(1, 1), spatial_strides=(1, 2))
    assert (spec.clip, spec.num_classes, spec.in_channels) == ((4, 8, 8), 4, 3)
    evaluator.check_spec(spec)
    assert ProxyEvaluator().network_spec() == NetworkSpec(num_classes=SyntheticConfig().num_classes)


def test_evaluator_validates(evaluator: ProxyEvaluator, tiny_spec) -> None:
    with pytest.raises(SpecError, match=r"ProxyEvaluator.train must be a TrainConfig"):
        ProxyEvaluator(train={"epochs": 1})  # type: ignore[arg-type]
    with pytest.raises(SpecError, match=r"ProxyEvaluator.evaluate.seed must be an integer >= 0, but got -1."):
        evaluator.evaluate(tiny_spec(), seed=-1)


def test_evaluator_uses_disk_cache(tmp_path, tiny_data: SyntheticConfig, tiny_train: TrainConfig) -> None:
    evaluator = ProxyEvaluator(data=tiny_data, train=tiny_train, cache_dir=str(tmp_path))  # type: ignore[arg-type]
    assert evaluator.cache_dir == tmp_path
    assert evaluator.task().train.clips.shape[0] == tiny_data.train_size
    assert len(list(tmp_path.glob("synthetic-*.pt"))) == 1



# A worker's trial on a clip of 1024^3: the estimate refuses it before the task is generated or the network built.
_HUGE_TRIAL = """
import json, resource, sys
from pathlib import Path
from particle_nas.evaluators import ProxyEvaluator, SyntheticConfig, TrainConfig
from particle_nas.search._trial import fail_reason
cache = Path(sys.argv[1])
evaluator = ProxyEvaluator(data=SyntheticConfig(num_classes=4, train_size=16, val_size=8, clip=(1024, 1024, 1024)), train=TrainConfig(epochs=1), cache_dir=cache)
try:
    evaluator.evaluate(evaluator.network_spec(), seed=0)
    outcome = {"error": None}
except MemoryError as err:
    outcome = {"error": type(err).__name__, "message": str(err), "fail_reason": fail_reason(err)}
outcome["maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
outcome["cache"] = sorted(p.name for p in cache.iterdir())
print(json.dumps(outcome))
"""


def test_a_network_that_cannot_fit_is_refused_before_anything_is_allocated(tmp_path) -> None:
    done = subprocess.run([sys.executable, "-c", _HUGE_TRIAL, str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout.splitlines()[-1])
    assert outcome["error"] == "TrialOutOfMemory"
    assert outcome["message"].startswith(f"{ESTIMATED} on cpu: training must fit in the free memory, but the network needs about ")
    assert " TB (activations " in outcome["message"] and " at batch 16 in fp32; weights, gradients and optimizer state " in outcome["message"]
    assert outcome["message"].endswith(" are free") and "\n" not in outcome["message"]
    assert ESTIMATED in outcome["fail_reason"]  # the search records it as the trial's one-line reason
    assert outcome["cache"] == []  # the task was never generated
    assert outcome["maxrss_kb"] < 1_500_000  # the imports (about 0.3 GB), not a batch of 1024^3 clips


def test_what_check_memory_estimates(evaluator: ProxyEvaluator, tiny_spec) -> None:
    spec = tiny_spec(ParticleSpec(prune_ratio=0.5))
    plenty = 10**15
    memory = evaluator.check_memory(spec, device=CPU, policy=FP32, free=plenty)
    assert memory == training_memory(unpruned_spec(spec), batch_size=16, optimizer_states=2)  # the unpruned network trains first, with AdamW
    sgd = dataclasses.replace(evaluator, train=dataclasses.replace(evaluator.train, optimizer="sgd"))
    assert sgd.check_memory(spec, device=CPU, policy=FP32, free=plenty).weights == network_cost(unpruned_spec(spec)).params * 4 * 4
    proxies = dataclasses.replace(evaluator, evaluators=EvaluatorSettings(train=False, zero_cost=("synflow",), zero_cost_batch=8))
    assert proxies.check_memory(spec, device=CPU, policy=FP32, free=plenty) == training_memory(spec, batch_size=8, optimizer_states=0)
    with pytest.raises(TrialOutOfMemory) as err:
        evaluator.check_memory(spec, device=CPU, policy=FP32, free=1000)
    assert str(err.value) == (
        f"{ESTIMATED} on cpu: training must fit in the free memory, but the network needs about {human(memory.total, 'B')} "
        f"(activations {human(memory.activations, 'B')} at batch 16 in fp32; weights, gradients and optimizer state {human(memory.weights, 'B')}) and 1 kB are free"
    )


def test_a_network_that_fits_trains_as_before(evaluator: ProxyEvaluator, tiny_spec) -> None:
    memory = evaluator.check_memory(tiny_spec(), device=CPU, policy=FP32)  # against this machine's free memory
    assert 0 < memory.total < 100e6
