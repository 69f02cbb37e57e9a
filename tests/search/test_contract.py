"""What every engine honours (local Optuna workers, Ray Tune, progressive expansion): the search contract.

Budgets refuse a particle before it is built, constraints keep infeasible trials off the front, the timeout
stops the search, a resumed study reaches exactly its target, and a trial that raises is recorded with its
reason. The evaluator is a tiny fake scoring a spec from its fields and analytic cost; it leaves a marker
file per call (Ray calls it in worker processes) and writes the weights file it is handed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from optuna.trial import TrialState

from particle_nas.evaluators import Evaluator
from particle_nas.results import open_run, trials_table
from particle_nas.search import SearchJob, SearchSettings, run
from particle_nas.space import NetworkSpec, SearchSpace, cost

SPACE = SearchSpace.from_dict({"factorization": ["full", "r2plus1d", "csn_ir"], "wiring": ["plain", "residual"], "temporal_kernel": [1, 3, 5]})
NETWORK = NetworkSpec(stem_channels=8, widths=(8, 16), depths=(1, 1), temporal_strides=(1, 1), spatial_strides=(1, 2), clip=(4, 16, 16))
# Analytic FLOPs of this space's networks run from 0.11 M to 2.6 M, and the progressive walk starts at 0.57 M
# with steps of 1.14 M to 1.6 M: a limit of 1.2 M leaves trials on both sides for every engine.
LIMIT = 1.2e6
ENGINES = ("optuna", pytest.param("ray", marks=pytest.mark.slow), "progressive")


@dataclass(frozen=True)
class Data:
    clip: tuple = (4, 16, 16)  # the progressive engine changes the evaluator's clip with the candidate's


@dataclass(frozen=True)
class FakeEvaluator(Evaluator):
    """Accuracy from the spec and its analytic cost; a marker file per call; RuntimeError for one kernel; Ctrl-C on a call."""

    calls_dir: str
    data: Data = field(default_factory=Data)
    sleep_s: float = 0.0
    fail_kernel: int | None = None
    interrupt_on: int | None = None  # the n-th call (in this process) raises KeyboardInterrupt

    def for_clip(self, clip):
        return self if tuple(clip) == tuple(self.data.clip) else dataclasses.replace(self, data=Data(clip=tuple(clip)))

    def evaluate(self, spec, *, seed, on_epoch=None, weights_path=None):
        spent = cost(spec)
        Path(self.calls_dir, f"{uuid.uuid4().hex}.json").write_text(json.dumps({"flops": spent.flops}))
        if self.interrupt_on is not None and len(os.listdir(self.calls_dir)) == self.interrupt_on:
            raise KeyboardInterrupt
        time.sleep(self.sleep_s)
        if spec.particle.temporal_kernel == self.fail_kernel:
            raise RuntimeError(f"boom at kernel {self.fail_kernel}\nsecond line")
        accuracy = 0.3 + 0.05 * spec.particle.temporal_kernel + 0.02 * math.log(spent.flops)
        if on_epoch is not None:
            on_epoch(1, accuracy)
        if weights_path is not None:
            Path(weights_path).parent.mkdir(parents=True, exist_ok=True)
            Path(weights_path).write_bytes(b"weights")
        return {"accuracy": accuracy, "flops": spent.flops, "params": spent.params, "epoch_accuracy": [accuracy], "duration_s": self.sleep_s}


def calls(evaluator: FakeEvaluator) -> list[int]:
    """FLOPs of every network the evaluator was called on, in any process."""
    return [json.loads(p.read_text())["flops"] for p in Path(evaluator.calls_dir).iterdir()]


@pytest.fixture(params=ENGINES)
def engine(request):
    if request.param == "ray":
        request.getfixturevalue("local_ray")
    return request.param


def make_evaluator(tmp_path: Path, **options) -> FakeEvaluator:
    calls_dir = tmp_path / f"calls-{uuid.uuid4().hex[:6]}"
    calls_dir.mkdir()
    return FakeEvaluator(calls_dir=str(calls_dir), **options)


def job(tmp_path: Path, engine: str, evaluator: FakeEvaluator, **search) -> SearchJob:
    kind = {"optuna": {"sampler": "random"}, "ray": {"sampler": "random", "backend": "ray"}, "progressive": {"sampler": "progressive", "flops_budget": 4e6}}[engine]
    settings = SearchSettings(**{**kind, **search})
    return SearchJob(run_dir=tmp_path / "run", name="run", space=SPACE, network=NETWORK, evaluator=evaluator, settings=settings, seed=0, fingerprint={"seed": 0}, config={"seed": 0})


def trials(tmp_path: Path):
    return open_run(tmp_path / "run").get_trials()


def test_constraints_keep_infeasible_trials_off_the_front(tmp_path, engine):
    summary = run(job(tmp_path, engine, make_evaluator(tmp_path), trials=8, constraints=(f"flops <= {LIMIT:g}",)), progress=False)
    complete = [t for t in trials(tmp_path) if t.state == TrialState.COMPLETE]
    assert summary.complete == len(complete) >= 4
    for t in complete:
        assert t.user_attrs["constraints"] == [t.user_attrs["flops"] - LIMIT]
        assert t.user_attrs["feasible"] == (t.user_attrs["flops"] <= LIMIT)
    assert {t.user_attrs["feasible"] for t in complete} == {True, False}
    df = trials_table(open_run(tmp_path / "run"))
    assert df["pareto"].any() and not (df["pareto"] & ~df["feasible"]).any()
    assert set(df.loc[df["pareto"], "number"]) == {t.number for t in open_run(tmp_path / "run").best_trials}


def test_a_budget_refuses_a_particle_before_anything_is_built(tmp_path, engine):
    evaluator = make_evaluator(tmp_path)
    summary = run(job(tmp_path, engine, evaluator, trials=8, max_flops=LIMIT), progress=False)
    study = trials(tmp_path)
    refused = [t for t in study if t.state == TrialState.PRUNED]
    trained = [t for t in study if t.state == TrialState.COMPLETE and "duplicate_of" not in t.user_attrs]
    assert summary.finished == 8 and refused and trained
    for t in refused:
        assert t.user_attrs["flops"] == cost(NetworkSpec.from_dict(t.user_attrs["network"])).flops > LIMIT
        assert t.user_attrs["fail_reason"].startswith("over budget: flops ")
        assert "weights" not in t.user_attrs and not (tmp_path / "run" / "weights" / f"trial-{t.number:05d}.safetensors").exists()
    assert sorted(calls(evaluator)) == sorted(t.user_attrs["flops"] for t in trained)  # refused ones never reach it
    assert max(calls(evaluator)) <= LIMIT
    for t in trained:
        assert (tmp_path / "run" / t.user_attrs["weights"]).read_bytes() == b"weights"


def test_the_timeout_stops_the_search(tmp_path, engine):
    timeout = 2.0
    started = time.time()
    summary = run(job(tmp_path, engine, make_evaluator(tmp_path, sleep_s=0.4), trials=40, timeout=timeout), progress=False)
    assert summary.timed_out and not summary.interrupted and summary.finished < 40
    for t in trials(tmp_path):  # no trial starts after the deadline (opening the study may take a moment first)
        assert t.datetime_start.timestamp() <= started + timeout + 5.0
        assert t.state != TrialState.RUNNING


def test_a_resumed_study_finishes_exactly_its_target(tmp_path, engine):
    first = run(job(tmp_path, engine, make_evaluator(tmp_path), trials=2), progress=False)
    assert first.finished == 2 and not first.timed_out
    open_run(tmp_path / "run").ask()  # a trial left RUNNING by a process that was killed
    summary = run(job(tmp_path, engine, make_evaluator(tmp_path), trials=5), progress=False)
    study = trials(tmp_path)
    assert summary.finished == 5 and summary.new == 3 and summary.interrupted_trials == 1
    assert [t.user_attrs["fail_reason"] for t in study if t.state == TrialState.FAIL] == ["interrupted: the process running it stopped"]
    assert not [t for t in study if t.state == TrialState.RUNNING]


@pytest.mark.parametrize("engine", ["optuna", "progressive"])  # a Ctrl-C reaches the driver, which runs these trials itself
def test_ctrl_c_fails_the_running_trial_and_resume_completes(tmp_path, engine):
    summary = run(job(tmp_path, engine, make_evaluator(tmp_path, interrupt_on=3), trials=5), progress=False)
    assert summary.interrupted and not summary.timed_out and summary.finished == 2
    assert [t.user_attrs["fail_reason"] for t in trials(tmp_path) if t.state == TrialState.FAIL] == ["interrupted: Ctrl-C"]
    summary = run(job(tmp_path, engine, make_evaluator(tmp_path), trials=5), progress=False)
    assert not summary.interrupted and summary.finished == 5 and summary.new == 3


def test_a_trial_that_raises_is_recorded_with_its_reason(tmp_path, engine):
    summary = run(job(tmp_path, engine, make_evaluator(tmp_path, fail_kernel=3), trials=8), progress=False)
    failed = [t for t in trials(tmp_path) if t.state == TrialState.FAIL]
    assert summary.finished == 8 and summary.failed == len(failed) >= 1 and summary.complete >= 1
    for t in failed:
        assert t.user_attrs["fail_reason"] == "RuntimeError: boom at kernel 3"
        assert t.user_attrs["particle"]["temporal_kernel"] == 3
    assert dict(summary.fail_reasons) == {"RuntimeError: boom at kernel 3": len(failed)}


def test_a_resume_may_change_only_the_resumable_settings(tmp_path):
    run(job(tmp_path, "optuna", make_evaluator(tmp_path), trials=1), progress=False)
    changed = job(tmp_path, "optuna", make_evaluator(tmp_path), trials=2)
    with pytest.raises(ValueError, match=r"changed: seed\); only search.trials, search.timeout, search.export, .*search.max_params, search.trials_per_gpu may change on resume"):
        run(dataclasses.replace(changed, fingerprint={"seed": 1}), progress=False)


@pytest.mark.parametrize("sampler", ["nsga2", "tpe", "gp", "ehvi"])
@pytest.mark.parametrize("engine", ["optuna", pytest.param("ray", marks=pytest.mark.slow)])  # progressive has its own walk
def test_every_model_based_sampler_searches_under_constraints(tmp_path, engine, sampler, request, recwarn):
    """Each sampler that learns from trials runs on both Optuna-driven engines: it explores past its start-up trials and marks feasibility."""
    if engine == "ray":
        request.getfixturevalue("local_ray")
    summary = run(job(tmp_path, engine, make_evaluator(tmp_path), trials=10, sampler=sampler, population=4, constraints=(f"flops <= {LIMIT:g}",)), progress=False)
    # Ray warns when the define-by-run space takes over a second: the gp sampler's own fitting, not misplaced training
    assert not [w for w in recwarn if "Define-by-run function" in str(w.message)]
    complete = [t for t in trials(tmp_path) if t.state == TrialState.COMPLETE]
    assert summary.finished == 10 and summary.failed == 0 and complete
    assert {t.user_attrs["feasible"] for t in complete} == {True, False}
    searched = [t for t in trials(tmp_path) if t.number >= 4]  # past the sampler's 4 start-up (random) trials
    assert searched and all(t.params for t in searched)
    assert len({json.dumps(t.params, sort_keys=True) for t in trials(tmp_path)}) >= 3  # not stuck on one particle (NSGA-II repeats some in 18)
