"""Early stopping (ASHA on accuracy, MO-ASHA on accuracy and the costs): the ranking on hand-made points, then the engines.

The engine tests script everything: six particles of known analytic FLOPs, each with a per-epoch accuracy
curve, asked in a fixed order by a scripted sampler. The cheapest particle learns slowly (worst at the
first rungs, best at the end): the motivating case, stopped by accuracy-only ASHA, kept by MO-ASHA because
nothing cheaper beats it. The most expensive one stays poor: dominated, stopped by both.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import optuna
import pytest
from optuna.trial import TrialState

from particle_nas.evaluators import Evaluator, ReplayEvaluator, TrialStopped, load_table
from particle_nas.results import dashboard_html, open_run, trials_table
from particle_nas.results._dashboard import failed_trials
from particle_nas.search import STUDY_JOURNAL, SearchJob, SearchSettings, run
from particle_nas.search._sampler import stopped_values
from particle_nas.search._early_stopping import EarlyStopping, crowding_distance, nondominated_sort, promote, rank_order
from particle_nas.space import NetworkSpec, ParticleSpec, SearchSpace, SpecError, cost

SPACE = SearchSpace.from_dict({"factorization": ["full", "r2plus1d"], "temporal_kernel": [1, 3, 5]})
NETWORK = NetworkSpec(stem_channels=8, widths=(8, 16), depths=(1, 1), temporal_strides=(1, 1), spatial_strides=(1, 2), clip=(4, 16, 16))
EPOCHS = 4  # rungs at epochs 1 and 2 (grace 1, reduction factor 2)
BY_FLOPS = sorted(SPACE.grid(), key=lambda p: cost(NETWORK.replace(particle=p)).flops)  # cheapest first
SLOW, BAD = BY_FLOPS[0], BY_FLOPS[-1]
CURVES = {
    SLOW: (0.1, 0.2, 0.5, 0.9),  # cheapest, learns slowly, ends best
    **{p: tuple(0.4 + 0.05 * rank + 0.01 * e for e in range(EPOCHS)) for rank, p in enumerate(BY_FLOPS[1:-1], start=1)},  # more FLOPs, more accuracy
    BAD: (0.3, 0.3, 0.3, 0.3),  # most expensive and poor: dominated at every rung
}
ORDER = [BY_FLOPS[4], BY_FLOPS[3], BAD, BY_FLOPS[2], BY_FLOPS[1], SLOW]  # the scripted sampler asks them in this order


# ---------------------------------------------------------------- the ranking on hand-made points
def test_nondominated_sort_on_hand_made_points():
    points = [(1, 5), (2, 2), (5, 1), (3, 3), (4, 4), (2, 2), (6, 6)]
    assert nondominated_sort(points) == [0, 0, 0, 1, 2, 0, 3]
    assert nondominated_sort([(3,), (1,), (2,), (1,)]) == [2, 0, 1, 0]  # one objective: a sort, ties share a front
    assert nondominated_sort([]) == []


def test_crowding_distance_on_hand_made_points():
    front = [(0, 4), (1, 2), (3, 1), (4, 0)]
    d = crowding_distance(front)
    assert d[0] == d[3] == math.inf
    assert d[1] == pytest.approx((3 - 0) / 4 + (4 - 1) / 4)
    assert d[2] == pytest.approx((4 - 1) / 4 + (2 - 0) / 4)
    assert crowding_distance([(1, 1), (1, 1)]) == [0.0, 0.0]  # no spread: no distance


def test_rank_order_is_front_then_crowding_then_index():
    points = [(6, 6), (0, 4), (1, 2), (3, 1), (4, 0), (2, 1.5)]
    # front 0: 1, 2, 5, 3, 4 (ends 1 and 4 first), the inner ones by crowding; 0 is dominated
    order = rank_order(points)
    assert order[:2] == [1, 4] and order[-1] == 0
    inner = crowding_distance([points[i] for i in (1, 2, 5, 3, 4)])
    assert order[2:5] == [i for _, i in sorted(zip([-inner[1], -inner[2], -inner[3]], (2, 5, 3)))]


@pytest.mark.parametrize("eta, kept", [(2, 2), (3, 2), (4, 1), (5, 1)])
def test_promote_keeps_the_top_ceil_n_over_eta(eta, kept):
    records = {"a": {"accuracy": 0.9, "flops": 10.0}, "b": {"accuracy": 0.35, "flops": 1.0}, "c": {"accuracy": 0.4, "flops": 20.0}, "d": {"accuracy": 0.3, "flops": 30.0}}
    both = (("accuracy", "maximize"), ("flops", "minimize"))
    assert len(promote(records, both, eta)) == kept
    assert promote(records, both, 2) == {"a", "b"}  # the front: c and d are dominated by a
    assert promote(records, (("accuracy", "maximize"),), 2) == {"a", "c"}  # accuracy alone: b, cheap, goes
    assert promote({"x": {"accuracy": 0.0}}, both, 2) == {"x"}  # the first trial at a rung always goes on (ranked on what it holds)


def test_rungs_and_validation():
    assert EarlyStopping(rule="mo-asha", objectives=("accuracy", "flops"), epochs=8).rungs == (1, 2, 4)
    assert EarlyStopping(rule="asha", objectives=("accuracy", "flops"), epochs=20, grace=2, eta=3).rungs == (2, 6, 18)
    assert EarlyStopping(rule="asha", objectives=("accuracy", "flops"), epochs=1).rungs == ()
    mo = EarlyStopping(rule="mo-asha", objectives=("accuracy", "params", "latency_ms"), epochs=4)
    assert mo.ranked == (("accuracy", "maximize"), ("params", "minimize"))  # latency is not known before training
    assert EarlyStopping(rule="asha", objectives=("accuracy", "flops"), epochs=4).ranked == (("accuracy", "maximize"),)


@pytest.mark.parametrize(
    "search, message",
    [
        ({"early_stopping": "hyperband"}, "search.early_stopping must be one of ('none', 'asha', 'mo-asha'), but got 'hyperband'."),
        ({"early_stopping": "mo-asha", "grace_epochs": 0}, "search.grace_epochs must be in [1, 1000000], but got 0."),
        ({"early_stopping": "asha", "reduction_factor": 1}, "search.reduction_factor must be in [2, 1000], but got 1."),
        ({"early_stopping": "asha", "sampler": "progressive", "flops_budget": 1e6}, "search.early_stopping must be none for the progressive sampler, but got 'asha'."),
    ],
)
def test_bad_early_stopping_settings_are_one_line_errors(search, message):
    with pytest.raises(SpecError) as err:
        SearchSettings(**search)
    assert str(err.value) == message


def test_early_stopping_runs_on_both_backends():
    for backend in ("optuna", "ray"):
        for rule in ("asha", "mo-asha"):
            assert SearchSettings(backend=backend, early_stopping=rule).early_stopping == rule


# ---------------------------------------------------------------- the local engine on scripted curves
@dataclass(frozen=True)
class CurveEvaluator(Evaluator):
    """Reports each particle's scripted accuracy after every epoch; lets TrialStopped through with 10 s per epoch trained."""

    sleep_s: float = 0.0  # per epoch
    epochs: int = EPOCHS  # the budget early stopping places its rungs in

    def evaluate(self, spec, *, seed, on_epoch=None, weights_path=None):
        curve = CURVES[spec.particle]
        spent = cost(spec)
        for epoch, accuracy in enumerate(curve, start=1):
            time.sleep(self.sleep_s)
            if on_epoch is not None:
                try:
                    on_epoch(epoch, accuracy)
                except TrialStopped as stop:
                    stop.record.update(flops=spent.flops, params=spent.params, duration_s=10.0 * epoch)
                    raise
        return {"accuracy": curve[-1], "flops": spent.flops, "params": spent.params, "epoch_accuracy": list(curve), "duration_s": 10.0 * EPOCHS}


