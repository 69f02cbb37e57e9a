"""The cluster engine: Ray Tune trials driven by Optuna's multi-objective sampler through OptunaSearch.

The driver (this process) holds the Optuna study, in the same storage the
local backend uses (``runs/NAME/study.db``, or ``study.journal``), so the
trial table, the Pareto page, export and optuna-dashboard read a Ray run
exactly like a local one. Ray workers only train: each Tune trial gets a
particle, reports validation accuracy after every epoch (for ASHA) and its
full evaluation record at the end; the searcher writes that record to the
Optuna trial's user attributes, as ``run_search`` does.

Early stopping (``search.early_stopping: asha``): ASHA stops a trial whose
per-epoch validation accuracy is in the bottom of its rung. A stopped trial
is told to Optuna as PRUNED, never COMPLETE, so its partial accuracy never
enters the Pareto front; Optuna's multi-objective samplers (NSGA-II, TPE)
learn only from COMPLETE trials, so ASHA saves training time on poor
particles while the sampler ranks full-budget results only. Pruned trials
count toward ``search.trials``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import optuna
from optuna.trial import TrialState

from particle_nas.space import NetworkSpec, SearchSpace, particle_from_record, particle_to_record

from ._optuna import SearchSummary, summarize, _fail_stale_trials, _is_finished, _known_particles, make_sampler, open_study, suggest
from ._settings import OBJECTIVES, SearchSettings
from ._storage import open_storage, read_run_file, resolve_storage, run_lock, worker_id, write_run_file
from ._trial import DESCRIPTIVE_ATTRS, Evaluator, fail_reason, objective_values, score_particle

RAY_HINT = 'the ray backend needs Ray Tune: pip install "particle-nas[ray]" (or pip install "ray[tune]")'


def _import_ray():
    try:
        import ray
        from ray import tune
        from ray.tune.search.optuna import OptunaSearch
    except ImportError as err:  # a ValueError, so the CLI prints one line with the hint
        raise ValueError(f"{RAY_HINT} ({err})") from None
    return ray, tune, OptunaSearch


@dataclass(frozen=True)
class _DefineParticle:
    """Ray's define-by-run space: sample a particle on the Optuna trial and record it there (runs in the driver)."""

    space: SearchSpace
    network: NetworkSpec
    run_dir: Path  # trained weights go to run_dir/weights (on the node that trains: share the run directory on a cluster)

    def __call__(self, trial: Any) -> dict[str, str]:
        particle = self.space.sample_network(lambda axis: suggest(trial, axis), stages=len(self.network.widths))
        trial.set_user_attr("worker", worker_id())
        trial.set_user_attr("particle", particle_to_record(particle))
        trial.set_user_attr("network", self.network.replace(particle=particle).to_dict())
        config = {"particle": json.dumps(particle_to_record(particle)), "run_dir": str(self.run_dir), "weights": f"weights/trial-{trial.number:05d}.safetensors"}
        source = _known_particles(trial.study.get_trials(deepcopy=False)).get(particle)
        if source is not None:  # an identical particle was scored: the worker reports its record without training
            trial.set_user_attr("duplicate_of", source.number)
            config["reuse"] = json.dumps({k: v for k, v in source.user_attrs.items() if k not in DESCRIPTIVE_ATTRS and k != "worker"})
        return config


@dataclass(frozen=True)
class _TrainJob:
    network: NetworkSpec
    evaluator: Evaluator
    seed: int
    objectives: tuple[str, ...]


