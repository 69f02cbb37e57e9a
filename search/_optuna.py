"""The local search engine: an Optuna multi-objective study in an embedded SQLite file."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import optuna
from optuna.trial import TrialState

from particle_nas.space import Axis, NetworkSpec, ParticleSpec, SearchSpace

from ._settings import SearchSettings
from ._trial import DESCRIPTIVE_ATTRS, INTERRUPTED, Evaluator, fail_reason, objective_values, score_particle


@dataclass(frozen=True)
class SearchSummary:
    """What one invocation of a search did, and what the study holds afterwards."""

    study_name: str
    storage: str
    finished: int  # finished trials in the study (complete, pruned, or failed for a reason of their own)
    complete: int
    failed: int
    new: int  # trials this invocation added
    reused: int  # of which reused the result of an identical particle
    target: int  # trials the study should hold
    interrupted: bool  # stopped by Ctrl-C
    timed_out: bool  # stopped by the timeout before reaching target


def storage_url(run_dir: Path) -> str:
    return f"sqlite:///{(Path(run_dir) / 'study.db').resolve()}"


def make_sampler(settings: SearchSettings, *, seed: int) -> optuna.samplers.BaseSampler:
    if settings.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=settings.population, seed=seed)
    if settings.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=max(4, settings.population))
    return optuna.samplers.RandomSampler(seed=seed)


def suggest(trial: optuna.Trial, axis: Axis) -> Any:
    """Ask an Optuna trial for one axis value."""
    if axis.choices is not None:
        return trial.suggest_categorical(axis.name, list(axis.choices))
    if axis.is_int:
        return trial.suggest_int(axis.name, int(axis.low), int(axis.high), step=int(axis.step or 1), log=axis.log)
    return trial.suggest_float(axis.name, float(axis.low), float(axis.high), step=axis.step, log=axis.log)


def _is_finished(trial: optuna.trial.FrozenTrial) -> bool:
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and not str(trial.user_attrs.get("fail_reason", "")).startswith(INTERRUPTED)


def _fail_stale_trials(study: optuna.Study) -> int:
    """Mark trials left RUNNING by a process that died (SIGKILL, power loss) as failed-interrupted.

    Only safe with one process per study, which is how the local backend runs.
    """
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))
    storage = study._storage  # Optuna has no public call to fail a trial it did not start.
    for trial in stale:
        storage.set_trial_user_attr(trial._trial_id, "fail_reason", f"{INTERRUPTED}: the process running it stopped")
        storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
    return len(stale)


def open_study(*, run_dir: Path, name: str, settings: SearchSettings, seed: int, fingerprint: Mapping[str, Any], config: Mapping[str, Any]) -> optuna.Study:
    """Create the run's study, or load it to resume when it was made from the same config."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(
        study_name=name,
        storage=storage_url(run_dir),
        directions=settings.directions,
        sampler=make_sampler(settings, seed=seed),
        load_if_exists=True,
    )
    fingerprint = json.loads(json.dumps(fingerprint))
    stored = study.user_attrs.get("fingerprint")
    if stored is None:
        study.set_user_attr("fingerprint", fingerprint)
        study.set_user_attr("objectives", settings.objective_records())
        study.set_user_attr("seed", seed)
        study.set_user_attr("config", json.loads(json.dumps(config)))
    elif stored != fingerprint:
        changed = sorted(k for k in set(stored) | set(fingerprint) if stored.get(k) != fingerprint.get(k))
        raise ValueError(
            f"{run_dir} holds study {name!r} made from a different config (changed: {', '.join(changed)}); "
            f"only search.trials and search.timeout may change on resume. Use another name (--name) or remove {run_dir}."
        )
    return study


