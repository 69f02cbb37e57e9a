from __future__ import annotations

import pickle

import pytest

from particle_nas.evaluators import Evaluation, ProxyEvaluator, SyntheticConfig, TrainConfig, TrialStopped, network_cost
from particle_nas.space import NetworkSpec, SpecError


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

