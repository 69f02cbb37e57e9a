"""A sampler that knows every candidate's cost before training and models only its accuracy.

FLOPs and params are known exactly before a network is built (the analytic
cost model, ``space.cost``), so the only unknown of a candidate is its
accuracy. ``CostAwareSampler`` (``search.sampler: ehvi``) lists the space's
distinct networks (all of them when the space has at most 50,000 particles,
else 20,000 drawn at random; twins that build the same network, by
``space.network_fingerprint``, once, in a list of at most 5,000), fits a Gaussian process to the accuracy
of the trials so far (inputs: a one-hot / ordinal encoding of the particle and
its log costs; Matern 5/2, lengthscales and noise by marginal likelihood over a
grid; numpy only) and tries the untried network of largest **expected
hypervolume improvement**, on the log-cost yardstick (``_hypervolume``) with
each candidate's exact cost: a candidate at cost position x with accuracy
a ~ N(mu, sigma^2) adds, over each step [u0, u1) of the front to its right
with best accuracy h, (u1 - max(u0, x)) * E[max(0, a - h)], which is exact in
closed form. Its first ``n_startup_trials`` trials draw each axis uniformly, as
Optuna's random sampler does, among the untried networks; every trial of
``search.sampler: distinct`` is drawn uniformly from the untried distinct networks. It needs two objectives: accuracy and one cost (flops or params).
"""

from __future__ import annotations

import functools
import itertools
import json
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from particle_nas.space import Axis, NetworkSpec, ParticleSpec, SearchSpace, cost, network_fingerprint

from ._accuracy_model import AccuracyModel, expected_improvement_2d
from ._hypervolume import ENUMERATE_UP_TO, SAMPLED, Yardstick

CANDIDATE_SAMPLERS: tuple[str, ...] = ("ehvi", "distinct")  # the samplers that choose among the listed networks
FINGERPRINT_UP_TO = 5_000  # candidates named by their network's fingerprint (10-25 ms each); a longer list by its spec (twins then count twice)
REFIT_EVERY = 5  # trials between two searches of the model's lengthscales and noise (in between, the last ones are kept)


@dataclass(frozen=True)
class Candidate:
    """One distinct network of the space: the parameters a trial suggests for it, its particle and its costs."""

    params: tuple[tuple[str, Any], ...]  # (axis name, value) in the order the space asks them
    particle: ParticleSpec | tuple[ParticleSpec, ...]
    flops: float
    params_count: float
    fingerprint: str  # the network's fingerprint, or "spec:..." in a list too long to fingerprint (candidate_key)


def _record(space: SearchSpace, stages: int, value_of: Any) -> tuple[Any, tuple[tuple[str, Any], ...]]:
    asked: list[tuple[str, Any]] = []

    def choose(axis: Axis) -> Any:
        value = value_of(axis)
        asked.append((axis.name, value))
        return value

    return space.sample_network(choose, stages=stages), tuple(asked)


def list_candidates(space: SearchSpace, network: NetworkSpec, *, limit: int = ENUMERATE_UP_TO, sample: int = SAMPLED, seed: int = 0, fingerprint_up_to: int = FINGERPRINT_UP_TO) -> list[Candidate]:
    """The space's distinct networks (by fingerprint), each with the parameters that draw it and its analytic costs.

    A shared space of at most ``limit`` combinations is enumerated as ``SearchSpace.grid`` does; a larger or
    per-stage one gives ``sample`` draws (seeded).
    """
    stages = len(network.widths)
    drawn: list[tuple[Any, tuple[tuple[str, Any], ...]]] = []
    if not space.per_stage and math.prod(len(a.values()) for a in space.axes) <= limit:
        names = [a.name for a in space.axes]
        for combo in itertools.product(*(a.values() for a in space.axes)):
            lookup = dict(zip(names, combo))

            def value_of(axis: Axis, lookup: dict[str, Any] = lookup) -> Any:
                value = lookup[axis.name.split("@")[0]]
                return value if value in axis.values() else axis.values()[0]

            drawn.append(_record(space, stages, value_of))
    else:
        rng = np.random.default_rng(seed)
        for _ in range(sample):
            drawn.append(_record(space, stages, lambda axis: axis.values()[int(rng.integers(len(axis.values())))]))
    seen: dict[str, Candidate] = {}
    fingerprinted = len(drawn) <= fingerprint_up_to
    for particle, params in drawn:
        spec = network.replace(particle=particle)
        key = candidate_key(spec, fingerprinted=fingerprinted)
        if key not in seen:
            c = cost(spec)
            seen[key] = Candidate(params=params, particle=particle, flops=float(c.flops), params_count=float(c.params), fingerprint=key)
    return list(seen.values())