class ScriptedSampler(optuna.samplers.RandomSampler):
    """Asks the particles of ORDER, trial n gets ORDER[n]."""

    def sample_independent(self, study, trial, param_name, param_distribution):
        return getattr(ORDER[trial.number % len(ORDER)], param_name)


@pytest.fixture
def scripted(monkeypatch):
    monkeypatch.setattr("particle_nas.search._local.make_sampler", lambda settings, seed, job=None: ScriptedSampler(seed=seed))


def job(tmp_path, rule: str, *, trials: int = len(ORDER), workers: int = 1, sleep_s: float = 0.0, **search) -> SearchJob:
    settings = SearchSettings(sampler="random", trials=trials, early_stopping=rule, **{"grace_epochs": 1, **search})  # rungs 1 and 2, worked by hand
    return SearchJob(
        run_dir=tmp_path / "run", name="run", space=SPACE, network=NETWORK, evaluator=CurveEvaluator(sleep_s=sleep_s), settings=settings,
        seed=0, fingerprint={"seed": 0}, config={"seed": 0}, workers=workers, storage=str(tmp_path / "run" / STUDY_JOURNAL) if workers > 1 else None,
    )  # fmt: skip


def outcome(tmp_path) -> dict:
    """Particle -> (state, stopped_at_epoch) of every trial."""
    return {(t.user_attrs["particle"]["factorization"], t.user_attrs["particle"]["temporal_kernel"]): (t.state.name, t.user_attrs.get("stopped_at_epoch")) for t in open_run(tmp_path / "run").get_trials()}