def _train_particle(config: dict[str, Any], job: _TrainJob) -> None:
    """The Tune trainable: report ``val_accuracy`` per epoch, then the whole record (or the failure)."""
    from ray import tune

    if "reuse" in config:
        record = json.loads(config["reuse"])
        tune.report({"finished": True, "record": config["reuse"], "epoch": len(record.get("epoch_accuracy") or [1]), "val_accuracy": record["accuracy"]})
        return
    particle = particle_from_record(json.loads(config["particle"]))

    def on_epoch(epoch: int, accuracy: float) -> None:
        tune.report({"epoch": epoch, "val_accuracy": float(accuracy), "finished": False})

    try:
        weights = Path(config["run_dir"]) / config["weights"]
        _, record = score_particle(particle, network=job.network, evaluator=job.evaluator, seed=job.seed, on_epoch=on_epoch, weights_path=weights)
        if weights.is_file():  # as the local engine records it
            record["weights"] = config["weights"]
        objective_values(record, job.objectives)
    except Exception as err:
        tune.report({"finished": False, "fail_reason": fail_reason(err)})
        return
    epochs = len(record.get("epoch_accuracy") or [1])
    tune.report({"finished": True, "record": json.dumps(record), "epoch": epochs, "val_accuracy": float(record["accuracy"])})


