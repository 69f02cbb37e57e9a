"""Soak: hundreds of trials with random injected failures; table, storage and Pareto front agree exactly."""

from __future__ import annotations

import random

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from particle_nas.evaluators import Evaluator
from particle_nas.results import pareto_mask, trials_table, write_run_outputs
from particle_nas.search import SearchSettings, run_search
from particle_nas.space import FACTORIZATIONS, WIRINGS, NetworkSpec, SearchSpace

SPACE = SearchSpace.from_dict(
    {
        "factorization": list(FACTORIZATIONS),
        "wiring": list(WIRINGS),
        "temporal_kernel": [3, 5, 7],
        "spatial_kernel": [1, 3, 5],
        "expansion": [0.25, 0.5, 1.0, 2.0, 4.0],
        "squeeze_excite": [0.0, 0.25],
        "prune_ratio": {"low": 0.0, "high": 0.75, "step": 0.05},
    }
)


class FlakyEvaluator(Evaluator):
    """A deterministic score per spec, with failures injected at random: exceptions, NaN, out of memory."""

    def __init__(self, seed: int, rate: float):
        self.rng = random.Random(seed)
        self.rate = rate
        self.injected = 0

    def evaluate(self, spec, *, seed, on_epoch=None, weights_path=None):
        roll = self.rng.random()
        if roll < self.rate:
            self.injected += 1
            kind = self.rng.choice(["raise", "nan", "oom"])
            if kind == "raise":
                raise RuntimeError("injected failure")
            if kind == "oom":
                raise MemoryError("injected out of memory")
            return {"accuracy": float("nan"), "flops": 1, "params": 1}
        p = spec.particle
        h = hash((p.factorization, p.wiring, p.temporal_kernel, p.spatial_kernel, p.expansion, p.squeeze_excite, p.prune_ratio)) % 10_000
        flops = int(1e5 * (1 + h % 97) * (1 - p.prune_ratio))
        return {"accuracy": (h % 1000) / 1000, "flops": flops, "params": flops // 7, "epoch_accuracy": [(h % 1000) / 1000], "duration_s": 0.0}


@pytest.mark.slow
def test_soak_200_trials_with_injected_failures(tmp_path):
    evaluator = FlakyEvaluator(seed=0, rate=0.15)
    run_dir = tmp_path / "soak"
    settings = SearchSettings(trials=200, sampler="nsga2", population=20)
    kwargs = dict(run_dir=run_dir, name="soak", space=SPACE, network=NetworkSpec(), evaluator=evaluator, seed=0, fingerprint={"v": 1}, config={}, progress=False)
    first = run_search(settings=SearchSettings(trials=120, sampler="nsga2", population=20), **kwargs)
    summary = run_search(settings=settings, **kwargs)  # resumed in a second invocation
    assert first.finished == 120 and summary.finished == 200
    assert evaluator.injected > 10 and summary.failed == evaluator.injected

    study = optuna.load_study(study_name="soak", storage=f"sqlite:///{run_dir / 'study.db'}")
    outputs = write_run_outputs(study, run_dir)
    table = pd.read_csv(outputs.trials_csv)
    trials = study.get_trials()
    # table == storage, trial by trial
    assert list(table["number"]) == [t.number for t in trials]
    assert list(table["state"]) == [t.state.name for t in trials]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    by_number = table.set_index("number")
    for t in complete:
        assert by_number.loc[t.number, "accuracy"] == t.values[0]
        assert by_number.loc[t.number, "flops"] == t.values[1]
    failed = table[table["state"] == "FAIL"]
    assert len(failed) == evaluator.injected and failed["fail_reason"].notna().all()
    assert set(failed["fail_reason"].str.split(":").str[0]) <= {"RuntimeError", "MemoryError", "ValueError"}
    # Pareto column == Optuna's front == an independent dominance check
    front = set(table.loc[table["pareto"], "number"])
    assert front == {t.number for t in study.best_trials}
    values = np.array([t.values for t in complete])
    mask = pareto_mask(values, ["maximize", "minimize"])
    assert front == {t.number for t, m in zip(complete, mask) if m}
    assert outputs.n_complete == len(complete) and outputs.n_failed == evaluator.injected
    assert len(trials_table(study)) == 200
