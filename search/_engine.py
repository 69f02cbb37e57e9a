"""What an engine is, and what every engine's processes share: setting up a worker, the run's log, the progress bar."""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Sequence

import optuna

from particle_nas.evaluators import Evaluator, trial_device

from ._job import SearchJob
from ._storage import without_password
from ._study import count_finished

LOG_FORMAT = "%(asctime)s %(levelname)s [pid %(process)d] %(name)s: %(message)s"


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


def progress_bar(job: SearchJob, study: optuna.Study, *, progress: bool) -> Any:
    """A tqdm bar over the study's target, starting at the trials already finished."""
    from tqdm.auto import tqdm

    done = count_finished(study)
    return tqdm(total=job.settings.trials, initial=min(done, job.settings.trials), desc=job.name, unit="trial", disable=not progress, dynamic_ncols=True)