def candidate_key(spec: NetworkSpec, *, fingerprinted: bool) -> str:
    """What names a candidate: its network's fingerprint, or (a list too long to fingerprint) its spec."""
    return network_fingerprint(spec) if fingerprinted else "spec:" + json.dumps(spec.to_dict(), sort_keys=True)


@functools.lru_cache(maxsize=8)
def _listed_once(space: str, network: str) -> list[Candidate]:
    """``list_candidates`` of a space and network (as JSON), once per process: every search of one space shares the list."""
    return list_candidates(SearchSpace.from_dict(json.loads(space)), NetworkSpec.from_dict(json.loads(network)))


def encode(space: SearchSpace, particles: Sequence[Any]) -> np.ndarray:
    """Each particle (or per-stage tuple) as numbers in [0, 1]: one-hot for a choice of names, ordinal for numbers, per searched axis."""
    columns: list[np.ndarray] = []
    axes = [a for a in space.axes if not a.is_fixed]
    stages = max(len(p) if isinstance(p, tuple) else 1 for p in particles) if particles else 1
    for stage in range(stages):
        rows = [p[stage] if isinstance(p, tuple) else p for p in particles]
        for axis in axes:
            values = list(axis.values())
            got = [getattr(r, axis.name, None) for r in rows]
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                low, high = float(min(values)), float(max(values))
                columns.append(np.array([(float(v) - low) / (high - low) if isinstance(v, (int, float)) and high > low else 0.0 for v in got]))
            else:
                for value in values:
                    columns.append(np.array([1.0 if v == value else 0.0 for v in got]))
    return np.column_stack(columns) if columns else np.zeros((len(particles), 0))


