"""The cluster engine: Ray Tune trials driven by Optuna's multi-objective sampler through OptunaSearch.

The driver (this process) holds the Optuna study, in the same storage the
local backend uses (``runs/NAME/study.db``, or ``study.journal``), so the
trial table, the Pareto page, export and optuna-dashboard read a Ray run
exactly like a local one. Ray workers only train: each Tune trial gets a
particle, reports validation accuracy after every epoch (for early stopping) and its
full evaluation record at the end. Each trial goes through the same
``TrialRunner`` as on every engine (budgets, duplicates, constraints, failure
reasons): ``begin`` and ``end`` in the searcher, ``evaluate`` in the trainable
(see ``_ray_trials``).

Early stopping (``search.early_stopping: asha | mo-asha``): a Tune scheduler
(``_scheduler_class``) judges each trial at the rung epochs with the same
ranking as the local engine (``_early_stopping``): accuracy alone, or
accuracy and the analytic costs. Its rung records start from those the
study holds (a resumed run ranks against the trials of earlier runs), and the
searcher writes each trial's rungs back on its Optuna trial. A stopped trial
is told to Optuna as PRUNED, never COMPLETE, so its partial accuracy never
enters the Pareto front; the sampler sees it as finished at the accuracy it
stopped with (``SearchedOnlySampler``), as on the local engine. Pruned trials
count toward ``search.trials``.
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from ._early_stopping import early_stopping
from ._engine import Engine
from ._job import SearchJob
from ._layout import RunLayout
from ._sampler import make_sampler
from ._storage import open_storage
from ._stopped import SearchStopped
from ._study import count_finished, fail_stale_trials
from ._trial import CUDA_INTERRUPTED

RAY_HINT = 'the ray backend needs Ray Tune: pip install "particle-nas[ray]" (or pip install "ray[tune]")'


def _import_ray():
    try:
        import ray
        from ray import tune
        from ray.tune.search.optuna import OptunaSearch
    except ImportError as err:  # a ValueError, so the CLI prints one line with the hint
        raise ValueError(f"{RAY_HINT} ({err})") from None
    return ray, tune, OptunaSearch


def _searcher_class() -> type:
    """``ParticleOptunaSearch`` (see ``_ray_trials``), once Ray Tune is known to be installed."""
    _import_ray()
    from ._ray_trials import ParticleOptunaSearch

    return ParticleOptunaSearch


def _scheduler_class() -> type:
    """``RungScheduler`` (see ``_ray_trials``): ASHA / MO-ASHA for Tune."""
    _import_ray()
    from ._ray_trials import RungScheduler

    return RungScheduler


def _check_reachable(address: str) -> None:
    """Fail fast, in one line, when nothing listens at HOST:PORT (Ray itself retries for minutes)."""
    import socket

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"address must be HOST:PORT of a Ray head (ray start --head), but got {address!r}.")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as err:
        raise ValueError(f"address must be a running Ray head (ray start --head --port {port}), but connecting to {address!r} failed: {err}.") from None


def ray_experiment(layout: RunLayout) -> Path | None:
    """The Tune experiment ``run.json`` names as the last one (``ray_experiment``), to restore; None when it names none.

    A run directory may come from someone else, and ``Tuner.restore`` runs what the
    experiment it reads holds: the name must resolve to a folder directly inside the
    run's own ``ray/`` (itself inside the run directory). ``../../elsewhere``, an
    absolute path, or a symlink pointing out is refused in one line (ValueError).
    """
    last = layout.read_run_file().get("ray_experiment")
    if last is None or last == "":
        return None
    experiments = layout.ray_dir
    where = f"run.json's ray_experiment must name a Tune experiment inside {experiments}, but got {last!r}"
    if not isinstance(last, str) or "\0" in last:
        raise ValueError(f"{where}.")
    path = experiments / last
    if experiments.resolve().parent != layout.root.resolve() or path.resolve().parent != experiments.resolve():
        raise ValueError(f"{where} (resolving to {path.resolve()}).")
    return path


class RayEngine(Engine):
    """Ray Tune trials (a local Ray, or the cluster at ``job.address``); the driver holds the study.

    Trials ask ``settings.resources_per_trial`` (default one CPU), so Ray runs
    one trial per CPU at most; ``job.workers`` caps that. A run interrupted
    mid-way is resumed with ``Tuner.restore`` of its last Tune experiment
    (``RUN/ray/``), then topped up to the target. A Ray the caller already
    initialized is used and left running.
    """

    name = "ray"

    def started(self, job: SearchJob) -> dict[str, Any]:
        return {**super().started(job), "address": job.address}

    def check(self, job: SearchJob) -> None:
        _import_ray()
        ray_experiment(job.layout)  # a crafted run.json is refused before Ray starts
        if job.address and job.address != "auto":
            _check_reachable(job.address)

    def run(self, job: SearchJob, study: optuna.Study, *, progress: bool, deadline: float | None) -> bool:
        ray, tune, _ = _import_ray()

        layout = job.layout
        resources = job.settings.resources_per_trial or {"cpu": 1.0, "gpu": 0.0}
        from ._ray_trials import _train_particle

        trainable = tune.with_resources(tune.with_parameters(_train_particle, job=job), resources)
        # Per-epoch reports carry val_accuracy only; the objectives come with the final report.
        os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
        started_here = not ray.is_initialized()
        if started_here:
            try:
                ray.init(address=job.address, include_dashboard=False, log_to_driver=False, configure_logging=False)
            except (ConnectionError, RuntimeError) as err:
                where = f"the cluster at {job.address!r} (started with `ray start --head`?)" if job.address else "a local Ray instance"
                raise ValueError(f"the ray backend must reach {where}, but it failed: {' '.join(str(err).split())[:300]}") from None
        try:
            last = ray_experiment(layout)
            if last is not None and tune.Tuner.can_restore(str(last)) and (deadline is None or time.time() < deadline):
                try:
                    tune.Tuner.restore(str(last), trainable=trainable, resume_unfinished=True, resume_errored=False, restart_errored=False).fit()
                except (KeyboardInterrupt, ValueError):
                    raise
                except Exception as err:  # the study still holds every told trial: go on from it with a fresh experiment
                    print(f"particle-nas: restoring Tune experiment {last.name} failed ({type(err).__name__}); continuing from the study", file=sys.stderr)
            self._fit_to_target(job, study, tune, trainable, progress=progress, deadline=deadline)
        finally:
            if started_here:
                ray.shutdown()
        return False

    def _fit_to_target(self, job: SearchJob, study: optuna.Study, tune: Any, trainable: Any, *, progress: bool, deadline: float | None) -> None:
        """Fresh Tune experiments (``_fit``) until the study holds its target or the deadline passes.

        A trial interrupted by a CUDA error does not count, and its actor ran no further trial: while an
        experiment leaves such trials, the next one (in fresh actors, its sampler seeded anew so that it
        does not draw the same particles again) runs the missing trials. An experiment that finished none
        of its trials stops the search (SearchStopped): its GPUs are likely faulty.
        """
        for round_ in itertools.count():
            with job.layout.lock(storage=job.storage):  # asked by a restored or earlier experiment and never told
                fail_stale_trials(study, mine=True)
            finished, broken = count_finished(study), len(_cuda_reasons(study))
            remaining = job.settings.trials - finished
            if remaining <= 0 or (deadline is not None and time.time() >= deadline):
                return
            self._fit(job, tune, trainable, remaining=remaining, seed=job.seed + round_, progress=progress, deadline=deadline)
            reasons = _cuda_reasons(study)
            if len(reasons) == broken:  # nothing to make up for: what is missing, the summary says
                return
            if count_finished(study) == finished:
                raise SearchStopped(
                    f"the last Ray experiment finished no trial: {len(reasons) - broken} stopped after a CUDA error (the last: {reasons[-1]}), "
                    f"so the GPUs are likely faulty; every trial the study holds is kept: particle-nas resume {job.run_dir} goes on"
                )

    def _fit(self, job: SearchJob, tune: Any, trainable: Any, *, remaining: int, seed: int, progress: bool, deadline: float | None) -> None:
        """One fresh Tune experiment (``RUN/ray/tune-K``, named in run.json for resume) of ``remaining`` trials."""
        from ._ray_trials import _DefineParticle

        settings, experiments = job.settings, job.layout.ray_dir
        experiment = f"tune-{len(list(experiments.glob('tune-*'))) if experiments.is_dir() else 0}"
        job.layout.write_run_file(ray_experiment=experiment)
        searcher = _searcher_class()(
            space=_DefineParticle(job),
            metric=list(settings.objectives),
            mode=["max" if d == "maximize" else "min" for d in settings.directions],
            sampler=make_sampler(settings, seed=seed, job=job),
            study_name=job.name,
            storage=open_storage(str(job.storage)),  # OptunaSearch takes a storage object, not a URL
            job=job,
            target=settings.trials,
            deadline=deadline,
        )
        stopping = early_stopping(settings, evaluator=job.evaluator)
        # No rung at the last epoch: a trial that trained every epoch lives to send its final report (the record).
        scheduler = None if stopping is None else _scheduler_class()(job, stopping)
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=remaining, max_concurrent_trials=job.workers, reuse_actors=True),
            run_config=tune.RunConfig(name=experiment, storage_path=str(experiments), verbose=1 if progress else 0),
        )
        tuner.fit()


def _cuda_reasons(study: optuna.Study) -> list[str]:
    """The fail reasons of the trials of ``study`` that a CUDA error interrupted, in trial order."""
    reasons = [str(t.user_attrs.get("fail_reason", "")) for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))]
    return [reason for reason in reasons if reason.startswith(CUDA_INTERRUPTED)]
