"""What every search engine honours, written once: the job, the study, and the life of a trial.

A search is data (``SearchJob``) handed to an ``Engine`` (local Optuna
workers, Ray Tune, progressive expansion); ``run`` (in ``_run``) opens the
study, hands it to the engine and summarizes. Each engine records its trials
through a ``TrialRecorder``, so budgets (``search.max_flops``,
``search.max_params``: refused from the analytic cost before anything is
built), reuse of identical particles (``duplicate_of``), constraints
(``constraints``/``feasible`` and Optuna's constraint attributes) and failure
reasons are the same whichever engine runs the trial.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import threading
import time
import weakref
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import optuna
from optuna.trial import TrialState

from particle_nas.evaluators import trial_device
from particle_nas.space import BASELINES, Axis, NetworkSpec, SearchSpace

from ._layout import RunLayout
from ._settings import RESUMABLE, SearchSettings
from ._storage import open_storage, worker_alive, worker_id, without_password
from ._trial import DESCRIPTIVE_ATTRS, INTERRUPTED, Evaluator, objective_values

LOG_FORMAT = "%(asctime)s %(levelname)s [pid %(process)d] %(name)s: %(message)s"
CTRL_C = f"{INTERRUPTED}: Ctrl-C"
STOPPED = f"{INTERRUPTED}: the process running it stopped"
BASELINE_ATTR = "baseline"  # a baseline trial's label (a name of space.BASELINES), set when it is queued


# ---------------------------------------------------------------- the job
@dataclass(frozen=True)
class SearchJob:
    """What to search, where, with which evaluator and settings (picklable: worker processes and Ray get it whole)."""

    run_dir: Path  # the run directory (see RunLayout)
    name: str  # the study's name
    space: SearchSpace
    network: NetworkSpec  # the proxy network; each trial replaces its particle
    evaluator: Evaluator
    settings: SearchSettings
    seed: int  # seeds the sampler, and every trial's weights and data order
    fingerprint: Mapping[str, Any]  # what decides trial results; a resumed study must match it
    config: Mapping[str, Any]  # the config document, stored on the study (particle-nas resume reads it)
    storage: str | None = None  # a database URL; None: the run directory's study.db or study.journal (run resolves it)
    workers: int | None = 1  # optuna: worker processes (None: 1); ray: most trials at once (None: one per CPU)
    address: str | None = None  # ray: HOST:PORT of a running cluster; None: a local Ray
    gpus: tuple[int, ...] | None = None  # optuna: the GPUs workers spread over (worker i on gpus[i % len]); None: every visible GPU

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.run_dir)


class Engine(ABC):
    """Runs trials on an open study until it holds ``job.settings.trials`` finished ones, the deadline, or Ctrl-C.

    ``run`` starts no trial after ``deadline`` (a ``time.time()``), records every
    trial through a ``TrialRecorder``, and returns True when interrupted by
    Ctrl-C (or raises KeyboardInterrupt). Opening the study, failing stale
    trials and the summary are not its business (see ``_run.run``).
    """

    name: str = ""
    assigns_gpus: bool = False  # places its workers on job.gpus (otherwise job.gpus is refused)

    def check(self, job: SearchJob) -> None:
        """Refuse a job this engine cannot run (one-line ValueError), before anything is opened."""

    def started(self, job: SearchJob) -> dict[str, Any]:
        """What run.json records of how this job was started (and on which device and precision it asked to train)."""
        evaluator = job.evaluator
        asked = {"device": evaluator.device, "precision": evaluator.precision} if evaluator.device is not None else {}
        return {
            "backend": job.settings.backend, "workers": job.workers, **({"storage": without_password(job.storage)} if job.storage else {}),
            **asked, "gpus": list(job.gpus) if job.gpus else None, "trials_per_gpu": job.settings.trials_per_gpu,
        }  # fmt: skip

    def writers(self, job: SearchJob) -> int:
        """How many processes write the study at once (decides the storage of a new run)."""
        return 1

    def setup_worker(self, job: SearchJob, *, worker: int, workers: int) -> None:
        """In a process that runs trials (``worker`` of ``workers``): share the machine's cores, log to the run's search.log."""
        if not os.environ.get("OMP_NUM_THREADS"):  # an explicit thread count wins
            import torch

            torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
        log_to_file(job.layout.log_file)

    @abstractmethod
    def run(self, job: SearchJob, study: optuna.Study, *, progress: bool, deadline: float | None) -> bool:
        """Run trials on ``study``; True when interrupted."""


def trial_evaluator(evaluator: Evaluator, *, worker: int | None = None, gpus: Sequence[int] | None = None, ray_gpu_ids: Sequence[Any] | None = None) -> Evaluator:
    """``evaluator`` training on the device of local worker ``worker`` (over ``gpus``) or of a Ray trial given ``ray_gpu_ids``.

    See ``trial_device``: the CPU stays the CPU, and an evaluator without a
    training device (a replayed table) is returned as it is.
    """
    asked = evaluator.device
    if asked is None:
        return evaluator
    device = trial_device(asked, worker=worker, gpus=gpus, ray_gpu_ids=ray_gpu_ids)
    return evaluator if device == asked else evaluator.on_device(device)


# ---------------------------------------------------------------- logging
def log_to_file(path: Path) -> None:
    """Send Optuna's log and the search's (every trial; the traceback of each failure) to ``path``, not the terminal.

    Appends, so a resumed run and several worker processes share one log.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logging.raiseExceptions = False  # a log line the disk has no room for is dropped, not dumped on the terminal
    optuna.logging.disable_default_handler()
    optuna.logging.set_verbosity(optuna.logging.INFO)
    for name in ("optuna", "particle_nas"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def tqdm_write(line: str) -> None:
    """Print above the progress bar (of this process or, in a worker, the parent's)."""
    import sys

    from tqdm.auto import tqdm

    tqdm.write(line, file=sys.stderr)


def progress_bar(job: SearchJob, study: optuna.Study, *, progress: bool) -> Any:
    """A tqdm bar over the study's target, starting at the trials already finished."""
    from tqdm.auto import tqdm

    done = count_finished(study)
    return tqdm(total=job.settings.trials, initial=min(done, job.settings.trials), desc=job.name, unit="trial", disable=not progress, dynamic_ncols=True)


# ---------------------------------------------------------------- the study
def make_sampler(settings: SearchSettings, *, seed: int) -> optuna.samplers.BaseSampler:
    """The settings' sampler, seeded, and blind to baseline trials (see SearchedOnlySampler)."""
    if settings.sampler == "nsga2":
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


# ---------------------------------------------------------------- baselines
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
    """
    shown = []
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


def enqueue_baselines(job: SearchJob, study: optuna.Study) -> tuple[str, ...]:
    """Queue the job's baselines as the first trials of a new study, once; the names queued. Call under the run's lock.

    A study records the baselines it was given (study attribute ``baselines``),
    so a resumed run, or a second process starting on the same study, never
    queues them again. The progressive sampler samples no particle: it skips
    them, with a note.
    """
    if "baselines" in study.user_attrs:
        return ()
    names = job.settings.baseline_names
    if job.settings.baselines and not names:
        tqdm_write("particle-nas: note: search.baselines is skipped by the progressive sampler (it grows one network; it samples no particle)")
    if study.get_trials(deepcopy=False):  # a study begun before this run queued anything: baselines would not come first
        names = ()
    for name in names:
        study.enqueue_trial({}, user_attrs={BASELINE_ATTR: name})
    study.set_user_attr("baselines", list(names))
    return names


def is_finished(trial: optuna.trial.FrozenTrial) -> bool:
    """Counts toward the target: complete, pruned, or failed for a reason of its own (not interrupted)."""
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and not str(trial.user_attrs.get("fail_reason", "")).startswith(INTERRUPTED)


class _Ledger:
    """One study's trials as the engine counts them before each trial, kept up to date in this process.

    Each look reads the study's trial list once and visits only the trials new
    since the last look and those not finished then (RUNNING, WAITING): the
    engine's own work per trial is O(new trials), not O(all trials), and a stored
    network is parsed once per process. A finished trial never changes again
    (Optuna refuses to update one), so what it added stays true. Trials another
    process adds to the same study in between are seen at the next look.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self.seen = 0  # trials numbered below this were visited
        self.open: set[int] = set()  # of those, the ones not finished when visited (visited again at each look)
        self.finished = 0  # of those, the finished ones (is_finished)
        self.known: dict[str, optuna.trial.FrozenTrial] = {}  # see TrialRecorder.known
        self.afresh = False  # the last look's list was not numbered 0..n-1: the next one counts afresh

    def look(self, study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
        """The study's trials, the counts brought up to date with them. Call under ``lock``.

        ``open`` holds positions in the returned list (trial numbers, unless a
        trial numbered in between is not visible yet, as may happen with several
        writers: then this look, and the next, count every trial afresh).
        """
        trials = study.get_trials(deepcopy=False)
        numbered = not trials or trials[-1].number == len(trials) - 1  # sorted and distinct, so 0..n-1 without a gap
        if self.afresh or not numbered or len(trials) < self.seen:
            self._reset()
        for at in [*sorted(self.open), *range(self.seen, len(trials))]:
            trial = trials[at]
            if not trial.state.is_finished():
                self.open.add(at)
                continue
            self.open.discard(at)
            self.finished += is_finished(trial)
            key = _source_key(trial)
            if key is not None and (key not in self.known or trial.number < self.known[key].number):
                self.known[key] = trial
        self.seen, self.afresh = len(trials), not numbered
        return trials


_ledgers: weakref.WeakKeyDictionary[Any, dict[int, _Ledger]] = weakref.WeakKeyDictionary()
_ledgers_lock = threading.Lock()


def _ledger(study: optuna.Study) -> _Ledger:
    """This process's ledger of ``study`` (one per storage object and study, whatever Study object names it)."""
    with _ledgers_lock:
        try:
            per_study = _ledgers.setdefault(study._storage, {})
        except TypeError:  # a storage that takes no weak reference: counted afresh at every look
            return _Ledger()
        return per_study.setdefault(study._study_id, _Ledger())


def count_finished(study: optuna.Study) -> int:
    """Finished trials of ``study`` (see is_finished)."""
    ledger = _ledger(study)
    with ledger.lock:
        ledger.look(study)
        return ledger.finished


def target_reached(study: optuna.Study, target: int) -> bool:
    """Finished + running trials reach ``target`` (so no new trial is asked)."""
    ledger = _ledger(study)
    with ledger.lock:
        trials = ledger.look(study)
        return ledger.finished + sum(trials[n].state == TrialState.RUNNING for n in ledger.open) >= target


def open_study(job: SearchJob, *, sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
    """Create the job's study, or load it to resume when it was made from the same config (``job.storage`` resolved)."""
    if job.storage is None:
        raise ValueError(f"job.storage must be a storage location (see RunLayout.storage), but got None for {job.run_dir}.")
    job.run_dir.mkdir(parents=True, exist_ok=True)
    settings = job.settings
    study = optuna.create_study(
        study_name=job.name,
        storage=open_storage(job.storage),
        directions=settings.directions,
        sampler=sampler or make_sampler(settings, seed=job.seed),
        load_if_exists=True,
    )
    fingerprint = json.loads(json.dumps(job.fingerprint))
    stored = study.user_attrs.get("fingerprint")
    if stored is None:
        study.set_user_attr("fingerprint", fingerprint)
        study.set_user_attr("objectives", settings.objective_records())
        study.set_metric_names(list(settings.objectives))  # optuna-dashboard labels the objectives with these
        study.set_user_attr("seed", job.seed)
        study.set_user_attr("config", json.loads(json.dumps(job.config)))
    elif stored != fingerprint:
        changed = sorted(k for k in set(stored) | set(fingerprint) if stored.get(k) != fingerprint.get(k))
        may = ", ".join(f"search.{name}" for name in RESUMABLE)
        raise ValueError(
            f"{job.run_dir} holds study {job.name!r} made from a different config (changed: {', '.join(changed)}); "
            f"only {may} may change on resume. Use another name (--name) or remove {job.run_dir}."
        )
    return study


def fail_stale_trials(study: optuna.Study, *, mine: bool = False, reason: str = STOPPED) -> int:
    """Mark trials left RUNNING by a worker that is gone (SIGKILL, power loss) as failed-interrupted.

    Every trial records the ``worker`` (host, pid, process start) that runs it;
    a RUNNING trial is stale when that process no longer exists on this host,
    or when it names no worker at all (it was asked for and its process died
    before recording itself, which happens under the run lock). Trials of live
    workers, and of workers on other hosts, are left alone, so several workers
    can share one study. ``mine`` also fails the trials of this process (when
    it knows none of them still runs), with ``reason``. A queued baseline (WAITING,
    see enqueue_baselines) is not stale: it waits for its turn. Call under the run's lock.
    """
    me = worker_id()
    ledger = _ledger(study)
    with ledger.lock:
        trials = ledger.look(study)
        unfinished = [trials[n] for n in sorted(ledger.open)]  # RUNNING and WAITING
    stale = [
        t
        for t in unfinished
        if not (t.state == TrialState.WAITING and BASELINE_ATTR in t.user_attrs)
        and ("worker" not in t.user_attrs or worker_alive(t.user_attrs["worker"]) is False or (mine and t.user_attrs["worker"] == me))
    ]
    storage = study._storage  # Optuna has no public call to fail a trial it did not start.
    for trial in stale:
        own = mine and trial.user_attrs.get("worker") == me
        storage.set_trial_user_attr(trial._trial_id, "fail_reason", reason if own else STOPPED)
        storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
    return len(stale)


# ---------------------------------------------------------------- one trial
def network_key(network: NetworkSpec | Mapping[str, Any]) -> str:
    """Identical networks (particle, widths, clip, ...) share a key."""
    spec = network if isinstance(network, NetworkSpec) else NetworkSpec.from_dict(dict(network))
    return json.dumps(spec.to_dict(), sort_keys=True)


def _source_key(trial: optuna.trial.FrozenTrial) -> str | None:
    """The network key under which a finished trial's record may be reused; None when it may not be.

    Only a COMPLETE trial that trained its network (not itself a duplicate)
    is a source; a network this version cannot read is never reused.
    """
    network = trial.user_attrs.get("network")
    if trial.state != TrialState.COMPLETE or not isinstance(network, dict) or "duplicate_of" in trial.user_attrs:
        return None
    try:
        return network_key(network)
    except (ValueError, TypeError):
        return None


def measured(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's record: its user attributes that measure rather than describe it."""
    return {k: v for k, v in attrs.items() if k not in DESCRIPTIVE_ATTRS and k not in ("worker", "expansion", BASELINE_ATTR)}


# ---------------------------------------------------------------- the summary
@dataclass(frozen=True)
class SearchSummary:
    """What one invocation of a search did, and what the study holds afterwards."""

    study_name: str
    storage: str
    finished: int  # finished trials in the study (complete, pruned, or failed for a reason of their own)
    complete: int
    stopped: int  # stopped early by ASHA / MO-ASHA (PRUNED with stopped_at_epoch)
    failed: int  # failed for a reason of their own (raised, NaN loss, out of memory, ...)
    interrupted_trials: int  # failed because the process running them stopped; replaced on resume
    fail_reasons: tuple[tuple[str, int], ...]  # (reason, count), most common first
    new: int  # trials this invocation added
    reused: int  # of which reused the result of an identical particle
    target: int  # trials the study should hold
    interrupted: bool  # stopped by Ctrl-C
    timed_out: bool  # stopped by the timeout before reaching target
    baselines: int = 0  # of the finished trials, how many are baselines (the rest were searched)


def summarize(job: SearchJob, *, before: set[int], interrupted: bool, deadline: float | None) -> SearchSummary:
    """The summary of an invocation, read back from the study (every engine ends with this)."""
    final = optuna.load_study(study_name=job.name, storage=open_storage(job.storage)).get_trials(deepcopy=False)
    finished = sum(is_finished(t) for t in final)
    added = [t for t in final if is_finished(t) and t.number not in before]
    failed = [t for t in final if t.state == TrialState.FAIL and is_finished(t)]
    reasons = Counter(str(t.user_attrs.get("fail_reason", "unknown")) for t in failed)
    return SearchSummary(
        study_name=job.name,
        storage=str(job.storage),
        finished=finished,
        complete=sum(t.state == TrialState.COMPLETE for t in final),
        stopped=sum(t.state == TrialState.PRUNED and "stopped_at_epoch" in t.user_attrs for t in final),
        failed=len(failed),
        interrupted_trials=sum(t.state == TrialState.FAIL for t in final) - len(failed),
        fail_reasons=tuple(reasons.most_common()),
        new=len(added),
        reused=sum("duplicate_of" in t.user_attrs for t in added),
        target=job.settings.trials,
        interrupted=interrupted,
        baselines=sum(is_finished(t) and BASELINE_ATTR in t.user_attrs for t in final),
        timed_out=not interrupted and deadline is not None and finished < job.settings.trials and time.time() >= deadline,
    )
