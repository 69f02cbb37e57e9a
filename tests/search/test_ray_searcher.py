"""The Ray searcher's bookkeeping, without a cluster: what each way a Tune trial can end becomes in the study."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

pytest.importorskip("ray.tune", reason='the ray backend needs pip install "ray[tune]"')

from particle_nas.evaluators import Evaluator  # noqa: E402
from particle_nas.search import SearchJob, SearchSettings  # noqa: E402
from particle_nas.search._ray import _searcher_class  # noqa: E402
from particle_nas.search._ray_trials import _DefineParticle  # noqa: E402
from particle_nas.space import NetworkSpec, SearchSpace  # noqa: E402

SPACE = SearchSpace.from_dict({"factorization": ["full", "r2plus1d", "csn_ir"], "wiring": ["plain", "residual"], "temporal_kernel": [3, 5]})
NETWORK = NetworkSpec(widths=(8, 16), depths=(1, 1), temporal_strides=(1, 1), spatial_strides=(1, 2), clip=(4, 16, 16))


class FourEpochs(Evaluator):
    """An evaluator's budget, which early stopping reads; never called (nothing is evaluated in the driver)."""

    epochs = 4

    def evaluate(self, spec, *, seed, on_epoch=None, weights_path=None):
        raise AssertionError("never called")


def _searcher():
    storage = optuna.storages.InMemoryStorage()
    # the searcher only names weight paths; nothing is written, nothing is evaluated in the driver
    job = SearchJob(run_dir=Path("runs/unused"), name="s", space=SPACE, network=NETWORK, evaluator=FourEpochs(), settings=SearchSettings(early_stopping="asha", grace_epochs=1), seed=0, fingerprint={}, config={})
    searcher = _searcher_class()(
        space=_DefineParticle(job),
        metric=["accuracy", "flops"],
        mode=["max", "min"],
        sampler=optuna.samplers.RandomSampler(seed=0),
        study_name="s",
        storage=storage,
        job=job,
    )
    return searcher, optuna.load_study(study_name="s", storage=storage)


def test_completed_stopped_and_failed_tune_trials():
    searcher, study = _searcher()
    configs = {tid: searcher.suggest(tid) for tid in ("done", "stopped", "failed", "crashed")}
    for config in configs.values():
        assert set(json.loads(config["particle"])) >= {"factorization", "wiring", "temporal_kernel"}
    record = {"accuracy": 0.5, "flops": 1000, "params": 10, "epoch_accuracy": [0.4, 0.5], "duration_s": 1.0}
    searcher.on_trial_result("done", {"val_accuracy": 0.4, "epoch": 1, "finished": False})
    searcher.on_trial_complete("done", {"finished": True, "record": json.dumps(record), "epoch": 2, "val_accuracy": 0.5})
    searcher.on_trial_result("stopped", {"val_accuracy": 0.2, "epoch": 1, "finished": False})
    searcher.on_trial_complete("stopped", {"val_accuracy": 0.2, "epoch": 1, "finished": False})  # ASHA stopped it
    searcher.on_trial_complete("failed", {"finished": False, "fail_reason": "RuntimeError: boom"})
    searcher.on_trial_complete("crashed", None, error=True)
    trials = {t.number: t for t in study.get_trials()}
    done, stopped, failed, crashed = (trials[i] for i in range(4))
    assert done.state == TrialState.COMPLETE and done.values == [0.5, 1000.0]
    assert {k: done.user_attrs[k] for k in record} == record
    assert done.user_attrs["particle"] == json.loads(configs["done"]["particle"])
    assert done.user_attrs["network"]["particle"] == done.user_attrs["particle"]
    assert stopped.state == TrialState.PRUNED and stopped.values is None  # never on the Pareto front
    assert stopped.user_attrs["epoch_accuracy"] == [0.2]
    assert stopped.user_attrs["fail_reason"] == "pruned: stopped by ASHA after epoch 1"
    assert stopped.user_attrs["stopped_at_epoch"] == 1 and stopped.user_attrs["rung_accuracy"] == {"1": 0.2}  # where a resumed run's scheduler reads it
    assert done.user_attrs["rung_accuracy"] == {"1": 0.4}  # the rungs it reported (epochs 1, 2 of 4; this one sent epoch 1 only)
    assert failed.state == TrialState.FAIL and failed.user_attrs["fail_reason"] == "RuntimeError: boom"
    assert crashed.state == TrialState.FAIL and crashed.user_attrs["fail_reason"].startswith("ray: the trial's worker failed")


def test_an_identical_particle_is_sent_with_its_record_to_reuse():
    searcher, study = _searcher()
    first = searcher.suggest("a")
    record = {"accuracy": 0.5, "flops": 1000, "params": 10}
    searcher.on_trial_complete("a", {"finished": True, "record": json.dumps(record)})
    for i in range(40):  # 12 particles in the space: a repeat comes quickly
        config = searcher.suggest(f"b{i}")
        if config["particle"] == first["particle"]:
            break
    else:
        pytest.fail("the sampler never drew the first particle again")
    assert json.loads(config["reuse"]) == record
    assert study.get_trials()[-1].user_attrs["duplicate_of"] == 0


def test_a_trial_that_reported_a_cuda_error_then_raised_is_failed_interrupted():
    """The trainable reports the reason of a CUDA error, then raises so that Tune ends its actor: Tune tells the searcher no result."""
    searcher, study = _searcher()
    searcher.suggest("broken")
    reason = "interrupted: the worker stopped after a CUDA error (AcceleratorError: CUDA error: an illegal memory access was encountered)"
    searcher.on_trial_result("broken", {"finished": False, "fail_reason": reason})
    searcher.on_trial_complete("broken", None, error=True)
    (trial,) = study.get_trials()
    assert trial.state == TrialState.FAIL and trial.user_attrs["fail_reason"] == reason  # not counted: another trial runs in its place
