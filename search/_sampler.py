"""What a sampler draws and sees: the seeded sampler, a trial's network, and the study as the sampler is shown it.

Baselines are hidden from the sampler (``SearchedOnlySampler``), a trial
stopped early is shown finished at the accuracy it stopped with, and every
cost objective (FLOPs, params) is shown as its log10, the scale the
hypervolume measures it on (``_masked``).
"""

from __future__ import annotations

import copy
import math
import threading
from typing import Any, Mapping

import optuna
from optuna.trial import TrialState

from particle_nas.space import BASELINES, Axis, NetworkSpec

from ._cost_aware import CANDIDATE_SAMPLERS, CostAwareSampler
from ._job import SearchJob
from ._settings import SearchSettings
from ._trial import BASELINE_ATTR, objective_values

LOG_COSTS = frozenset({"flops", "params"})  # objectives a sampler sees as their log10
# Samplers shown the costs as measured: Optuna's GP puts its reference point at 1.1 x the worst value seen, which on
# log10 FLOPs lies most of a decade beyond the costliest network; on ParticleBench its 100-trial hypervolume fell
# from 0.810 to 0.72-0.78 (seeds 0-2) when shown log costs (docs/particlebench.md).
LINEAR_VIEW = frozenset({"gp"})


def make_sampler(settings: SearchSettings, *, seed: int, job: SearchJob | None = None) -> optuna.samplers.BaseSampler:
    """The settings' sampler, seeded, and blind to baseline trials (see SearchedOnlySampler).

    ``ehvi`` and ``distinct`` choose among the job's networks (its space in its network), so they need ``job``.
    """
    if settings.sampler in CANDIDATE_SAMPLERS:
        if job is None:
            raise ValueError(f"search.sampler {settings.sampler} must be given the job (its space and network) to choose among, but got job=None.")
        sampler: optuna.samplers.BaseSampler = CostAwareSampler(space=job.space, network=job.network, objectives=settings.objectives, seed=seed, n_startup_trials=max(4, settings.population), model=settings.sampler == "ehvi")
    elif settings.sampler == "nsga2":
        sampler = optuna.samplers.NSGAIISampler(population_size=settings.population, seed=seed)
    elif settings.sampler == "tpe":
        sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=max(4, settings.population))
    elif settings.sampler == "gp":  # Gaussian process, log expected hypervolume improvement with several objectives; the axes a trial may lack (conditional ones) are drawn at random
        sampler = optuna.samplers.GPSampler(seed=seed, n_startup_trials=max(4, settings.population), warn_independent_sampling=False)
    else:
        sampler = optuna.samplers.RandomSampler(seed=seed)  # random, and progressive (which samples nothing)
    return SearchedOnlySampler(sampler, settings=settings)


def suggest(trial: optuna.Trial, axis: Axis) -> Any:
    """Ask an Optuna trial for one axis value."""
    if axis.choices is not None:
        return trial.suggest_categorical(axis.name, list(axis.choices))
    if axis.is_int:
        return trial.suggest_int(axis.name, int(axis.low), int(axis.high), step=int(axis.step or 1), log=axis.log)
    return trial.suggest_float(axis.name, float(axis.low), float(axis.high), step=axis.step, log=axis.log)


def sample_network(job: SearchJob, trial: optuna.Trial) -> NetworkSpec:
    """The job's network with a particle (or one per stage) sampled on ``trial``; a queued baseline's particle on a baseline trial."""
    name = trial.user_attrs.get(BASELINE_ATTR)
    if name is not None:
        return baseline_network(job, trial, str(name))
    particle = job.space.sample_network(lambda axis: suggest(trial, axis), stages=len(job.network.widths))
    return job.network.replace(particle=particle)


def baseline_network(job: SearchJob, trial: optuna.Trial, name: str) -> NetworkSpec:
    """The job's network with baseline ``name``'s particle. Nothing is suggested: a baseline records no params."""
    if name not in BASELINES:
        raise ValueError(f"a baseline trial must name one of {list(BASELINES)}, but got {name!r}.")
    return job.network.replace(particle=BASELINES[name].particle)


def stopped_values(attrs: Mapping[str, Any], settings: SearchSettings) -> tuple[tuple[float, ...], list[float]] | None:
    """A trial stopped early as its sampler sees it: the objectives at the epoch it stopped, and its constraint violations.

    ``attrs`` are the trial's user attributes (``epoch_accuracy``, the costs
    known before training). None when the trial was not stopped early, or
    lacks an objective or a constrained number (one measured only after
    training, such as ``latency_ms``).
    """
    epochs = attrs.get("epoch_accuracy")
    if "stopped_at_epoch" not in attrs or not epochs:
        return None
    record = {**attrs, "accuracy": float(epochs[-1])}
    try:
        return objective_values(record, settings.objectives), settings.constraint_values(record)
    except ValueError:
        return None


