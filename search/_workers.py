"""The local engine's worker processes: one per slot, watched until they end; a fresh process in the slot of one a CUDA error stopped.

A worker's exit status says how it ended: 0 done (the study holds its target, or the deadline
passed); 130 Ctrl-C; ``CUDA_ERROR_EXIT`` after a CUDA error other than out of memory (its CUDA
context is unusable, so a fresh process takes its slot, unless that slot's fresh process already
met one before completing a trial: the search stops, ``WorkerFailed``); 1 an error of its own (the
search stops with its reason, ``WorkerFailed``); negative, killed by a signal (its trial is
replaced, the other workers go on).
"""

from __future__ import annotations

import time
from typing import Any, Callable

import optuna
from optuna.trial import TrialState

from ._job import SearchJob
from ._stopped import SearchStopped
from ._storage import storage_full
from ._study import count_finished, target_reached
from ._trial import fail_reason, tqdm_write

CUDA_ERROR_EXIT = 75  # a worker stopped after a CUDA error: sysexits' EX_TEMPFAIL (a fresh process may succeed); not 1, an error of its own, nor 130, Ctrl-C


class WorkerFailed(SearchStopped):
    """A worker process of the search stopped with an error of its own (not a trial's): the search stops with its reason."""


def worker_failure(err: BaseException, *, where: Any = None) -> str:
    """One line for an exception that stopped a worker (a full disk is said so, with the free bytes of ``where``)."""
    full = storage_full(err, where=where)
    return full if full is not None else fail_reason(err)


class WorkerPool:
    """``engine.writers(job)`` processes on one study, each running ``target(engine, job, slot, workers, deadline, failures, generation)``.

    A worker puts ``(slot, one line)`` on ``failures`` before it exits with an error. Slot ``i`` keeps
    its index in a fresh process (its GPU: see ``Engine.setup_worker``); ``generation`` counts the
    processes the slot has had, so that a fresh one seeds its sampler anew rather than draw its
    predecessor's particles again.
    """

    def __init__(self, target: Callable[..., None], engine: Any, job: SearchJob, study: optuna.Study, *, deadline: float | None) -> None:
        import multiprocessing

        self._context = multiprocessing.get_context("spawn")
        self._failures = self._context.SimpleQueue()
        self._target, self._engine, self.job, self.study, self.deadline = target, engine, job, study, deadline
        workers = engine.writers(job)
        self.procs: list[Any] = [None] * workers
        self._generation = [-1] * workers
        self._reasons: dict[int, str] = {}  # slot -> the line its last process put on the queue
        self._judged: set[Any] = set()  # processes that ended and were looked at
        for slot in range(workers):
            self._start(slot)

    def _start(self, slot: int) -> None:
        self._generation[slot] += 1
        args = (self._engine, self.job, slot, len(self.procs), self.deadline, self._failures, self._generation[slot])
        self.procs[slot] = self._context.Process(target=self._target, args=args, daemon=False)
        self.procs[slot].start()

    def run(self, bar: Any) -> bool:
        """Watch the workers until every slot's last process has ended (the bar follows the study); True when interrupted.

        Ctrl-C, or a worker that failed (``WorkerFailed``, raised), stops the others.
        """
        try:
            while True:
                for proc in self.procs:
                    proc.join(timeout=0.5)
                self.check()  # may start a fresh process in a slot: looked at before "any alive"
                bar.update(max(0, min(count_finished(self.study), bar.total) - bar.n))
                if not any(proc.is_alive() for proc in self.procs):
                    break
        except KeyboardInterrupt:
            self.stop()
            return True
        except WorkerFailed:
            self.stop()
            raise
        return any(proc.exitcode == 130 for proc in self.procs)

    def stop(self) -> None:
        """Ctrl-C to each live worker (each fails its trial 'interrupted' and exits), then wait for all."""
        import os
        import signal

        for proc in self.procs:
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signal.SIGINT)
        for proc in self.procs:
            proc.join()

    def check(self) -> None:
        """Look at each worker that ended since the last look: a fresh process in the slot of one a CUDA error stopped,
        a line for one killed by a signal, WorkerFailed for one that stopped with an error of its own."""
        log = self.job.layout.log_file
        for slot, proc in enumerate(self.procs):
            if proc.is_alive() or proc.exitcode is None or proc in self._judged:
                continue
            self._judged.add(proc)
            while not self._failures.empty():  # read after the process ended: what it put is there
                worker, reason = self._failures.get()
                self._reasons[worker] = reason
            reason = self._reasons.pop(slot, f"exit status {proc.exitcode}")
            if proc.exitcode in (0, 130):
                continue
            if proc.exitcode < 0:
                tqdm_write(f"particle-nas: warning: worker {slot} (pid {proc.pid}) was killed by signal {-proc.exitcode}; its trial is replaced, the other workers go on")
            elif proc.exitcode == CUDA_ERROR_EXIT:
                self._replace(slot, proc, reason)
            else:
                when = "" if self._trials_of(proc) else " before its first trial"
                raise WorkerFailed(f"worker {slot} (pid {proc.pid}) stopped{when}: {reason} (traceback in {log})")

    def _replace(self, slot: int, proc: Any, what: str) -> None:
        """A fresh process in the slot of ``proc``, which a CUDA error in ``what`` ("trial N (error)") stopped, while trials are left.

        WorkerFailed when ``proc`` was itself a fresh process and completed no trial: the GPU is likely faulty.
        """
        if self._generation[slot] > 0 and not any(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in self._trials_of(proc)):
            raise WorkerFailed(
                f"worker {slot} (pid {proc.pid}) stopped after a CUDA error again before completing a trial, in {what}: its GPU is "
                f"likely faulty; every trial the study holds is kept: particle-nas resume {self.job.run_dir} once it is fixed (traceback in {self.job.layout.log_file})"
            )
        left = not target_reached(self.study, self.job.settings.trials) and (self.deadline is None or time.time() < self.deadline)
        then = "a fresh worker process takes its slot" if left else "no trial is left for a fresh worker process"
        tqdm_write(f"particle-nas: warning: worker {slot} (pid {proc.pid}) stopped after a CUDA error in {what}; {then}")
        if left:
            self._start(slot)

    def _trials_of(self, proc: Any) -> list[optuna.trial.FrozenTrial]:
        """The trials process ``proc`` asked for (each names its worker: host:pid:start)."""
        pid = f":{proc.pid}:"
        return [t for t in self.study.get_trials(deepcopy=False) if pid in str(t.user_attrs.get("worker", ""))]