class CostAwareSampler(optuna.samplers.BaseSampler):
    """Chooses a whole network per trial among the space's distinct networks (see the module docstring).

    ``model``: True (``ehvi``) picks by expected hypervolume improvement after
    ``n_startup_trials``; False (``distinct``) always uniformly among the untried.
    Parameters a trial asks that the chosen candidate does not hold are drawn at
    random.
    """

    def __init__(self, *, space: SearchSpace, network: NetworkSpec, objectives: Sequence[str], seed: int | None = None, n_startup_trials: int = 8, model: bool = True) -> None:
        if len(objectives) != 2 or objectives[0] != "accuracy" or objectives[1] not in ("flops", "params"):
            raise ValueError(f"search.objectives must be accuracy and one analytic cost (flops or params) for the ehvi and distinct samplers, but got {list(objectives)}.")
        self.space, self.network, self.cost_name = space, network, objectives[1]
        self.n_startup_trials, self.model = n_startup_trials, model
        self._rng = np.random.default_rng(seed)
        self._random = optuna.samplers.RandomSampler(seed=seed)
        self._plans: dict[int, dict[str, Any]] = {}  # trial number -> the chosen candidate's parameters
        self._trial_fingerprints: dict[int, str] = {}  # trial number -> the fingerprint of its network
        self._candidates: list[Candidate] | None = None
        self._hyper: tuple[float, float, float] | None = None  # the model's lengthscales and noise, searched again every REFIT_EVERY trials
        self._fitted_at = 0

    # ---------------------------------------------------------------- the candidates, listed once
    def _listed(self) -> tuple[list[Candidate], dict[str, int], np.ndarray, np.ndarray, Yardstick]:
        if self._candidates is None:
            self._candidates = _listed_once(json.dumps(self.space.to_dict(), sort_keys=True), json.dumps(self.network.to_dict(), sort_keys=True))
            self._fingerprinted = not self._candidates or not self._candidates[0].fingerprint.startswith("spec:")
            self._index = {c.fingerprint: i for i, c in enumerate(self._candidates)}
            self._by_params = {tuple(sorted(c.params)): c.fingerprint for c in self._candidates}
            costs = np.array([c.flops if self.cost_name == "flops" else c.params_count for c in self._candidates])
            self._yardstick = Yardstick(cost=self.cost_name, scale="log", low=float(costs.min()), high=1.1 * float(costs.max()), bounds="the listed networks")
            log_params = np.log10(np.maximum([c.params_count for c in self._candidates], 1.0))
            log_flops = np.log10(np.maximum([c.flops for c in self._candidates], 1.0))
            self._x_cost = np.column_stack([_unit(log_flops), _unit(log_params)])
            self._x_particle = encode(self.space, [c.particle for c in self._candidates])
            self._positions = self._yardstick.position(costs)
        return self._candidates, self._index, self._x_particle, self._x_cost, self._yardstick

    def _fingerprint_of(self, trial: FrozenTrial) -> str | None:
        """The fingerprint of the network a trial recorded (kept by trial number: a trial's network never changes), or None."""
        known = self._trial_fingerprints.get(trial.number)
        if known is not None:
            return known
        network = trial.user_attrs.get("network")
        if not isinstance(network, dict):
            return None
        try:
            key = candidate_key(NetworkSpec.from_dict(network), fingerprinted=self._fingerprinted)
        except (ValueError, TypeError):
            return None
        self._trial_fingerprints[trial.number] = key
        return key

    def _choose(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
        candidates, index, xp, xc, _ = self._listed()  # first: it decides how trials are named (_fingerprinted)
        trials = study.get_trials(deepcopy=False)
        done = [(t, self._fingerprint_of(t)) for t in trials if t.state == TrialState.COMPLETE and t.values is not None]
        taken = {fp for t in trials if (fp := self._fingerprint_of(t)) is not None}
        taken |= {self._plan_key(p) for n, p in self._plans.items() if n != trial.number}
        free = np.array([i for i, c in enumerate(candidates) if c.fingerprint not in taken], dtype=int)
        if len(free) == 0:
            free = np.arange(len(candidates))  # every network tried: a repeat (the engine reuses its record)
        seen = [(index[fp], float(t.values[0])) for t, fp in done if fp in index]
        if not self.model:
            pick = int(self._rng.choice(free))
        elif len(seen) < self.n_startup_trials:
            pick = self._startup_pick(index, free)
        else:
            rows = np.array([i for i, _ in seen])
            y = np.array([a for _, a in seen])
            refit = self._hyper is None or len(seen) >= self._fitted_at + REFIT_EVERY
            model = AccuracyModel(xp[rows], xc[rows], y, hyper=None if refit else self._hyper)
            if refit:
                self._hyper, self._fitted_at = model.hyper, len(seen)
            mean, std = model.predict(xp[free], xc[free])
            gain = expected_improvement_2d(mean, std, self._positions[free], y.tolist(), self._positions[rows].tolist())
            best = np.flatnonzero(gain >= gain.max() - 1e-15)
            pick = int(free[self._rng.choice(best)])
        return dict(candidates[pick].params)

    def _startup_pick(self, index: dict[str, int], free: np.ndarray) -> int:
        """A startup trial: each axis the space asks drawn uniformly, as Optuna's random sampler draws (its conditional
        axes make plain and residual wirings and spatial_only as likely as the others, though they hold fewer
        networks), among the untried networks; uniformly over those after 100 draws that were all tried."""
        allowed = set(free.tolist())
        stages = len(self.network.widths)
        for _ in range(100):
            particle = self.space.sample_network(lambda axis: axis.values()[int(self._rng.integers(len(axis.values())))], stages=stages)
            at = index.get(candidate_key(self.network.replace(particle=particle), fingerprinted=self._fingerprinted))
            if at is not None and at in allowed:
                return at
        return int(self._rng.choice(free))

    def _plan_key(self, plan: dict[str, Any]) -> str:
        self._listed()
        return self._by_params.get(tuple(sorted(plan.items())), "")

    # ---------------------------------------------------------------- Optuna's sampler interface
    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
        return {}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, Any]) -> dict[str, Any]:
        return {}

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: Any) -> Any:
        if trial.number not in self._plans:
            self._plans[trial.number] = self._choose(study, trial)
        plan = self._plans[trial.number]
        if param_name in plan and param_distribution._contains(param_distribution.to_internal_repr(plan[param_name])):
            return plan[param_name]
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        self._plans.pop(trial.number, None)

    def reseed_rng(self) -> None:
        self._rng = np.random.default_rng()
        self._random.reseed_rng()


def _unit(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    return (values - low) / (high - low) if high > low else np.zeros_like(values)