def run_search(
    *,
    run_dir: Path,
    name: str,
    space: SearchSpace,
    network: NetworkSpec,
    evaluator: Evaluator,
    settings: SearchSettings,
    seed: int,
    fingerprint: Mapping[str, Any],
    config: Mapping[str, Any],
    progress: bool = True,
) -> SearchSummary:
    """Run (or resume) a search until the study holds ``settings.trials`` finished trials.

    Every trial trains with the same ``seed`` (weights and data order), so trials
    differ only by their particle. A particle identical to an already complete
    trial is not trained again: its result is reused and ``duplicate_of`` names
    the source trial.
    """
    from tqdm.auto import tqdm

    study = open_study(run_dir=run_dir, name=name, settings=settings, seed=seed, fingerprint=fingerprint, config=config)
    _fail_stale_trials(study)
    trials = study.get_trials(deepcopy=False)
    finished_before = sum(_is_finished(t) for t in trials)
    known: dict[ParticleSpec, optuna.trial.FrozenTrial] = {}
    for t in trials:
        if t.state == TrialState.COMPLETE and "particle" in t.user_attrs:
            known.setdefault(ParticleSpec.from_dict(t.user_attrs["particle"]), t)
    remaining = max(0, settings.trials - finished_before)
    bar = tqdm(total=settings.trials, initial=finished_before, desc=name, unit="trial", disable=not progress, dynamic_ncols=True)
    counts = {"new": 0, "reused": 0}

    def objective(trial: optuna.Trial) -> tuple[float, ...]:
        particle = space.sample(lambda axis: suggest(trial, axis))
        trial.set_user_attr("particle", particle.to_dict())
        trial.set_user_attr("network", network.replace(particle=particle).to_dict())
        source = known.get(particle)
        if source is not None:
            record = {k: v for k, v in source.user_attrs.items() if k not in DESCRIPTIVE_ATTRS}
            values = objective_values(record, settings.objectives)
            violations = settings.constraint_values(record)
            trial.set_user_attr("duplicate_of", source.number)
            counts["reused"] += 1
        else:
            label = f"#{trial.number} {particle.factorization}/{particle.wiring}"
            bar.set_postfix_str(f"{label} training", refresh=True)

            def on_epoch(epoch: int, accuracy: float) -> None:
                bar.set_postfix_str(f"{label} epoch {epoch} acc {accuracy:.3f}", refresh=True)

            try:
                _, record = score_particle(particle, network=network, evaluator=evaluator, seed=seed, on_epoch=on_epoch)
                values = objective_values(record, settings.objectives)
                violations = settings.constraint_values(record)
            except BaseException as err:  # recorded on the trial; Optuna fails it and the search goes on
                trial.set_user_attr("fail_reason", fail_reason(err))
                raise
        for key, value in record.items():
            trial.set_user_attr(key, value)
        if settings.constraints:  # Optuna's samplers and best_trials read these (<= 0 is feasible)
            for constraint, violation in zip(settings.parsed_constraints, violations):
                trial.set_constraint(str(constraint), violation)
            trial.set_user_attr("constraints", violations)
            trial.set_user_attr("feasible", all(v <= 0 for v in violations))
        return values

    def after_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.state == TrialState.COMPLETE:
            counts["new"] += 1
            particle = ParticleSpec.from_dict(trial.user_attrs["particle"])
            known.setdefault(particle, trial)
        elif _is_finished(trial):
            counts["new"] += 1
        bar.update(1)
        complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
        if complete:
            best = max(t.user_attrs["accuracy"] for t in complete)
            bar.set_postfix_str(f"best acc {best:.3f} | front {len(study.best_trials)}", refresh=True)

    interrupted = False
    started = time.monotonic()
    try:
        if remaining:
            study.optimize(
                objective,
                n_trials=remaining,
                timeout=settings.timeout,
                callbacks=[after_trial],
                catch=(Exception,),
                show_progress_bar=False,
            )
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
    elapsed = time.monotonic() - started
    final = study.get_trials(deepcopy=False)
    finished = sum(_is_finished(t) for t in final)
    return SearchSummary(
        study_name=name,
        storage=storage_url(run_dir),
        finished=finished,
        complete=sum(t.state == TrialState.COMPLETE for t in final),
        failed=sum(t.state == TrialState.FAIL for t in final),
        new=counts["new"],
        reused=counts["reused"],
        target=settings.trials,
        interrupted=interrupted,
        timed_out=(not interrupted and settings.timeout is not None and finished < settings.trials and elapsed >= settings.timeout),
    )
