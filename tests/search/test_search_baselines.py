"""search.baselines: the classic particles are a new study's first trials, queued once, on every engine.

The evaluator is test_contract's fake (accuracy from the spec and its analytic cost), so every trial takes
milliseconds; the space (full, r2plus1d, csn_ir x plain, residual) leaves most baselines partly outside it.
"""

from __future__ import annotations

import dataclasses
import json

import optuna
import pytest
from optuna.trial import TrialState

from particle_nas.search import BASELINE_ATTR, run
from particle_nas.space import BASELINES, NetworkSpec, SearchSpace, cost
import test_contract
from test_contract import NETWORK, SPACE, job, make_evaluator, trials

NAMES = tuple(BASELINES)


def baseline_trials(tmp_path):
    return [t for t in trials(tmp_path) if BASELINE_ATTR in t.user_attrs]


def check_baselines_first(tmp_path, names=NAMES) -> None:
    """The first trials are the baselines, in order, each in the job's network with its own particle."""
    study = sorted(trials(tmp_path), key=lambda t: t.number)
    first = study[: len(names)]
    assert [t.user_attrs.get(BASELINE_ATTR) for t in first] == list(names)
    assert not [t for t in study[len(names) :] if BASELINE_ATTR in t.user_attrs]
    for t in first:
        assert t.state == TrialState.COMPLETE
        assert NetworkSpec.from_dict(t.user_attrs["network"]) == NETWORK.replace(particle=BASELINES[t.user_attrs[BASELINE_ATTR]].particle)


@pytest.mark.parametrize("sampler", ["nsga2", "tpe", "gp"])
def test_baselines_never_change_what_the_sampler_draws(tmp_path, sampler):
    """Most baselines lie outside SPACE; the sampler is blind to them, so it draws what it draws without them."""
    searched = 8
    settings = dict(sampler=sampler, population=4)
    summary = run(job(tmp_path / "with", "optuna", make_evaluator(tmp_path), trials=len(NAMES) + searched, baselines=True, **settings), progress=False)
    assert summary.finished == len(NAMES) + searched and summary.baselines == len(NAMES) and summary.failed == 0
    check_baselines_first(tmp_path / "with")
    run(job(tmp_path / "without", "optuna", make_evaluator(tmp_path), trials=searched, **settings), progress=False)
    with_baselines = sorted(trials(tmp_path / "with"), key=lambda t: t.number)
    without = sorted(trials(tmp_path / "without"), key=lambda t: t.number)
    assert all(t.params == {} for t in with_baselines[: len(NAMES)])  # a baseline records no params
    assert [t.params for t in with_baselines[len(NAMES) :]] == [t.params for t in without]
    assert len({json.dumps(t.params, sort_keys=True) for t in without}) >= 3  # the sampler did search
    if sampler == "nsga2":  # later generations were bred from the searched trials alone
        key = optuna.samplers.NSGAIISampler._get_generation_key()
        assert max(t.system_attrs[key] for t in with_baselines[len(NAMES) :]) >= 1
        assert not [t for t in with_baselines[: len(NAMES)] if key in t.system_attrs]


def test_resume_never_queues_the_baselines_again(tmp_path):
    names = ("C3D", "X3D", "TSM")
    first = run(job(tmp_path, "optuna", make_evaluator(tmp_path), trials=2, baselines=names), progress=False)
    assert first.finished == 2 and first.baselines == 2
    waiting = [t for t in trials(tmp_path) if t.state == TrialState.WAITING]
    assert [t.user_attrs[BASELINE_ATTR] for t in waiting] == ["TSM"]  # still queued: not failed as stale
    summary = run(job(tmp_path, "optuna", make_evaluator(tmp_path), trials=6, baselines=names), progress=False)
    assert summary.finished == 6 and summary.new == 4 and summary.baselines == 3
    check_baselines_first(tmp_path, names)
    summary = run(job(tmp_path, "optuna", make_evaluator(tmp_path), trials=8, baselines=names), progress=False)
    assert summary.finished == 8 and [t.user_attrs[BASELINE_ATTR] for t in baseline_trials(tmp_path)] == list(names)


