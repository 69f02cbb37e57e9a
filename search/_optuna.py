"""The local search engine: an Optuna multi-objective study run by one or several worker processes."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import optuna
from optuna.trial import TrialState

from particle_nas.space import Axis, NetworkSpec, ParticleSpec, SearchSpace, check_int, particle_from_record, particle_to_record
from particle_nas.space import cost as analytic_cost

from ._settings import SearchSettings
from ._storage import claim_sampler_slot, open_storage, resolve_storage, run_lock, sqlite_url, worker_alive, worker_id
from ._trial import DESCRIPTIVE_ATTRS, INTERRUPTED, Evaluator, fail_reason, objective_values, score_particle


_log = logging.getLogger("particle_nas.search")
LOG_FORMAT = "%(asctime)s %(levelname)s [pid %(process)d] %(name)s: %(message)s"


def log_to_file(path: Path) -> None:
    """Send Optuna's log and the search's (every trial; the traceback of each failure) to ``path``, not the terminal.

    Appends, so a resumed run and several worker processes share one log.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    optuna.logging.disable_default_handler()
    optuna.logging.set_verbosity(optuna.logging.INFO)
    for name in ("optuna", "particle_nas"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def _tqdm_write(line: str) -> None:
    """Print above the progress bar (of this process or, in a worker, the parent's)."""
    import sys

    from tqdm.auto import tqdm

    tqdm.write(line, file=sys.stderr)


@dataclass(frozen=True)
class SearchSummary:
    """What one invocation of a search did, and what the study holds afterwards."""

    study_name: str
    storage: str
    finished: int  # finished trials in the study (complete, pruned, or failed for a reason of their own)
    complete: int
    failed: int  # failed for a reason of their own (raised, NaN loss, out of memory, ...)
    interrupted_trials: int  # failed because the process running them stopped; replaced on resume
    fail_reasons: tuple[tuple[str, int], ...]  # (reason, count), most common first
    new: int  # trials this invocation added
    reused: int  # of which reused the result of an identical particle
    target: int  # trials the study should hold
    interrupted: bool  # stopped by Ctrl-C
    timed_out: bool  # stopped by the timeout before reaching target


def summarize(*, name: str, location: str, before: set[int], settings: SearchSettings, interrupted: bool, elapsed: float) -> SearchSummary:
    """The summary of an invocation, read back from the study (every engine ends with this)."""
    final = optuna.load_study(study_name=name, storage=open_storage(location)).get_trials(deepcopy=False)
    finished = sum(_is_finished(t) for t in final)
    added = [t for t in final if _is_finished(t) and t.number not in before]
    failed = [t for t in final if t.state == TrialState.FAIL and _is_finished(t)]
    reasons = Counter(str(t.user_attrs.get("fail_reason", "unknown")) for t in failed)
    return SearchSummary(
        study_name=name,
        storage=location,
        finished=finished,
        complete=sum(t.state == TrialState.COMPLETE for t in final),
        failed=len(failed),
        interrupted_trials=sum(t.state == TrialState.FAIL for t in final) - len(failed),
        fail_reasons=tuple(reasons.most_common()),
        new=len(added),
        reused=sum("duplicate_of" in t.user_attrs for t in added),
        target=settings.trials,
        interrupted=interrupted,
        timed_out=(not interrupted and settings.timeout is not None and finished < settings.trials and elapsed >= settings.timeout),
    )


def storage_url(run_dir: Path) -> str:
    """The SQLite URL of a single-writer run (see resolve_storage for the others)."""
    return sqlite_url(run_dir)


def make_sampler(settings: SearchSettings, *, seed: int) -> optuna.samplers.BaseSampler:
    if settings.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=settings.population, seed=seed)
    if settings.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=max(4, settings.population))
    return optuna.samplers.RandomSampler(seed=seed)  # random, and progressive (which samples nothing)


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


