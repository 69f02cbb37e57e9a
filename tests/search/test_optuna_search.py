from __future__ import annotations

from dataclasses import dataclass

import optuna
import pytest
from optuna.trial import TrialState

from particle_nas.evaluators import Evaluator
from particle_nas.search import SearchSettings, run_search
from particle_nas.space import NetworkSpec, SearchSpace

SPACE = SearchSpace.from_dict(
    {
        "factorization": ["full", "r2plus1d", "csn_ir", "spatial_only", "temporal_shift"],
        "wiring": ["residual", "bottleneck"],
        "temporal_kernel": [3, 5],
        "prune_ratio": [0.0, 0.25, 0.5],
    }
)
NETWORK = NetworkSpec(widths=(8, 16), depths=(1, 1), temporal_strides=(1, 1), spatial_strides=(1, 2), clip=(4, 16, 16))


@dataclass
class Scored:
    accuracy: float
    flops: int
    params: int
    epoch_accuracy: tuple
    duration_s: float


class FakeEvaluator(Evaluator):
    """Scores a spec from its fields alone (deterministic), optionally failing or stopping on a call."""

    def __init__(self, *, fail_on: set[int] = frozenset(), interrupt_on: int | None = None):
        self.calls = 0
        self.fail_on = fail_on
        self.interrupt_on = interrupt_on

    def evaluate(self, spec, *, seed, on_epoch=None, weights_path=None):
        self.calls += 1
        if self.calls == self.interrupt_on:
            raise KeyboardInterrupt
        if self.calls in self.fail_on:
            raise RuntimeError("boom\nsecond line")
        p = spec.particle
        acc = 0.3 + 0.1 * p.temporal_kernel * (p.factorization != "spatial_only") - 0.1 * p.prune_ratio
        flops = int(1e6 * p.temporal_kernel * (1 - p.prune_ratio) * (2 if p.wiring == "residual" else 1))
        if on_epoch:
            on_epoch(1, acc)
        return Scored(acc, flops, flops // 10, (acc,), 0.01)


def _run(tmp_path, evaluator, trials, *, seed=0, sampler="random", fingerprint=None):
    settings = SearchSettings(trials=trials, sampler=sampler)
    return run_search(
        run_dir=tmp_path / "run",
        name="run",
        space=SPACE,
        network=NETWORK,
        evaluator=evaluator,
        settings=settings,
        seed=seed,
        fingerprint=fingerprint or {"space": SPACE.to_dict(), "seed": seed},
        config={"seed": seed},
        progress=False,
    )


def _load(tmp_path):
    return optuna.load_study(study_name="run", storage=f"sqlite:///{tmp_path / 'run' / 'study.db'}")


def test_search_records_particles_and_objectives(tmp_path):
    summary = _run(tmp_path, FakeEvaluator(), 6)
    assert (summary.finished, summary.complete, summary.failed) == (6, 6, 0)
    study = _load(tmp_path)
    assert study.user_attrs["objectives"] == [{"name": "accuracy", "direction": "maximize"}, {"name": "flops", "direction": "minimize"}]
    for trial in study.trials:
        assert trial.values == [trial.user_attrs["accuracy"], trial.user_attrs["flops"]]
        assert set(trial.user_attrs["particle"]) >= {"factorization", "wiring", "temporal_kernel", "prune_ratio"}
        assert trial.user_attrs["network"]["widths"] == [8, 16]


def test_resume_keeps_completed_trials_and_only_adds_the_missing(tmp_path):
    first = FakeEvaluator()
    _run(tmp_path, first, 4)
    before = [(t.number, t.values, t.params) for t in _load(tmp_path).trials]
    again = FakeEvaluator()
    summary = _run(tmp_path, again, 4)
    assert summary.new == 0 and again.calls == 0  # nothing redone
    summary = _run(tmp_path, FakeEvaluator(), 7)
    assert (summary.finished, summary.new) == (7, 3)
    after = [(t.number, t.values, t.params) for t in _load(tmp_path).trials]
    assert after[:4] == before


def test_same_seed_gives_the_same_trials(tmp_path):
    _run(tmp_path / "a", FakeEvaluator(), 8, seed=5, sampler="nsga2")
    _run(tmp_path / "b", FakeEvaluator(), 8, seed=5, sampler="nsga2")
    a, b = (_load(tmp_path / d).trials for d in ("a", "b"))
    assert [t.params for t in a] == [t.params for t in b]


def test_failed_trials_are_recorded_and_the_search_goes_on(tmp_path):
    summary = _run(tmp_path, FakeEvaluator(fail_on={2}), 5)
    assert (summary.finished, summary.failed) == (5, 1)
    failed = [t for t in _load(tmp_path).trials if t.state == TrialState.FAIL]
    assert failed[0].user_attrs["fail_reason"] == "RuntimeError: boom"


def test_interrupted_search_resumes_without_counting_the_interrupted_trial(tmp_path):
    summary = _run(tmp_path, FakeEvaluator(interrupt_on=3), 5)
    assert summary.interrupted and summary.finished == 2
    summary = _run(tmp_path, FakeEvaluator(), 5)
    assert not summary.interrupted and summary.finished == 5 and summary.complete == 5
    reasons = [t.user_attrs.get("fail_reason") for t in _load(tmp_path).trials if t.state == TrialState.FAIL]
    assert reasons == ["interrupted: Ctrl-C"]


def test_stale_running_trial_from_a_killed_process_is_failed_on_resume(tmp_path):
    _run(tmp_path, FakeEvaluator(), 2)
    study = _load(tmp_path)
    study.ask()  # a trial left RUNNING, as after SIGKILL
    summary = _run(tmp_path, FakeEvaluator(), 3)
    states = [t.state for t in _load(tmp_path).trials]
    assert states.count(TrialState.COMPLETE) == 3 and states.count(TrialState.FAIL) == 1
    assert summary.finished == 3


def test_identical_particles_are_not_trained_twice(tmp_path):
    evaluator = FakeEvaluator()
    small = SearchSpace.from_dict({"factorization": ["full", "csn_ir"], "temporal_kernel": [3]})
    run_search(run_dir=tmp_path / "run", name="run", space=small, network=NETWORK, evaluator=evaluator, settings=SearchSettings(trials=6, sampler="random"), seed=0, fingerprint={}, config={}, progress=False)
    trials = _load(tmp_path).trials
    assert evaluator.calls == len({t.user_attrs["particle"]["factorization"] for t in trials}) <= 2
    reused = [t for t in trials if "duplicate_of" in t.user_attrs]
    assert len(reused) == 6 - evaluator.calls
    for t in reused:
        assert t.values == trials[t.user_attrs["duplicate_of"]].values


def test_resume_with_a_different_config_is_refused(tmp_path):
    _run(tmp_path, FakeEvaluator(), 2, fingerprint={"space": 1})
    with pytest.raises(ValueError, match=r"made from a different config \(changed: space\)"):
        _run(tmp_path, FakeEvaluator(), 3, fingerprint={"space": 2})


def test_budget_prunes_candidates_before_they_are_built(tmp_path):
    from particle_nas.space import cost

    costs = sorted({cost(NETWORK.replace(particle=p)).flops for p in SPACE.grid()})
    limit = costs[len(costs) // 2]
    evaluator = FakeEvaluator()
    summary = run_search(
        run_dir=tmp_path / "run", name="run", space=SPACE, network=NETWORK, evaluator=evaluator,
        settings=SearchSettings(trials=12, sampler="random", max_flops=limit), seed=0,
        fingerprint={"seed": 0}, config={"seed": 0}, progress=False,
    )  # fmt: skip
    study = _load(tmp_path)
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert summary.finished == 12 and pruned and complete
    assert evaluator.calls == sum("duplicate_of" not in t.user_attrs for t in complete)  # refused ones never reach it
    for t in pruned:
        assert t.user_attrs["flops"] > limit and t.user_attrs["fail_reason"].startswith("over budget: flops ")
    for t in complete:
        assert cost(NETWORK.replace(particle=SPACE.sample(lambda a, t=t: t.params[a.name]))).flops <= limit


def test_budget_settings_validate():
    with pytest.raises(ValueError, match=r"search.max_params must be > 0.0, but got 0."):
        SearchSettings(max_params=0)
    assert SearchSettings(max_flops=10).over_budget(flops=11, params=0) == "over budget: flops 11 > search.max_flops 10"
    assert SearchSettings(max_flops=10).over_budget(flops=10, params=10**9) is None


def test_the_default_sampler_is_ehvi_where_it_applies_and_scipy_a_core_dependency():
    """ehvi won on ParticleBench (docs/particlebench.md), so it is the default for accuracy and an analytic cost, GP elsewhere;
    the package must install what they need (scipy: GP's fits, ehvi's normal distribution)."""
    import tomllib
    from pathlib import Path

    assert SearchSettings().sampler == "ehvi" and SearchSettings(objectives=("accuracy", "params")).sampler == "ehvi"
    assert SearchSettings(objectives=("accuracy", "flops", "params")).sampler == "gp" and SearchSettings(objectives=("accuracy", "latency_ms")).sampler == "gp"
    assert SearchSettings(sampler="nsga2").sampler == "nsga2"
    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]
    assert any(dep.startswith("scipy") for dep in project["dependencies"])


def test_the_gp_sampler_searches_with_constraints(tmp_path):
    settings = SearchSettings(trials=10, sampler="gp", population=4, constraints=("flops <= 3.5e6",))
    summary = run_search(
        run_dir=tmp_path / "run", name="run", space=SPACE, network=NETWORK, evaluator=FakeEvaluator(), settings=settings,
        seed=0, fingerprint={"seed": 0}, config={"seed": 0}, progress=False,
    )
    complete = [t for t in _load(tmp_path).trials if t.state == TrialState.COMPLETE]
    assert summary.failed == 0 and len(complete) == 10 and all("feasible" in t.user_attrs for t in complete)
    assert len({tuple(sorted(t.params.items())) for t in complete}) >= 5  # past its 4 random start-up trials it still explores


def test_constraints_mark_infeasible_trials_and_keep_them_off_the_front(tmp_path):
    from particle_nas.results import open_run, trials_table

    settings = SearchSettings(trials=12, sampler="nsga2", population=4, constraints=("flops <= 3.5e6",))
    run_search(
        run_dir=tmp_path / "run", name="run", space=SPACE, network=NETWORK, evaluator=FakeEvaluator(), settings=settings,
        seed=0, fingerprint={"seed": 0}, config={"seed": 0}, progress=False,
    )
    complete = [t for t in _load(tmp_path).trials if t.state == TrialState.COMPLETE]
    for trial in complete:
        assert trial.user_attrs["constraints"] == [trial.user_attrs["flops"] - 3.5e6]
        assert trial.user_attrs["feasible"] == (trial.user_attrs["flops"] <= 3.5e6)
    assert {t.user_attrs["feasible"] for t in complete} == {True, False}
    df = trials_table(open_run(tmp_path / "run"))
    assert df["pareto"].any() and not (df["pareto"] & ~df["feasible"]).any()
    assert set(df.loc[df["pareto"], "number"]) == {t.number for t in _load(tmp_path).best_trials}


@pytest.mark.parametrize(
    ("constraints", "message"),
    [
        (["flops < 2e9"], "search.constraints[0] must be 'NAME <= NUMBER' or 'NAME >= NUMBER'"),
        (["speed <= 3"], "search.constraints[0] must be 'NAME <= NUMBER' or 'NAME >= NUMBER'"),
        ("latency_ms <= 30", None),
    ],
)
def test_constraint_parsing(constraints, message):
    if message is None:
        settings = SearchSettings(constraints=constraints)
        assert settings.constraints == ("latency_ms <= 30",) and settings.parsed_constraints[0].violation(40) == 10
        assert settings.metrics == ("accuracy", "flops", "latency_ms")
        return
    with pytest.raises(ValueError, match="^" + message.replace("[", r"\[").replace("]", r"\]")):
        SearchSettings(constraints=constraints)
