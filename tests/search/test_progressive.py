"""Progressive expansion: one axis per step, best accuracy gain per added FLOP, within the FLOPs budget."""

from __future__ import annotations

import math
import dataclasses
from dataclasses import dataclass, field

import optuna
import pytest
from optuna.trial import TrialState

from particle_nas.evaluators import Evaluator, count_cost
from particle_nas.search import SearchSettings, run_search
from particle_nas.search._progressive import AXES, expand, smallest_particle
from particle_nas.space import NetworkSpec, SearchSpace, build_network

SPACE = SearchSpace.from_dict({"factorization": ["r2plus1d", "full"], "wiring": ["residual"], "temporal_kernel": [1, 3]})
NETWORK = NetworkSpec(stem_channels=8, widths=(8, 16), depths=(1, 1), temporal_strides=(1, 1), spatial_strides=(1, 2), clip=(4, 16, 16))


@dataclass(frozen=True)
class Data:
    clip: tuple = (4, 16, 16)


@dataclass(frozen=True)
class CostEvaluator(Evaluator):
    """Real FLOPs; an accuracy that rewards time (kernel, frames) much more than width, depth or pixels."""

    data: Data = field(default_factory=Data)
    calls: list = field(default_factory=list)

    def for_clip(self, clip):
        return self if tuple(clip) == tuple(self.data.clip) else dataclasses.replace(self, data=Data(clip=tuple(clip)))

    def evaluate(self, spec, *, seed, on_epoch=None, weights_path=None):
        assert tuple(spec.clip) == tuple(self.data.clip)  # the evaluator follows the candidate's clip
        self.calls.append(spec)
        flops = count_cost(build_network(spec), input_shape=spec.input_shape).flops
        t, h, _ = spec.clip
        acc = 0.2 + 0.2 * math.log(spec.particle.temporal_kernel) + 0.1 * math.log(t) + 0.01 * math.log(sum(spec.widths) * sum(spec.depths) * h)
        return {"accuracy": acc, "flops": flops, "params": 1}


def _run(tmp_path, evaluator, budget, trials=40):
    settings = SearchSettings(sampler="progressive", trials=trials, flops_budget=budget)
    return run_search(
        run_dir=tmp_path / "run", name="run", space=SPACE, network=NETWORK, evaluator=evaluator, settings=settings,
        seed=0, fingerprint={"budget": budget}, config={}, progress=False,
    )


@pytest.mark.slow
def test_each_step_keeps_the_best_gain_per_flop_until_the_budget(tmp_path):
    budget = 3e6
    evaluator = CostEvaluator()
    summary = _run(tmp_path, evaluator, budget)
    study = optuna.load_study(study_name="run", storage=f"sqlite:///{tmp_path / 'run' / 'study.db'}")
    trials = study.get_trials()
    assert all(t.state == TrialState.COMPLETE for t in trials) and summary.new == len(trials) == len(evaluator.calls)
    start = trials[0]
    assert start.user_attrs["expansion"] == {"step": 0, "axis": "start"}
    assert start.user_attrs["particle"] == smallest_particle(SPACE).to_dict()  # first choice of every axis
    path = study.user_attrs["expansion_path"]
    assert [p["step"] for p in path] == list(range(1, len(path) + 1)) and len(path) >= 2
    current = start
    for step in path:
        tried = [t for t in trials if t.user_attrs["expansion"]["step"] == step["step"]]
        assert {t.user_attrs["expansion"]["axis"] for t in tried} <= set(AXES)
        gains = {t.user_attrs["expansion"]["axis"]: (t.values[0] - current.values[0]) / max(1.0, t.values[1] - current.values[1]) for t in tried}
        assert step["axis"] == max(gains, key=gains.get)
        current = next(t for t in tried if t.user_attrs["expansion"]["axis"] == step["axis"])
        assert all(t.values[1] <= budget for t in tried)
    assert path[0]["axis"] == "temporal_kernel"  # the cheapest big gain of this evaluator
    # no further step fits: every expansion of the final network is over the budget
    final = NetworkSpec.from_dict(current.user_attrs["network"])
    for axis in AXES:
        bigger = expand(final, axis)
        assert bigger is None or count_cost(build_network(bigger), input_shape=bigger.input_shape).flops > budget
    # a rerun replays the walk from the study: nothing trained again
    again = CostEvaluator()
    assert _run(tmp_path, again, budget).new == 0 and again.calls == []


def test_progressive_needs_a_budget():
    with pytest.raises(ValueError, match="search.flops_budget must be set for the progressive sampler"):
        SearchSettings(sampler="progressive")