def _masked(trials: list[optuna.trial.FrozenTrial], states: Any, settings: SearchSettings | None) -> list[optuna.trial.FrozenTrial]:
    """``trials`` as a sampler sees them, then those in ``states`` (all when None).

    Every baseline is shown as FAIL: the samplers learn from COMPLETE (and TPE
    from PRUNED) trials only, so a FAIL baseline is one they skip; unlike
    dropping it, this keeps a full list indexed by trial number, as Optuna
    5.1's GA generation cache reads it (``trials[number]``).

    Every trial stopped early is shown as COMPLETE with the accuracy it had
    when it stopped (``stopped_values``): a pessimistic score, so that the
    sampler learns where the stopped particles lie. Shown PRUNED, NSGA-II and
    GP would never learn from them, and GP, whose model then holds only the
    few trials that finished, proposes the same region again and again (on
    ParticleBench, gp with MO-ASHA finished 8 of 200 trials). The study keeps
    them PRUNED: they never reach the Pareto front.

    Every cost objective in ``LOG_COSTS`` is shown as its log10: the scale the
    hypervolume measures it on (``_hypervolume``), so that TPE's hypervolume-based
    choices and NSGA-II's crowding distance value a step from 2 to 4 MFLOPs as
    much as one from 200 to 400 (the Pareto ranks are unchanged); the samplers in
    ``LINEAR_VIEW`` (Optuna's GP, measured worse so) see them as measured. ``ehvi``
    reads the costs from the analytic model and measures on the log yardstick itself.
    """
    shown = []
    logged = [i for i, name in enumerate(settings.objectives) if name in LOG_COSTS] if settings is not None and settings.sampler not in LINEAR_VIEW else []
    for t in trials:
        if BASELINE_ATTR in t.user_attrs:
            t = copy.copy(t)  # the study's cached trial stays as it is
            t.state = TrialState.FAIL
        elif t.state == TrialState.PRUNED and settings is not None and (seen := stopped_values(t.user_attrs, settings)) is not None:
            values, violations = seen
            t = copy.copy(t)
            t.state, t.values = TrialState.COMPLETE, list(values)
            if settings.constraints:  # where Optuna's samplers read them, as TrialRecorder.finish writes them
                t.system_attrs = {**t.system_attrs, **{f"constraints:{c}": v for c, v in zip(settings.parsed_constraints, violations)}}
        if logged and t.state == TrialState.COMPLETE and t.values is not None:
            t = copy.copy(t)
            t.values = [math.log10(max(float(v), 1e-12)) if i in logged else v for i, v in enumerate(t.values)]
        if states is None or t.state in states:
            shown.append(t)
    return shown


class _SearchedTrials:
    """A study as a sampler sees it (``_masked``): the baselines failed, the trials stopped early complete at the accuracy they had."""

    def __init__(self, study: optuna.Study, settings: SearchSettings | None) -> None:
        self._study = study
        self._settings = settings

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(self, deepcopy: bool = True, states: Any = None, use_cache: bool = False) -> list[optuna.trial.FrozenTrial]:
        return _masked(self._study._get_trials(deepcopy=deepcopy, states=None, use_cache=use_cache), states, self._settings)

    def get_trials(self, deepcopy: bool = True, states: Any = None) -> list[optuna.trial.FrozenTrial]:
        return _masked(self._study.get_trials(deepcopy=deepcopy, states=None), states, self._settings)

    @property
    def trials(self) -> list[optuna.trial.FrozenTrial]:
        return self.get_trials()


class SearchedOnlySampler(optuna.samplers.BaseSampler):
    """``sampler``, blind to the baseline trials: it learns from the searched trials only.

    With ``settings``, it also sees each trial stopped early as finished at the
    accuracy it stopped with (see ``_masked``).

    Baselines are a yardstick, not a seed: a baseline particle may lie outside
    the space (its trial records no params), and NSGA-II's populations, TPE's
    observations and their search spaces are the searched trials' alone, so a
    search draws the same particles with baselines on or off.
    """

    def __init__(self, sampler: optuna.samplers.BaseSampler, *, settings: SearchSettings | None = None) -> None:
        self.sampler = sampler
        self.settings = settings  # the objectives and constraints a trial stopped early is shown with (None: shown PRUNED)

    def infer_relative_search_space(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
        return self.sampler.infer_relative_search_space(_SearchedTrials(study, self.settings), trial)

    def sample_relative(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, search_space: dict[str, Any]) -> dict[str, Any]:
        return self.sampler.sample_relative(_SearchedTrials(study, self.settings), trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, param_name: str, param_distribution: Any) -> Any:
        return self.sampler.sample_independent(_SearchedTrials(study, self.settings), trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if BASELINE_ATTR not in trial.user_attrs:
            self.sampler.before_trial(_SearchedTrials(study, self.settings), trial)

    def after_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, state: TrialState, values: Any) -> None:
        if BASELINE_ATTR not in trial.user_attrs:
            self.sampler.after_trial(_SearchedTrials(study, self.settings), trial, state, values)

    def reseed_rng(self) -> None:
        self.sampler.reseed_rng()

    # Ray Tune pickles the searcher, sampler included; Optuna 5.1's GA samplers hold a threading lock, which
    # does not pickle: it is left out and a fresh one made on unpickling.
    def __getstate__(self) -> dict[str, Any]:
        inner = copy.copy(self.sampler)
        inner.__dict__ = {k: v for k, v in inner.__dict__.items() if not isinstance(v, _LOCK)}
        return {"sampler": inner, "settings": self.settings, "locks": [k for k, v in self.sampler.__dict__.items() if isinstance(v, _LOCK)]}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.sampler, self.settings = state["sampler"], state.get("settings")
        for name in state["locks"]:
            setattr(self.sampler, name, threading.Lock())


_LOCK = type(threading.Lock())