def key(p):
    return (p.factorization, p.temporal_kernel)


def test_mo_asha_keeps_the_cheap_slow_learner_that_asha_stops(tmp_path, scripted):
    run(job(tmp_path / "asha", "asha"), progress=False)
    run(job(tmp_path / "mo", "mo-asha"), progress=False)
    asha, mo = outcome(tmp_path / "asha"), outcome(tmp_path / "mo")
    assert asha[key(SLOW)] == ("PRUNED", 1)  # worst at rung 1: accuracy alone stops it
    assert mo[key(SLOW)] == ("COMPLETE", None)  # on the rung's front: nothing cheaper is better
    assert asha[key(BAD)] == mo[key(BAD)] == ("PRUNED", 1)  # dominated: stopped by both
    # Worked by hand: ASHA keeps only the first and best; MO-ASHA keeps the ends of each rung's front.
    assert asha == {key(ORDER[0]): ("COMPLETE", None), **{key(p): ("PRUNED", 1) for p in ORDER[1:]}}
    assert mo == {key(ORDER[0]): ("COMPLETE", None), key(ORDER[1]): ("PRUNED", 1), key(BAD): ("PRUNED", 1), key(ORDER[3]): ("PRUNED", 2), key(ORDER[4]): ("COMPLETE", None), key(SLOW): ("COMPLETE", None)}


def test_a_stopped_trial_is_pruned_with_its_epochs_and_never_on_the_front(tmp_path, scripted):
    summary = run(job(tmp_path, "mo-asha"), progress=False)
    assert summary.finished == len(ORDER) and summary.failed == 0
    study = open_run(tmp_path / "run")
    for t in study.get_trials():
        assert t.user_attrs["rung_costs"]["flops"] == cost(NETWORK.replace(particle=ORDER[t.number])).flops
        if t.state == TrialState.PRUNED:
            k = t.user_attrs["stopped_at_epoch"]
            assert t.user_attrs["fail_reason"] == f"pruned: stopped by MO-ASHA after epoch {k}"
            assert t.user_attrs["epoch_accuracy"] == pytest.approx(CURVES[ORDER[t.number]][:k])
            assert t.user_attrs["duration_s"] == 10.0 * k  # only the epochs it trained
            assert set(t.user_attrs["rung_accuracy"]) == {str(r) for r in (1, 2) if r <= k}
            assert t.values is None
    pruned = {t.number for t in study.get_trials() if t.state == TrialState.PRUNED}
    assert pruned and not pruned & {t.number for t in study.best_trials}
    df = trials_table(study)
    assert not df.loc[df["state"] != "COMPLETE", "pareto"].any()
    assert key(SLOW) in {(r["factorization"], r["temporal_kernel"]) for _, r in df[df["pareto"]].iterrows()}  # the slow learner ends on the front
    assert df.set_index("number").loc[sorted(pruned), "stopped_at_epoch"].tolist() == [study.trials[n].user_attrs["stopped_at_epoch"] for n in sorted(pruned)]
    failed = {f["number"]: f for f in failed_trials(df)}  # the dashboard's "did not complete" table
    assert set(failed) == pruned
    assert all(failed[n]["epoch"] == study.trials[n].user_attrs["stopped_at_epoch"] and failed[n]["reason"].startswith("pruned: stopped by MO-ASHA") for n in pruned)
    assert ">epoch reached</th>" in dashboard_html(study, run="run")