def _fail_stale_trials(study: optuna.Study, *, mine: bool = False) -> int:
    """Mark trials left RUNNING by a worker that is gone (SIGKILL, power loss) as failed-interrupted.

    Every trial records the ``worker`` (host, pid, process start) that runs it;
    a RUNNING trial is stale when that process no longer exists on this host,
    or when it names no worker at all (it was asked for and its process died
    before recording itself, which happens under the run lock). Trials of live
    workers, and of workers on other hosts, are left alone, so several workers
    can share one study. ``mine`` also fails the trials of this process (when
    it knows none of them still runs). Call under ``run_lock``.
    """
    me = worker_id()
    stale = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))
        if "worker" not in t.user_attrs or worker_alive(t.user_attrs["worker"]) is False or (mine and t.user_attrs["worker"] == me)
    ]
    storage = study._storage  # Optuna has no public call to fail a trial it did not start.
    for trial in stale:
        storage.set_trial_user_attr(trial._trial_id, "fail_reason", f"{INTERRUPTED}: the process running it stopped")
        storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
    return len(stale)


def open_study(
    *, run_dir: Path, name: str, settings: SearchSettings, seed: int, fingerprint: Mapping[str, Any], config: Mapping[str, Any], storage: str | None = None
) -> optuna.Study:
    """Create the run's study, or load it to resume when it was made from the same config."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(
        study_name=name,
        storage=open_storage(storage or resolve_storage(run_dir)),
        directions=settings.directions,
        sampler=make_sampler(settings, seed=seed),
        load_if_exists=True,
    )
    fingerprint = json.loads(json.dumps(fingerprint))
    stored = study.user_attrs.get("fingerprint")
    if stored is None:
        study.set_user_attr("fingerprint", fingerprint)
        study.set_user_attr("objectives", settings.objective_records())
        study.set_metric_names(list(settings.objectives))  # optuna-dashboard labels the objectives with these
        study.set_user_attr("seed", seed)
        study.set_user_attr("config", json.loads(json.dumps(config)))
    elif stored != fingerprint:
        changed = sorted(k for k in set(stored) | set(fingerprint) if stored.get(k) != fingerprint.get(k))
        raise ValueError(
            f"{run_dir} holds study {name!r} made from a different config (changed: {', '.join(changed)}); "
            f"only search.trials and search.timeout may change on resume. Use another name (--name) or remove {run_dir}."
        )
    return study


@dataclass(frozen=True)
class _Job:
    """Everything one worker needs to run trials on a study (picklable, for worker processes)."""

    run_dir: Path
    name: str
    storage: str  # a location from resolve_storage
    space: SearchSpace
    network: NetworkSpec
    evaluator: Evaluator
    settings: SearchSettings
    seed: int
    deadline: float | None  # time.time() after which no trial starts


def _known_particles(trials: list[optuna.trial.FrozenTrial]) -> dict[ParticleSpec | tuple[ParticleSpec, ...], optuna.trial.FrozenTrial]:
    known: dict[ParticleSpec | tuple[ParticleSpec, ...], optuna.trial.FrozenTrial] = {}
    for t in trials:
        if t.state == TrialState.COMPLETE and "particle" in t.user_attrs:
            known.setdefault(particle_from_record(t.user_attrs["particle"]), t)
    return known


def _over_budget(job: _Job, particle: ParticleSpec | tuple[ParticleSpec, ...]) -> dict[str, Any] | None:
    """The attributes of a refused trial when the spec's analytic cost breaks the FLOPs/params budget, else None."""
    settings = job.settings
    if settings.max_flops is None and settings.max_params is None:
        return None
    cost = analytic_cost(job.network.replace(particle=particle))  # from the spec: nothing is built
    refused = settings.over_budget(flops=cost.flops, params=cost.params)
    if refused is None:
        return None
    return {"flops": cost.flops, "params": cost.params, "fail_reason": refused}


def _set_constraints(trial: optuna.Trial, settings: SearchSettings, violations: list[float]) -> None:
    """Record constraint violations where Optuna's samplers and ``best_trials`` read them (<= 0 is feasible)."""
    if not settings.constraints:
        return
    for constraint, violation in zip(settings.parsed_constraints, violations):
        trial.set_constraint(str(constraint), violation)
    trial.set_user_attr("constraints", violations)
    trial.set_user_attr("feasible", all(v <= 0 for v in violations))