def test_baselines_are_evaluated_like_any_trial(tmp_path):
    """The budget refuses a baseline over it; a searched particle identical to a baseline reuses its result."""
    space = SearchSpace.from_dict({"factorization": ["r2plus1d"], "wiring": ["residual"], "r2plus1d_mid": ["block", "conv"]})
    limit = cost(NETWORK.replace(particle=BASELINES["R(2+1)D"].particle)).flops  # R(2+1)D fits; C3D's 3x3x3 costs more
    base = job(tmp_path, "optuna", make_evaluator(tmp_path), trials=6, baselines=("X3D", "R(2+1)D"), max_flops=limit)
    run(dataclasses.replace(base, space=space), progress=False)
    by_name = {t.user_attrs[BASELINE_ATTR]: t for t in baseline_trials(tmp_path)}
    assert by_name["R(2+1)D"].state == TrialState.COMPLETE and by_name["X3D"].state == TrialState.COMPLETE
    copies = [t for t in trials(tmp_path) if t.user_attrs.get("duplicate_of") == by_name["R(2+1)D"].number]
    assert copies and all(t.user_attrs["accuracy"] == by_name["R(2+1)D"].user_attrs["accuracy"] for t in copies)
    refused = run(job(tmp_path / "budget", "optuna", make_evaluator(tmp_path), trials=2, baselines=("C3D", "ir-CSN"), max_flops=6e5), progress=False)
    by_name = {t.user_attrs[BASELINE_ATTR]: t for t in baseline_trials(tmp_path / "budget")}
    assert refused.baselines == 2 and by_name["ir-CSN"].state == TrialState.COMPLETE
    assert by_name["C3D"].state == TrialState.PRUNED and by_name["C3D"].user_attrs["fail_reason"].startswith("over budget: flops ")


def test_with_workers_the_baselines_run_once_each(tmp_path):
    summary = run(dataclasses.replace(job(tmp_path, "optuna", make_evaluator(tmp_path), trials=len(NAMES) + 2, baselines=True), workers=2), progress=False)
    assert summary.finished == len(NAMES) + 2 and summary.baselines == len(NAMES)
    assert sorted(t.user_attrs[BASELINE_ATTR] for t in baseline_trials(tmp_path)) == sorted(NAMES)
    assert sorted(t.number for t in baseline_trials(tmp_path)) == list(range(len(NAMES)))


@pytest.fixture(scope="module")
def contract_ray(local_ray):
    """The Ray of tests/search/conftest.py, with test_contract's evaluators sent to the workers by value too."""
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(test_contract)


@pytest.mark.slow
def test_ray_runs_the_baselines_first(tmp_path, contract_ray):
    names = ("R(2+1)D", "ir-CSN")
    summary = run(job(tmp_path, "ray", make_evaluator(tmp_path), trials=4, baselines=names), progress=False)
    assert summary.finished == 4 and summary.baselines == 2
    check_baselines_first(tmp_path, names)


def test_progressive_skips_the_baselines_with_a_note(tmp_path, capsys):
    summary = run(job(tmp_path, "progressive", make_evaluator(tmp_path), trials=3, baselines=True), progress=False)
    assert summary.finished == 3 and summary.baselines == 0 and not baseline_trials(tmp_path)
    assert "search.baselines is skipped by the progressive sampler" in capsys.readouterr().err


@pytest.mark.parametrize("sampler", ["random", "nsga2", "tpe", "gp"])
def test_the_sampler_pickles_for_ray(sampler):
    """Ray Tune pickles the searcher: Optuna 5.1's NSGA-II holds a threading lock, left out and made anew."""
    import pickle

    from particle_nas.search import make_sampler
    from particle_nas.search._settings import SearchSettings

    original = make_sampler(SearchSettings(sampler=sampler), seed=0)
    again = pickle.loads(pickle.dumps(original))
    assert type(again.sampler) is type(original.sampler)
    assert set(vars(again.sampler)) == set(vars(original.sampler))  # every attribute back, a lock included