def test_the_sampler_sees_a_stopped_trial_finished_at_the_accuracy_it_stopped_with(tmp_path, scripted):
    """NSGA-II and GP learn from COMPLETE trials only: shown PRUNED, a stopped region would be proposed again and again."""
    from particle_nas.search._sampler import _SearchedTrials

    run(job(tmp_path, "mo-asha", constraints=("flops <= 1e12",)), progress=False)
    study = open_run(tmp_path / "run")
    settings = SearchSettings(sampler="gp", constraints=("flops <= 1e12",))
    shown = {t.number: t for t in _SearchedTrials(study, settings).get_trials()}
    stopped = [t for t in study.get_trials() if t.state == TrialState.PRUNED]
    assert stopped and all(t.values is None for t in study.get_trials(states=(TrialState.PRUNED,)))  # the study keeps them PRUNED
    for t in stopped:
        seen = shown[t.number]
        assert seen.state == TrialState.COMPLETE
        assert seen.values == [t.user_attrs["epoch_accuracy"][-1], t.user_attrs["flops"]]  # the accuracy at the epoch it stopped
        assert seen.system_attrs["constraints:flops <= 1e+12"] < 0  # feasible, where Optuna's samplers read it
    assert [t.number for t in _SearchedTrials(study, settings).get_trials(states=(TrialState.COMPLETE,))] == sorted(shown)
    assert _SearchedTrials(study, None).get_trials(states=(TrialState.PRUNED,))  # without settings: shown as the study holds them
    # An objective measured only after training (latency) leaves a stopped trial PRUNED for the sampler.
    latency = SearchSettings(objectives=("accuracy", "latency_ms"))
    assert all(stopped_values(t.user_attrs, latency) is None for t in stopped)
    assert all(stopped_values(t.user_attrs, settings) is None for t in study.get_trials(states=(TrialState.COMPLETE,)))


def test_a_baseline_is_ranked_against_but_never_stopped(tmp_path, scripted, monkeypatch):
    """Baselines are the front's yardsticks: with early stopping on they still train to the end, and the others meet their rungs."""
    from particle_nas.search import BASELINE_ATTR
    from particle_nas.search._early_stopping import stored_rungs
    from particle_nas.space import BASELINES

    names = ("C3D", "X3D")
    for name in names:  # both learn poorly: accuracy-only ASHA would stop the second one at rung 1
        monkeypatch.setitem(CURVES, BASELINES[name].particle, (0.05, 0.05, 0.05, 0.05))
    summary = run(job(tmp_path, "asha", trials=len(names) + 4, baselines=names), progress=False)
    assert summary.baselines == 2 and summary.stopped >= 1
    study = open_run(tmp_path / "run")
    trials = sorted(study.get_trials(), key=lambda t: t.number)
    baselines = [t for t in trials if BASELINE_ATTR in t.user_attrs]
    assert [t.user_attrs[BASELINE_ATTR] for t in baselines] == list(names)
    assert all(t.state == TrialState.COMPLETE and "stopped_at_epoch" not in t.user_attrs for t in baselines)
    assert all(set(t.user_attrs["rung_accuracy"]) == {"1", "2"} for t in baselines)  # their rungs are on record for the others
    stopping = EarlyStopping(rule="asha", objectives=("accuracy", "flops"), epochs=EPOCHS)
    second = baselines[1]
    reached = {n: r for n, r in stored_rungs(trials, 1).items() if n <= second.number}
    assert not stopping.keeps(second.number, 1, reached)  # the rule alone would have stopped it