def _searcher_class():
    _, _, OptunaSearch = _import_ray()

    class ParticleOptunaSearch(OptunaSearch):
        """OptunaSearch that records each trial's particle and evaluation record, and tells stopped trials as PRUNED."""

        def __init__(self, *args: Any, objectives: tuple[str, ...], target: int | None = None, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._objectives = tuple(objectives)
            self._epochs: dict[str, list[float]] = {}
            self._target = target  # trials the study should hold; kept in the searcher's checkpoint for Tuner.restore

        def suggest(self, trial_id: str) -> Any:
            # A restored experiment would otherwise sample up to its original num_samples, on top of the
            # trials that finished since: stop asking once finished + running trials reach the target.
            if self._target is not None and getattr(self, "_ot_study", None) is not None:
                trials = self._ot_study.get_trials(deepcopy=False)
                if sum(_is_finished(t) or t.state == TrialState.RUNNING for t in trials) >= self._target:
                    from ray.tune.search import Searcher

                    return Searcher.FINISHED
            return super().suggest(trial_id)

        def on_trial_result(self, trial_id: str, result: dict) -> None:
            if "val_accuracy" in result and not result.get("finished"):
                self._epochs.setdefault(trial_id, []).append(float(result["val_accuracy"]))

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            ot_trial = self._ot_trials.get(trial_id)
            if ot_trial is None or trial_id in self._completed_trials:
                return super().on_trial_complete(trial_id, result=result, error=error)
            try:
                return self._complete(trial_id, ot_trial, result, error)
            except optuna.exceptions.UpdateFinishedTrialError:  # a restored searcher replaying a trial told before the crash
                self._completed_trials.add(trial_id)
                self._epochs.pop(trial_id, None)
                return None

        def _complete(self, trial_id: str, ot_trial: Any, result: dict | None, error: bool) -> None:
            epochs = self._epochs.pop(trial_id, [])
            if result and not result.get("finished") and "val_accuracy" in result and len(epochs) < int(result.get("epoch", 0)):
                epochs.append(float(result["val_accuracy"]))  # the report on which the scheduler stopped it
            if result and result.get("finished"):
                record = json.loads(result["record"])
                for key, value in record.items():
                    ot_trial.set_user_attr(key, value)
                return super().on_trial_complete(trial_id, result={name: record[name] for name in self._objectives}, error=False)
            if result and result.get("fail_reason"):
                ot_trial.set_user_attr("fail_reason", result["fail_reason"])
                error = True
            elif error:
                ot_trial.set_user_attr("fail_reason", "ray: the trial's worker failed (see the Ray logs)")
            elif epochs:  # stopped by the scheduler (ASHA) before its last epoch
                ot_trial.set_user_attr("epoch_accuracy", epochs)
                ot_trial.set_user_attr("fail_reason", f"pruned: stopped by ASHA after epoch {len(epochs)}")
            return super().on_trial_complete(trial_id, result=None, error=error)

    return ParticleOptunaSearch


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


def run_ray_search(
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
    address: str | None = None,
    max_concurrent: int | None = None,
    storage: str | None = None,
) -> SearchSummary:
    """Run (or resume) a search as Ray Tune trials until the study holds ``settings.trials`` finished trials.

    ``address`` joins a running cluster (``ray start --head``); None starts a
    local Ray. Trials ask ``settings.resources_per_trial`` (default one CPU),
    so Ray runs one trial per CPU at most; ``max_concurrent`` caps that.
    A run interrupted mid-way is resumed with ``Tuner.restore`` of its last
    Tune experiment (``RUN/ray/``), then topped up to the target.
    """
    ray, tune, _ = _import_ray()
    from ray.tune.schedulers import ASHAScheduler

    if address and address != "auto":
        _check_reachable(address)
    run_dir = Path(run_dir).resolve()
    location = resolve_storage(run_dir, url=storage)
    study = open_study(run_dir=run_dir, name=name, settings=settings, seed=seed, fingerprint=fingerprint, config=config, storage=location)
    before = {t.number for t in study.get_trials(deepcopy=False) if _is_finished(t)}
    resources = settings.resources_per_trial or {"cpu": 1.0, "gpu": 0.0}
    job = _TrainJob(network=network, evaluator=evaluator, seed=seed, objectives=settings.objectives)
    trainable = tune.with_resources(tune.with_parameters(_train_particle, job=job), resources)
    experiments = run_dir / "ray"
    interrupted = False
    started = time.monotonic()
    # Per-epoch reports carry val_accuracy only; the objectives come with the final report.
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False, ignore_reinit_error=True)
    except (ConnectionError, RuntimeError) as err:
        where = f"the cluster at {address!r} (started with `ray start --head`?)" if address else "a local Ray instance"
        raise ValueError(f"the ray backend must reach {where}, but it failed: {' '.join(str(err).split())[:300]}") from None
    try:
        last = read_run_file(run_dir).get("ray_experiment")
        if last and tune.Tuner.can_restore(str(experiments / last)):
            try:
                tune.Tuner.restore(str(experiments / last), trainable=trainable, resume_unfinished=True, resume_errored=False, restart_errored=False).fit()
            except (KeyboardInterrupt, ValueError):
                raise
            except Exception as err:  # the study still holds every told trial: go on from it with a fresh experiment
                print(f"particle-nas: restoring Tune experiment {last} failed ({type(err).__name__}); continuing from the study", file=sys.stderr)
        with run_lock(run_dir):  # left RUNNING by a driver that died, or asked by the restored run and never told
            _fail_stale_trials(study, mine=True)
        finished = sum(_is_finished(t) for t in study.get_trials(deepcopy=False))
        remaining = settings.trials - finished
        if remaining > 0:
            experiment = f"tune-{len(list(experiments.glob('tune-*'))) if experiments.is_dir() else 0}"
            write_run_file(run_dir, ray_experiment=experiment)
            searcher = _searcher_class()(
                space=_DefineParticle(space=space, network=network, run_dir=run_dir),
                metric=list(settings.objectives),
                mode=["max" if OBJECTIVES[o] == "maximize" else "min" for o in settings.objectives],
                sampler=make_sampler(settings, seed=seed),
                study_name=name,
                storage=open_storage(location),  # OptunaSearch takes a storage object, not a URL
                objectives=settings.objectives,
                target=settings.trials,
            )
            scheduler = None
            if settings.early_stopping == "asha":
                epochs = getattr(getattr(evaluator, "train", None), "epochs", 100)
                # max_t one past the last epoch: ASHA stops a trial that reaches max_t, and a trial that trained
                # every epoch must live to send its final report (the record); the rungs stay 1, 2, 4, ... < epochs.
                scheduler = ASHAScheduler(metric="val_accuracy", mode="max", time_attr="epoch", max_t=max(1, epochs) + 1, grace_period=1, reduction_factor=2)
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(
                    search_alg=searcher,
                    scheduler=scheduler,
                    num_samples=remaining,
                    max_concurrent_trials=max_concurrent,
                    time_budget_s=settings.timeout,
                ),
                run_config=tune.RunConfig(name=experiment, storage_path=str(experiments), verbose=1 if progress else 0),
            )
            tuner.fit()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        ray.shutdown()
        with run_lock(run_dir):  # asked by this driver but never told (a Tune error): nothing runs them any more
            _fail_stale_trials(study, mine=True)
    return summarize(name=name, location=location, before=before, settings=settings, interrupted=interrupted, elapsed=time.monotonic() - started)
