"""The cost-aware sampler (ehvi) and uniform sampling over distinct networks (distinct): real searches on the local engine.

The evaluator is test_contract's fake (accuracy from the spec and its analytic cost, milliseconds a trial).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from particle_nas.search import SearchJob, SearchSettings, Yardstick, hypervolume_2d, make_sampler, run
from particle_nas.search._accuracy_model import AccuracyModel, expected_improvement_2d
from particle_nas.search._cost_aware import encode, list_candidates
from particle_nas.search._sampler import _masked
from particle_nas.space import NetworkSpec, SearchSpace, SpecError, network_fingerprint
from test_contract import NETWORK, make_evaluator, trials

# 3 factorizations x (residual, inverted x 2 expansions) x 2 activations = 18 specs; csn_ir/inverted builds full/inverted: 14 networks
SPACE = SearchSpace.from_dict({"factorization": ["full", "csn_ir", "r2plus1d"], "wiring": ["residual", "inverted"], "expansion": [1.0, 2.0], "activation": ["relu", "silu"]})


def _job(tmp_path, sampler: str, trials_: int, seed: int = 0) -> SearchJob:
    settings = SearchSettings(sampler=sampler, trials=trials_, population=4)
    return SearchJob(run_dir=tmp_path / "run", name="run", space=SPACE, network=NETWORK, evaluator=make_evaluator(tmp_path), settings=settings, seed=seed, fingerprint={"seed": seed}, config={})


def test_candidates_are_the_distinct_networks_with_the_params_that_draw_them():
    candidates = list_candidates(SPACE, NETWORK)
    assert len(list(SPACE.grid())) == 18 and len(candidates) == 14
    for c in candidates:
        drawn = SPACE.sample_network(lambda axis, c=c: dict(c.params)[axis.name], stages=2)
        assert drawn == c.particle and network_fingerprint(NETWORK.replace(particle=drawn)) == c.fingerprint
    assert not [c for c in candidates if c.particle.factorization == "csn_ir" and c.particle.wiring == "inverted"]  # full/inverted stands for them
    assert encode(SPACE, [c.particle for c in candidates]).shape == (14, 3 + 2 + 1 + 2)  # one-hot, one-hot, ordinal, one-hot
    by_spec = list_candidates(SPACE, NETWORK, fingerprint_up_to=10)  # a list too long to fingerprint: named by spec, twins apart
    assert len(by_spec) == 18 and all(c.fingerprint.startswith("spec:") for c in by_spec)


def test_distinct_tries_every_network_once_before_any_twice(tmp_path):
    summary = run(_job(tmp_path, "distinct", 16), progress=False)
    done = sorted(trials(tmp_path), key=lambda t: t.number)
    keys = [network_fingerprint(NetworkSpec.from_dict(t.user_attrs["network"])) for t in done]
    assert summary.complete == 16 and len(set(keys[:14])) == 14  # the 14 networks, none twice
    assert summary.reused == 2 and all("duplicate_of" in t.user_attrs for t in done[14:])  # then repeats, which the engine reuses


def test_ehvi_finds_the_front_sooner_than_uniform_sampling(tmp_path):
    """The fake's accuracy rises with log FLOPs and the temporal kernel: after the 4 random trials, ehvi fills the front."""
    fronts = {}
    for sampler in ("ehvi", "distinct"):
        values = []
        for seed in range(3):
            (tmp_path / f"{sampler}-{seed}").mkdir()
            run(_job(tmp_path / f"{sampler}-{seed}", sampler, 8, seed=seed), progress=False)
            done = [t for t in trials(tmp_path / f"{sampler}-{seed}") if t.state == TrialState.COMPLETE]
            flops = [c.flops for c in list_candidates(SPACE, NETWORK)]
            yardstick = Yardstick(low=min(flops), high=1.1 * max(flops))
            values.append(yardstick.hypervolume([t.user_attrs["accuracy"] for t in done], [t.user_attrs["flops"] for t in done]))
        fronts[sampler] = float(np.mean(values))
    assert fronts["ehvi"] > fronts["distinct"]


def test_expected_improvement_is_the_mean_of_the_hypervolume_gained():
    """The closed form against Monte Carlo draws of the candidate's accuracy, on a front of three points."""
    front_acc, front_x = [0.5, 0.7, 0.8], [0.1, 0.4, 0.7]
    base = hypervolume_2d(np.column_stack([-np.array(front_acc), front_x]), (0.0, 1.0))
    rng = np.random.default_rng(0)
    mean, std, x = np.array([0.6, 0.75, 0.3, 0.9]), np.array([0.1, 0.05, 0.2, 0.01]), np.array([0.2, 0.05, 0.9, 1.2])
    exact = expected_improvement_2d(mean, std, x, front_acc, front_x)
    for k in range(4):
        draws = rng.normal(mean[k], std[k], 20_000)
        gained = [hypervolume_2d(np.column_stack([-np.array([*front_acc, a]), [*front_x, x[k]]]), (0.0, 1.0)) - base for a in np.clip(draws, -1, 2)]
        assert exact[k] == pytest.approx(np.mean(gained), abs=2e-3)
    assert exact[3] == 0.0  # beyond the costly edge: nothing to gain


def test_the_accuracy_model_fits_what_it_saw_and_is_unsure_far_from_it():
    rng = np.random.default_rng(0)
    x = rng.random((30, 3))
    y = 0.5 + 0.3 * x[:, 0] - 0.2 * x[:, 1]
    model = AccuracyModel(x[:, :2], x[:, 2:], y)
    mean, std = model.predict(x[:, :2], x[:, 2:])
    assert np.abs(mean - y).max() < 0.02
    _, far = model.predict(np.full((1, 2), 5.0), np.full((1, 1), 5.0))
    assert far[0] > 5 * std.max()
    again = AccuracyModel(x[:, :2], x[:, 2:], y, hyper=model.hyper)  # the kept lengthscales and noise give the same model
    assert np.allclose(again.predict(x[:, :2], x[:, 2:])[0], mean)


def test_ehvi_and_distinct_need_the_job_and_two_objectives():
    with pytest.raises(SpecError, match=r"search.objectives must be accuracy and one analytic cost \(flops or params\) for the ehvi sampler"):
        SearchSettings(sampler="ehvi", objectives=("accuracy", "flops", "params"))
    with pytest.raises(SpecError, match=r"for the distinct sampler, but got \['accuracy', 'latency_ms'\]"):
        SearchSettings(sampler="distinct", objectives=("accuracy", "latency_ms"))
    with pytest.raises(ValueError, match=r"search.sampler distinct must be given the job"):
        make_sampler(SearchSettings(sampler="distinct"), seed=0)


@pytest.mark.parametrize(("sampler", "logged"), [("nsga2", True), ("tpe", True), ("gp", False)])
def test_samplers_see_the_costs_on_the_log_scale_except_optunas_gp(sampler, logged):
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.add_trial(optuna.trial.create_trial(values=[0.5, 1e6], params={}, distributions={}))
    shown = _masked(study.get_trials(), None, SearchSettings(sampler=sampler))
    assert shown[0].values == ([0.5, 6.0] if logged else [0.5, 1e6]) and study.get_trials()[0].values == [0.5, 1e6]