def test_a_resumed_run_ranks_against_the_rungs_before_it_and_never_reruns_a_stopped_trial(tmp_path, scripted):
    run(job(tmp_path / "once", "mo-asha"), progress=False)
    run(job(tmp_path / "twice", "mo-asha", trials=3), progress=False)
    first = outcome(tmp_path / "twice")
    summary = run(job(tmp_path / "twice", "mo-asha", trials=len(ORDER)), progress=False)
    assert summary.new == len(ORDER) - 3
    after = outcome(tmp_path / "twice")
    assert {k: after[k] for k in first} == first  # the stopped trial stays stopped, never rerun
    assert after == outcome(tmp_path / "once")  # the rung records survived: same decisions as one run


def test_two_workers_share_the_rungs_through_the_journal(tmp_path):
    # Spawned workers do not see a monkeypatched sampler: the random sampler draws (duplicates reuse a record).
    summary = run(job(tmp_path, "mo-asha", trials=8, workers=2, sleep_s=0.2), progress=False)  # long enough for both workers to start
    assert summary.finished == 8 and summary.failed == 0
    trials = open_run(tmp_path / "run").get_trials()
    assert len({t.user_attrs["worker"] for t in trials}) == 2
    trained = [t for t in trials if "duplicate_of" not in t.user_attrs]
    assert all("1" in t.user_attrs["rung_accuracy"] for t in trained)
    for t in trials:
        if t.state == TrialState.PRUNED:
            k = t.user_attrs["stopped_at_epoch"]
            assert k in (1, 2) and len(t.user_attrs["epoch_accuracy"]) == k
            assert t.user_attrs["fail_reason"] == f"pruned: stopped by MO-ASHA after epoch {k}"
    # Trial 2 on is asked once a worker finished a trial, so it meets a lower-numbered record at rung 1: the
    # dominated particle loses to it (or, against the slow learner alone, the tie by number).
    bad = [t for t in trained if t.number >= 2 and ParticleSpec.from_dict(t.user_attrs["particle"]) == BAD]
    assert all(t.state == TrialState.PRUNED and t.user_attrs["stopped_at_epoch"] == 1 for t in bad)


def test_an_evaluator_without_an_epoch_budget_is_refused(tmp_path):
    @dataclass(frozen=True)
    class NoEpochs(Evaluator):
        def evaluate(self, spec, *, seed, on_epoch=None, weights_path=None):
            raise AssertionError("never called")

    bad = SearchJob(run_dir=tmp_path / "run", name="run", space=SPACE, network=NETWORK, evaluator=NoEpochs(), settings=SearchSettings(early_stopping="asha"), seed=0, fingerprint={}, config={})
    with pytest.raises(ValueError, match=r"search.early_stopping must know the evaluator's epochs"):
        run(bad, progress=False)


# ---------------------------------------------------------------- the replay: simulated time of the epochs trained
def test_a_stopped_replay_counts_only_the_epochs_it_trained(tiny_bench):
    table = load_table(tiny_bench[1])
    evaluator = ReplayEvaluator(table=table)
    row = table.rows[0]
    spec = table.network.replace(particle=ParticleSpec.from_dict(row["particle"]))

    def stop_after_one(epoch, accuracy):
        raise TrialStopped(epoch=epoch, epoch_accuracy=(accuracy,), rule="MO-ASHA")

    with pytest.raises(TrialStopped) as err:
        evaluator.evaluate(spec, seed=0, on_epoch=stop_after_one)
    assert err.value.record["duration_s"] == pytest.approx(row["epoch_seconds"][0])
    assert err.value.record["flops"] == row["flops"] and err.value.record["replay"] is True


