"""The local engine: an Optuna multi-objective study run by one or several worker processes.

Every trial trains with the same seed (weights and data order), so trials
differ only by their particle. ``workers`` > 1 runs that many processes on the
study; they need a storage safe for concurrent writers: a new run gets
``study.journal`` (Optuna's JournalStorage file backend), or a PostgreSQL URL.
Trials of workers that died are failed-interrupted and replaced. A CUDA error
other than out of memory breaks the CUDA context of the process it happened in:
that process runs no further trial; a worker process is replaced by a fresh one
in its slot (see ``_workers``), a single process stops the search in one line.

On a machine with CUDA, worker ``i`` trains on GPU ``i mod G`` (of ``job.gpus``,
else of every visible GPU), and without ``workers`` the engine runs
``search.trials_per_gpu`` workers per GPU (``default_workers``); on the CPU
nothing changes (one worker unless asked).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import optuna
from optuna.trial import TrialState

from particle_nas.evaluators import default_workers, prepare_cuda_process

from ._engine import Engine, progress_bar, trial_evaluator
from ._job import SearchJob
from ._sampler import make_sampler
from ._study import fail_stale_trials, target_reached
from ._early_stopping import early_stopping
from ._runner import TrialRunner
from ._storage import claim_sampler_slot, open_storage, worker_id
from ._stopped import CudaErrorStopped, stop_after_cuda_error
from ._workers import CUDA_ERROR_EXIT, WorkerPool, worker_failure

_log = logging.getLogger("particle_nas.search")


def _next_trial(study: optuna.Study, job: SearchJob) -> optuna.Trial | None:
    """Under the run lock: ask for a trial unless finished + running trials reach the target.

    The lock makes "count, then ask" atomic across workers, so the study never
    holds more trials than asked for, however many workers share it (on
    several machines too, with PostgreSQL: see run_lock).
    """
    with job.layout.lock(storage=job.storage):
        fail_stale_trials(study)
        if target_reached(study, job.settings.trials):
            return None
        trial = study.ask()
        trial.set_user_attr("worker", worker_id())  # before the lock is released: a trial naming no worker is stale
    return trial


class _BestLine:
    """The bar's "best acc | front" postfix, the Pareto front recounted at most every ``every`` seconds.

    ``study.best_trials`` reads every trial and sorts out the front: after each
    trial of a long (or replayed) search that cost more than the trials.
    """

    def __init__(self, every: float = 5.0) -> None:
        self.every, self.best, self.front, self.counted = every, float("-inf"), 0, float("-inf")

    def __call__(self, study: optuna.Study, accuracy: float) -> str:
        self.best = max(self.best, accuracy)
        now = time.monotonic()
        if now - self.counted >= self.every:
            self.front, self.counted = len(study.best_trials), now
        return f"best acc {self.best:.3f} | front {self.front}"


def work(job: SearchJob, *, deadline: float | None, worker: int = 0, sampler_slot: int | None = None, bar: Any = None) -> bool:
    """Run trials until the study holds its target, the deadline passes, or Ctrl-C; True when interrupted.

    After a CUDA error other than out of memory it raises CudaErrorStopped (its trial is failed
    'interrupted: ...'): this process's CUDA context is broken, so it runs no further trial.

    Worker ``i`` trains on its GPU (see trial_evaluator) and seeds its sampler with ``seed + s``,
    ``s`` its ``sampler_slot`` (default ``i``): one worker reproduces the single-process search
    exactly, and several workers do not draw the same particles. On PostgreSQL ``s`` is the
    process's slot in the study (see claim_sampler_slot), unique across the machines sharing it.
    """
    prepare_cuda_process()  # before this process first uses CUDA
    study = optuna.load_study(study_name=job.name, storage=open_storage(job.storage))
    job = dataclasses.replace(job, evaluator=trial_evaluator(job.evaluator, worker=worker, gpus=job.gpus))  # worker i on GPU i mod G
    best_line = _BestLine()
    job.evaluator.warm_up()  # the task and torch's lazy imports: once per process, not in the first trial
    slot = claim_sampler_slot(study, job.storage) if job.storage.startswith("postgresql") else worker if sampler_slot is None else sampler_slot
    study.sampler = make_sampler(job.settings, seed=job.seed + slot, job=job)
    runner = TrialRunner(job)
    stopping = early_stopping(job.settings, evaluator=job.evaluator)
    while deadline is None or time.time() < deadline:
        trial = _next_trial(study, job)
        if trial is None:
            return False
        outcome = runner.run(trial, study=study, stopping=stopping, on_train=lambda number, network: _training(bar, number, network))
        study.tell(trial, outcome.values, state=outcome.state)
        if outcome.state == TrialState.COMPLETE:
            _log.info("trial %d complete: %s", trial.number, ", ".join(f"{v:.6g}" for v in outcome.values))  # search.log: every trial
        if bar is not None:
            bar.update(1)
            if outcome.state == TrialState.COMPLETE and not bar.disable:
                bar.set_postfix_str(best_line(study, float(outcome.record["accuracy"])), refresh=True)
        err = outcome.error
        stop_after_cuda_error(err, trial=trial.number, run_dir=job.run_dir)  # this process's CUDA context is broken: it runs no further trial
        if isinstance(err, KeyboardInterrupt):
            return True
        if err is not None and not isinstance(err, Exception):
            raise err
    return False


def _training(bar: Any, number: int, network: Any) -> Any:
    """The bar's postfix while trial ``number`` trains: "training", then each epoch's accuracy."""
    label = _label(number, network)
    if bar is not None:
        bar.set_postfix_str(f"{label} training", refresh=True)

    def on_epoch(epoch: int, accuracy: float) -> None:
        if bar is not None:
            bar.set_postfix_str(f"{label} epoch {epoch} acc {accuracy:.3f}", refresh=True)

    return on_epoch


def _label(number: int, network: Any) -> str:
    particle = network.particle
    first = particle if not isinstance(particle, tuple) else particle[0]
    return f"#{number} {first.factorization}/{first.wiring}" + ("" if first is particle else " (per stage)")


def _worker_main(engine: LocalEngine, job: SearchJob, worker: int, workers: int, deadline: float | None, failures: Any = None, generation: int = 0) -> None:
    """Entry point of a worker process (see WorkerPool): set up, run trials; exit 0, or 130 on Ctrl-C.

    After a CUDA error other than out of memory it puts ``(worker, "trial N (error)")`` on
    ``failures`` and exits ``CUDA_ERROR_EXIT``: its CUDA context is unusable, a fresh process
    takes its slot. An exception that escapes ``work`` (trials' own exceptions do not: they fail
    their trial) is put on ``failures`` as ``(worker, one-line reason)``, logged with its
    traceback, and the process exits 1: the search stops with that reason.
    """
    import sys

    try:
        engine.setup_worker(job, worker=worker, workers=workers)
        interrupted = work(job, deadline=deadline, worker=worker, sampler_slot=worker + generation * workers)
    except KeyboardInterrupt:
        interrupted = True
    except CudaErrorStopped as err:
        _log.error("worker %d stopped after a CUDA error in %s", worker, err.what)
        if failures is not None:
            failures.put((worker, err.what))
        sys.exit(CUDA_ERROR_EXIT)
    except Exception as err:
        _log.error("worker %d stopped", worker, exc_info=err)
        if failures is not None:
            failures.put((worker, worker_failure(err, where=job.run_dir)))
        sys.exit(1)
    sys.exit(130 if interrupted else 0)


class LocalEngine(Engine):
    """Optuna's samplers on this machine: trials in this process, or in ``job.workers`` processes."""

    name = "optuna"
    assigns_gpus = True

    def writers(self, job: SearchJob) -> int:
        """``job.workers``, or by default ``search.trials_per_gpu`` per GPU (``default_workers``): 1 on the CPU."""
        if job.workers is not None:
            return job.workers
        device = job.evaluator.device
        if device is None:  # a replayed table trains nothing
            return 1
        return default_workers(device, gpus=job.gpus, trials_per_gpu=job.settings.trials_per_gpu)

    def started(self, job: SearchJob) -> dict[str, Any]:
        return {**super().started(job), "processes": self.writers(job)}

    def run(self, job: SearchJob, study: optuna.Study, *, progress: bool, deadline: float | None) -> bool:
        bar = progress_bar(job, study, progress=progress)
        try:
            if self.writers(job) == 1:
                return work(job, deadline=deadline, bar=bar)
            return self._run_workers(job, study, deadline=deadline, bar=bar)
        finally:
            bar.close()

    def _run_workers(self, job: SearchJob, study: optuna.Study, *, deadline: float | None, bar: Any) -> bool:
        """Run the worker processes on the study (see WorkerPool); the bar follows the study. True when interrupted."""
        return WorkerPool(_worker_main, self, job, study, deadline=deadline).run(bar)
