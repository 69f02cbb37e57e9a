"""The one way a search runs, whichever engine: open the study, let the engine run trials, summarize."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any, Mapping

from particle_nas.space import NetworkSpec, SearchSpace, check_int

from ._engine import Engine
from ._job import SearchJob
from ._study import CTRL_C, STOPPED, enqueue_baselines, fail_stale_trials, is_finished, open_study
from ._summary import SearchSummary, summarize
from ._early_stopping import early_stopping
from ._settings import SearchSettings
from ._stopped import SearchStopped
from ._storage import storage_full
from ._trial import Evaluator

_log = logging.getLogger("particle_nas.search")


def engine_for(settings: SearchSettings) -> Engine:
    """The engine a config asks for: progressive expansion, Ray Tune, or local Optuna workers."""
    if settings.sampler == "progressive":
        from ._progressive import ProgressiveEngine

        return ProgressiveEngine()
    if settings.backend == "ray":
        from ._ray import RayEngine

        return RayEngine()
    from ._local import LocalEngine

    return LocalEngine()


def check_run_options(settings: SearchSettings, *, workers: int | None = None, gpus: object = None, engine: Engine | None = None, field: str = "gpus") -> None:
    """The rules of how a job runs that its settings alone do not hold: ``workers`` in [1, 1024], and GPUs
    named only for an engine that places its workers on them. ``run`` applies them; the CLI calls this
    first, so a refused option never leaves a run directory behind."""
    if workers is not None:
        check_int("workers", workers, low=1, high=1024)
    engine = engine or engine_for(settings)
    if gpus not in (None, "", ()) and not engine.assigns_gpus:
        shown = list(gpus) if isinstance(gpus, tuple) else gpus
        raise ValueError(f"{field} must be left out with the {engine.name} engine (only the optuna backend's workers spread over GPUs; Ray gives each trial its GPU: search.resources_per_trial), but got {shown!r}.")


def run(job: SearchJob, engine: Engine | None = None, *, progress: bool = True) -> SearchSummary:
    """Run (or resume) ``job`` on ``engine`` (default: the one its settings name) until the study holds ``settings.trials``.

    Every engine gets the same study: created, or loaded when the fingerprint
    matches; trials left RUNNING by a process that is gone are failed-interrupted
    (and replaced); ``search.timeout`` becomes a deadline after which no trial
    starts; a new study first queues ``settings.baselines`` (the hand-designed
    particles of ``space.BASELINES``), which every engine then asks like any trial. Ctrl-C fails the trials this process runs with 'interrupted: Ctrl-C'
    and ends with ``summary.interrupted``.
    """
    engine = engine or engine_for(job.settings)
    if not isinstance(job.evaluator, Evaluator):
        raise ValueError(f"job.evaluator must be a particle_nas.evaluators.Evaluator (evaluate and its hooks), but got {type(job.evaluator).__name__}.")
    check_run_options(job.settings, workers=job.workers, gpus=job.gpus, engine=engine)
    engine.check(job)
    early_stopping(job.settings, evaluator=job.evaluator)  # refuses an evaluator without an epoch budget, before anything is opened
    layout = job.layout
    location = layout.storage(url=job.storage, workers=engine.writers(job))
    started = engine.started(job)  # with the storage URL the user gave, if any
    job = dataclasses.replace(job, run_dir=Path(job.run_dir).resolve(), storage=location)
    study = open_study(job)
    layout.write_run_file(**started)  # how it was started: particle-nas resume continues it the same way
    with layout.lock(storage=job.storage):
        fail_stale_trials(study)
        enqueue_baselines(job, study)  # a new study's first trials: the hand-designed particles (search.baselines)
    before = {t.number for t in study.get_trials(deepcopy=False) if is_finished(t)}
    deadline = None if job.settings.timeout is None else time.time() + job.settings.timeout
    interrupted = False
    try:
        interrupted = bool(engine.run(job, study, progress=progress, deadline=deadline))
    except KeyboardInterrupt:
        interrupted = True
    except Exception as err:
        full = storage_full(err, where=job.run_dir)
        if full is None:
            raise
        raise SearchStopped(f"the study could not be written: {full}; every trial it holds is kept: free some space, then particle-nas resume {job.run_dir}") from err
    finally:
        _fail_my_trials(job, study, reason=CTRL_C if interrupted else STOPPED)
    return summarize(job, before=before, interrupted=interrupted, deadline=deadline)


def _fail_my_trials(job: SearchJob, study: Any, *, reason: str) -> None:
    """The trials this process asked for but never told: nothing runs them any more.

    On a full disk this write fails too; the trials then stay RUNNING until the
    next run fails them as stale, and the error that stopped the search is the one reported.
    """
    try:
        with job.layout.lock(storage=job.storage):
            fail_stale_trials(study, mine=True, reason=reason)
    except Exception as err:
        if storage_full(err) is None:
            raise
        _log.warning("could not mark this process's trials %r: %s", reason, err)


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
    workers: int | None = 1,
    storage: str | None = None,
    address: str | None = None,
    gpus: tuple[int, ...] | None = None,
) -> SearchSummary:
    """``run(SearchJob(...))`` on the engine the settings name (see SearchJob for the arguments)."""
    job = SearchJob(
        run_dir=Path(run_dir), name=name, space=space, network=network, evaluator=evaluator, settings=settings,
        seed=seed, fingerprint=fingerprint, config=config, storage=storage, workers=workers, address=address, gpus=gpus,
    )  # fmt: skip
    return run(job, progress=progress)