def _next_trial(study: optuna.Study, job: _Job) -> tuple[optuna.Trial | None, list[optuna.trial.FrozenTrial]]:
    """Under the run lock: fail stale trials, then ask for a trial unless finished + running trials reach the target.

    The lock makes "count, then ask" atomic across workers, so the study never
    holds more trials than asked for, however many workers share it (on
    several machines too, with PostgreSQL: see run_lock).
    """
    with run_lock(job.run_dir, storage=job.storage):
        _fail_stale_trials(study)
        trials = study.get_trials(deepcopy=False)
        taken = sum(_is_finished(t) or t.state == TrialState.RUNNING for t in trials)
        if taken >= job.settings.trials:
            return None, trials
        trial = study.ask()
        trial.set_user_attr("worker", worker_id())
    return trial, trials


def _work(job: _Job, *, worker: int = 0, bar: Any = None) -> bool:
    """Run trials until the study holds its target, the deadline passes, or Ctrl-C; True when interrupted.

    Worker ``i`` seeds its sampler with ``seed + i``: one worker reproduces the
    single-process search exactly, and several workers do not draw the same
    particles. On PostgreSQL ``i`` is the process's slot in the study (see
    claim_sampler_slot), unique across the machines sharing it.
    """
    study = optuna.load_study(study_name=job.name, storage=open_storage(job.storage))
    slot = claim_sampler_slot(study, job.storage) if job.storage.startswith("postgresql") else worker
    study.sampler = make_sampler(job.settings, seed=job.seed + slot)
    while job.deadline is None or time.time() < job.deadline:
        trial, trials = _next_trial(study, job)
        if trial is None:
            return False
        known = _known_particles(trials)
        try:
            particle = job.space.sample_network(lambda axis: suggest(trial, axis), stages=len(job.network.widths))
            trial.set_user_attr("particle", particle_to_record(particle))
            trial.set_user_attr("network", job.network.replace(particle=particle).to_dict())
            refused = _over_budget(job, particle)
            if refused is not None:  # pruned from the analytic cost: nothing is built or trained
                for key, value in refused.items():
                    trial.set_user_attr(key, value)
                study.tell(trial, state=TrialState.PRUNED)
                if bar is not None:
                    bar.update(1)
                continue
            source = known.get(particle)
            if source is not None:
                record = {k: v for k, v in source.user_attrs.items() if k not in DESCRIPTIVE_ATTRS and k != "worker"}
                trial.set_user_attr("duplicate_of", source.number)
            else:
                first = particle if isinstance(particle, ParticleSpec) else particle[0]
                label = f"#{trial.number} {first.factorization}/{first.wiring}" + ("" if first is particle else " (per stage)")
                if bar is not None:
                    bar.set_postfix_str(f"{label} training", refresh=True)

                def on_epoch(epoch: int, accuracy: float) -> None:
                    if bar is not None:
                        bar.set_postfix_str(f"{label} epoch {epoch} acc {accuracy:.3f}", refresh=True)

                weights = job.run_dir / "weights" / f"trial-{trial.number:05d}.safetensors"
                _, record = score_particle(particle, network=job.network, evaluator=job.evaluator, seed=job.seed, on_epoch=on_epoch, weights_path=weights)
                if weights.is_file():  # a duplicate copies this record, so it points at the same file
                    record["weights"] = weights.relative_to(job.run_dir).as_posix()
            values = objective_values(record, job.settings.objectives)
            violations = job.settings.constraint_values(record)
        except BaseException as err:  # recorded on the trial; the search goes on unless it was Ctrl-C
            reason = fail_reason(err)
            trial.set_user_attr("fail_reason", reason)
            study.tell(trial, state=TrialState.FAIL)
            if not isinstance(err, KeyboardInterrupt):
                _log.warning("trial %d failed: %s", trial.number, reason, exc_info=err)
                _tqdm_write(f"trial {trial.number} failed: {reason}")
            if bar is not None:
                bar.update(1)
            if isinstance(err, KeyboardInterrupt):
                return True
            if not isinstance(err, Exception):
                raise
            continue
        for key, value in record.items():
            trial.set_user_attr(key, value)
        _set_constraints(trial, job.settings, violations)
        study.tell(trial, values)
        if bar is not None:
            bar.update(1)
            complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            best = max(t.user_attrs["accuracy"] for t in complete)
            bar.set_postfix_str(f"best acc {best:.3f} | front {len(study.best_trials)}", refresh=True)
    return False


