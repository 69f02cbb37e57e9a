"""What one invocation of a search did, read back from the study (every engine ends with it)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from ._hypervolume import YARDSTICK_ATTR, Yardstick
from ._job import SearchJob
from ._storage import open_storage
from ._study import is_finished
from ._trial import BASELINE_ATTR


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
    hypervolume: float | None = None  # of the complete trials' accuracy-FLOPs front, on the study's log-FLOPs yardstick (None: no yardstick or no such trial)


def front_hypervolume(study: optuna.Study, trials: list[optuna.trial.FrozenTrial]) -> float | None:
    """The hypervolume of the complete trials' (accuracy, FLOPs) front on the study's yardstick (``YARDSTICK_ATTR``), or None."""
    stored = study.user_attrs.get(YARDSTICK_ATTR)
    points = [(t.user_attrs["accuracy"], t.user_attrs["flops"]) for t in trials if t.state == TrialState.COMPLETE and isinstance(t.user_attrs.get("accuracy"), (int, float)) and isinstance(t.user_attrs.get("flops"), (int, float))]
    if not isinstance(stored, dict) or not points:
        return None
    accuracy, flops = zip(*points)
    return Yardstick.from_dict(stored).hypervolume(accuracy, flops)


def summarize(job: SearchJob, *, before: set[int], interrupted: bool, deadline: float | None) -> SearchSummary:
    """The summary of an invocation, read back from the study (every engine ends with this)."""
    study = optuna.load_study(study_name=job.name, storage=open_storage(job.storage))
    final = study.get_trials(deepcopy=False)
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
        hypervolume=front_hypervolume(study, final),
        timed_out=not interrupted and deadline is not None and finished < job.settings.trials and time.time() >= deadline,
    )
