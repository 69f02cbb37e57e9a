"""Operations on a study that every engine shares: open it, queue the baselines, count and fail trials, key networks.

Counting is kept per process and study (``_Ledger``): each look visits only the
trials added or finished since the last, so the engine's own work per trial
does not grow with the study.
"""

from __future__ import annotations

import json
import threading
import weakref
from typing import Any, Mapping

import optuna
from optuna.trial import TrialState

from particle_nas.space import NetworkSpec, network_fingerprint

from ._hypervolume import YARDSTICK_ATTR, yardstick_for
from ._job import SearchJob
from ._sampler import make_sampler
from ._settings import RESUMABLE
from ._storage import open_storage, worker_alive, worker_id
from ._trial import BASELINE_ATTR, DESCRIPTIVE_ATTRS, INTERRUPTED, tqdm_write

CTRL_C = f"{INTERRUPTED}: Ctrl-C"
STOPPED = f"{INTERRUPTED}: the process running it stopped"


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
        sampler=sampler or make_sampler(settings, seed=job.seed, job=job),
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
        study.set_user_attr(YARDSTICK_ATTR, yardstick_for(job.space, job.network).to_dict())  # the box every hypervolume of this run is measured in
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



def network_key(network: NetworkSpec | Mapping[str, Any]) -> str:
    """Networks that build the same thing share a key: the fingerprint of the built network (``space.network_fingerprint``),
    so that particles written differently (``csn_ir``/``inverted`` and ``full``/``inverted``) are trained once."""
    spec = network if isinstance(network, NetworkSpec) else NetworkSpec.from_dict(dict(network))
    return network_fingerprint(spec)


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

