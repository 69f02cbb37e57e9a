"""The one trial runner: each way a trial ends is recorded by ``TrialRunner.end``, and its reasons are written in one place."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
from optuna.trial import TrialState

import particle_nas.search as search
from particle_nas.evaluators import Evaluator, TrialStopped
from particle_nas.search import SearchJob, SearchSettings, TrialRunner
from particle_nas.space import NetworkSpec, SearchSpace, cost

SPACE = SearchSpace.from_dict({"factorization": ["full", "r2plus1d"], "wiring": ["plain"], "temporal_kernel": [3, 5]})
NETWORK = NetworkSpec(widths=(8, 16), depths=(1, 1), temporal_strides=(1, 1), spatial_strides=(1, 2), clip=(4, 16, 16))


class Scripted(Evaluator):
    """A record from the analytic cost; raises what ``raises`` holds instead, after one epoch report."""

    epochs = 2

    def __init__(self, raises: BaseException | None = None) -> None:
        self.raises = raises

    def evaluate(self, spec, *, seed, on_epoch=None, weights_path=None):
        spent = cost(spec)
        if on_epoch is not None:
            on_epoch(1, 0.4)
        if self.raises is not None:
            raise self.raises
        return {"accuracy": 0.5, "flops": spent.flops, "params": spent.params}


def _runner(tmp_path: Path, evaluator: Evaluator, **settings) -> tuple[TrialRunner, optuna.Study]:
    job = SearchJob(run_dir=tmp_path, name="r", space=SPACE, network=NETWORK, evaluator=evaluator, settings=SearchSettings(**settings), seed=0, fingerprint={}, config={})
    study = optuna.create_study(directions=job.settings.directions, sampler=optuna.samplers.RandomSampler(seed=0))
    return TrialRunner(job), study


def _ran(tmp_path, evaluator, **settings):
    runner, study = _runner(tmp_path, evaluator, **settings)
    trial = study.ask()
    outcome = runner.run(trial, study=study)
    study.tell(trial, outcome.values, state=outcome.state)
    return outcome, study.trials[-1]


def test_a_trial_that_completes_is_recorded_and_told_with_its_values(tmp_path):
    outcome, trial = _ran(tmp_path, Scripted())
    assert outcome.state == TrialState.COMPLETE and trial.state == TrialState.COMPLETE
    assert outcome.values == tuple(trial.values) and trial.user_attrs["accuracy"] == 0.5
    assert {"worker", "particle", "network"} <= set(trial.user_attrs)


def test_a_trial_that_raises_fails_with_its_one_line_reason(tmp_path):
    outcome, trial = _ran(tmp_path, Scripted(RuntimeError("boom\nsecond line")))
    assert outcome.state == TrialState.FAIL and isinstance(outcome.error, RuntimeError)
    assert trial.user_attrs["fail_reason"] == "RuntimeError: boom"


def test_a_trial_over_budget_is_refused_before_evaluating(tmp_path):
    outcome, trial = _ran(tmp_path, Scripted(AssertionError("never evaluated")), max_flops=1.0)
    assert outcome.state == TrialState.PRUNED and trial.state == TrialState.PRUNED
    assert trial.user_attrs["fail_reason"].startswith("over budget: flops ")


def test_a_stopped_trial_records_where_and_why_it_stopped(tmp_path):
    runner, study = _runner(tmp_path, Scripted())
    trial = study.ask()
    stop = TrialStopped(epoch=1, epoch_accuracy=(0.4,), rule="MO-ASHA")
    stop.record["flops"] = 7
    assert runner.end(trial, stop).state == TrialState.PRUNED
    assert trial.user_attrs["fail_reason"] == "pruned: stopped by MO-ASHA after epoch 1"
    assert trial.user_attrs["stopped_at_epoch"] == 1 and trial.user_attrs["epoch_accuracy"] == [0.4] and trial.user_attrs["flops"] == 7


def test_a_record_without_an_objective_fails_the_trial(tmp_path):
    runner, study = _runner(tmp_path, Scripted())
    trial = study.ask()
    outcome = runner.end(trial, {"flops": 1, "params": 1})
    assert outcome.state == TrialState.FAIL and "accuracy" in trial.user_attrs["fail_reason"]


def test_the_stopped_reason_is_composed_in_one_place():
    """'stopped by ... after epoch' is written once (search/_trial.py), whichever engine stops a trial."""
    where = [p.name for p in sorted(Path(search.__file__).parent.glob("*.py")) if re.search(r"stopped by \{", p.read_text())]
    assert where == ["_trial.py"]