def _worker_main(job: _Job, worker: int, workers: int) -> None:
    """Entry point of a worker process: share the machine's cores, run trials, exit 130 on Ctrl-C."""
    import os
    import sys

    import torch

    if not os.environ.get("OMP_NUM_THREADS"):  # an explicit thread count wins
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
    log_to_file(job.run_dir / "search.log")
    try:
        interrupted = _work(job, worker=worker)
    except KeyboardInterrupt:
        interrupted = True
    sys.exit(130 if interrupted else 0)


def _run_workers(job: _Job, *, workers: int, bar: Any) -> bool:
    """Run ``workers`` processes on the study; the bar follows the study. True when interrupted."""
    import multiprocessing
    import os
    import signal

    study = optuna.load_study(study_name=job.name, storage=open_storage(job.storage))
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=_worker_main, args=(job, i, workers), daemon=False) for i in range(workers)]
    for proc in procs:
        proc.start()
    interrupted = False
    try:
        while any(proc.is_alive() for proc in procs):
            for proc in procs:
                proc.join(timeout=0.5)
            done = sum(_is_finished(t) for t in study.get_trials(deepcopy=False))
            bar.update(max(0, min(done, bar.total) - bar.n))
    except KeyboardInterrupt:
        interrupted = True
        for proc in procs:
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signal.SIGINT)
        for proc in procs:
            proc.join()
    return interrupted or any(proc.exitcode == 130 for proc in procs)


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
    workers: int = 1,
    storage: str | None = None,
) -> SearchSummary:
    """Run (or resume) a search until the study holds ``settings.trials`` finished trials.

    Every trial trains with the same ``seed`` (weights and data order), so trials
    differ only by their particle. A particle identical to an already complete
    trial is not trained again: its result is reused and ``duplicate_of`` names
    the source trial.

    ``workers`` > 1 runs that many processes on the study. They need a storage
    safe for concurrent writers: a new run gets ``study.journal`` (Optuna's
    JournalStorage file backend); ``storage`` may name a PostgreSQL URL
    instead. Trials of workers that died are failed-interrupted and replaced.
    """
    from tqdm.auto import tqdm

    check_int("workers", workers, low=1, high=1024)
    if settings.sampler == "progressive":  # a deterministic walk, one process
        from ._progressive import run_progressive

        return run_progressive(
            run_dir=run_dir, name=name, space=space, network=network, evaluator=evaluator, settings=settings,
            seed=seed, fingerprint=fingerprint, config=config, progress=progress, storage=storage,
        )
    run_dir = Path(run_dir)
    location = resolve_storage(run_dir, url=storage, workers=workers)
    study = open_study(run_dir=run_dir, name=name, settings=settings, seed=seed, fingerprint=fingerprint, config=config, storage=location)
    before = {t.number for t in study.get_trials(deepcopy=False) if _is_finished(t)}
    bar = tqdm(total=settings.trials, initial=min(len(before), settings.trials), desc=name, unit="trial", disable=not progress, dynamic_ncols=True)
    job = _Job(
        run_dir=run_dir,
        name=name,
        storage=location,
        space=space,
        network=network,
        evaluator=evaluator,
        settings=settings,
        seed=seed,
        deadline=None if settings.timeout is None else time.time() + settings.timeout,
    )
    interrupted = False
    started = time.monotonic()
    try:
        interrupted = _work(job, bar=bar) if workers == 1 else _run_workers(job, workers=workers, bar=bar)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
    return summarize(name=name, location=location, before=before, settings=settings, interrupted=interrupted, elapsed=time.monotonic() - started)