# ---------------------------------------------------------------- Ray: the same rule as a Tune scheduler
@pytest.mark.slow
def test_ray_stops_with_the_same_rule(tmp_path, local_ray, monkeypatch):
    monkeypatch.setattr("particle_nas.search._ray.make_sampler", lambda settings, seed, job=None: ScriptedSampler(seed=seed))  # the searcher samples in the driver
    settings = SearchSettings(backend="ray", sampler="random", trials=len(ORDER), early_stopping="mo-asha", grace_epochs=1)
    ray_job = SearchJob(run_dir=tmp_path / "run", name="run", space=SPACE, network=NETWORK, evaluator=CurveEvaluator(), settings=settings, seed=0, fingerprint={"seed": 0}, config={"seed": 0}, workers=2)
    summary = run(ray_job, progress=False)
    assert summary.finished == len(ORDER) and summary.failed == 0
    study = open_run(tmp_path / "run")
    trials = {t.number: t for t in study.get_trials()}
    # Trial 2 (the dominated particle) starts once a trial has finished, so it meets that trial's record at rung 1.
    assert trials[2].state == TrialState.PRUNED and trials[2].user_attrs["stopped_at_epoch"] == 1
    for t in trials.values():
        assert "1" in t.user_attrs["rung_accuracy"] and t.user_attrs["rung_costs"]["flops"] == cost(NETWORK.replace(particle=ORDER[t.number])).flops
        if t.state == TrialState.PRUNED:
            k = t.user_attrs["stopped_at_epoch"]
            assert t.user_attrs["fail_reason"] == f"pruned: stopped by MO-ASHA after epoch {k}"
            assert t.user_attrs["epoch_accuracy"] == pytest.approx(CURVES[ORDER[t.number]][:k])
            spent = cost(NETWORK.replace(particle=ORDER[t.number]))  # what it cost, as the local engine records it
            assert (t.user_attrs["flops"], t.user_attrs["params"]) == (spent.flops, spent.params) and t.user_attrs["duration_s"] > 0
            assert stopped_values(t.user_attrs, settings) == ((t.user_attrs["epoch_accuracy"][-1], float(spent.flops)), [])  # the sampler sees it finished
    assert not {t.number for t in trials.values() if t.state != TrialState.COMPLETE} & {t.number for t in study.best_trials}


@pytest.mark.slow
def test_ray_never_stops_a_baseline_either(tmp_path, local_ray, monkeypatch):
    from particle_nas.search import BASELINE_ATTR
    from particle_nas.space import BASELINES

    monkeypatch.setattr("particle_nas.search._ray.make_sampler", lambda settings, seed, job=None: ScriptedSampler(seed=seed))
    names = ("C3D", "X3D")
    for name in names:  # poor learners: accuracy-only ASHA would stop the second at rung 1
        monkeypatch.setitem(CURVES, BASELINES[name].particle, (0.05, 0.05, 0.05, 0.05))
    settings = SearchSettings(backend="ray", sampler="random", trials=len(names) + 4, early_stopping="asha", baselines=names, grace_epochs=1)
    ray_job = SearchJob(run_dir=tmp_path / "run", name="run", space=SPACE, network=NETWORK, evaluator=CurveEvaluator(), settings=settings, seed=0, fingerprint={"seed": 0}, config={"seed": 0}, workers=1)
    summary = run(ray_job, progress=False)
    assert summary.baselines == 2 and summary.stopped >= 1
    baselines = [t for t in open_run(tmp_path / "run").get_trials() if BASELINE_ATTR in t.user_attrs]
    assert sorted(t.user_attrs[BASELINE_ATTR] for t in baselines) == sorted(names)
    assert all(t.state == TrialState.COMPLETE and "stopped_at_epoch" not in t.user_attrs and "1" in t.user_attrs["rung_accuracy"] for t in baselines)
