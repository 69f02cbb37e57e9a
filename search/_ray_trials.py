"""What Ray runs of a trial, through the one ``TrialRunner``: ``begin`` in the searcher's define-by-run space (the driver),
``evaluate`` in the trainable (a Ray worker), ``end`` when the searcher hears the trial completed; and the rung scheduler.

Imports Ray Tune: only ``_ray`` imports this module, once it has checked that Ray is installed.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search.optuna import OptunaSearch

from particle_nas.evaluators import TrialStopped, is_cuda_error, ray_gpu_ids
from particle_nas.space import NetworkSpec, particle_from_record, particle_to_record

from ._early_stopping import EarlyStopping, early_stopping, prior_costs, rung_record, stored_rungs
from ._engine import trial_evaluator
from ._job import SearchJob
from ._runner import TrialRunner
from ._storage import open_storage
from ._study import target_reached
from ._trial import BASELINE_ATTR, fail_reason


@dataclass(frozen=True)
class _DefineParticle:
    """Ray's define-by-run space, run in the driver: sample a particle on the Optuna trial and prepare it there.

    The budget refusal and the duplicate check happen here, before Ray starts anything: the worker of a
    refused trial reports at once, and that of a duplicate reports the identical trial's record.
    """

    job: SearchJob

    def __call__(self, trial: Any) -> dict[str, str]:
        runner = TrialRunner(self.job)
        plan = runner.begin(trial, known=runner.known(trial.study))
        config = {"particle": json.dumps(particle_to_record(plan.network.particle))}
        if BASELINE_ATTR in trial.user_attrs:  # the scheduler never stops a baseline (see RungScheduler)
            config["baseline"] = str(trial.user_attrs[BASELINE_ATTR])
        if plan.action == "refused":
            config["refused"] = "1"
        elif plan.action == "reuse":
            config["reuse"] = json.dumps(plan.record)
        else:
            config["weights"] = str(plan.weights)
        return config


def _train_particle(config: dict[str, Any], job: SearchJob) -> None:
    """The Tune trainable: report ``val_accuracy`` per epoch, then the whole record (or the failure).

    After a CUDA error other than out of memory the actor's CUDA context is broken: the trainable
    reports the failure, then raises, so Tune ends the actor (it caches for reuse only the actor
    of a trial that ended without an error) and runs the next trial in a fresh one.
    """
    from ray import tune

    if "refused" in config:  # over budget: nothing is built
        tune.report({"finished": False, "refused": True})
        return
    if "reuse" in config:
        record = json.loads(config["reuse"])
        tune.report({"finished": True, "record": config["reuse"], "epoch": len(record.get("epoch_accuracy") or [1]), "val_accuracy": record["accuracy"]})
        return
    network = job.network.replace(particle=particle_from_record(json.loads(config["particle"])))

    start = time.perf_counter()

    def on_epoch(epoch: int, accuracy: float) -> None:  # elapsed_s: what a trial the scheduler stops here has cost
        tune.report({"epoch": epoch, "val_accuracy": float(accuracy), "finished": False, "elapsed_s": time.perf_counter() - start})

    try:
        evaluator = trial_evaluator(job.evaluator, ray_gpu_ids=ray_gpu_ids())  # the GPU Ray gave the trial is its cuda:0; none: the CPU
        evaluator.warm_up()  # paid by the first trial of a (reused) actor only
        record = TrialRunner(job).evaluate(network, weights=config["weights"], evaluator=evaluator, on_epoch=on_epoch)
    except Exception as err:
        tune.report({"finished": False, "fail_reason": fail_reason(err)})  # the searcher keeps it (on_trial_result)
        if is_cuda_error(err):
            raise
        return
    epochs = len(record.get("epoch_accuracy") or [1])
    tune.report({"finished": True, "record": json.dumps(record), "epoch": epochs, "val_accuracy": float(record["accuracy"])})


class ParticleOptunaSearch(OptunaSearch):
    """OptunaSearch that begins and ends each trial through the TrialRunner (its trainable evaluates it), and tells what ``end`` returns."""

    def __init__(self, *args: Any, job: SearchJob, target: int | None = None, deadline: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._runner = TrialRunner(job)
        self._epochs: dict[str, list[float]] = {}
        self._elapsed: dict[str, float] = {}  # seconds of training at a trial's last epoch report
        self._reasons: dict[str, str] = {}  # a trial's reported fail_reason: Tune ends an errored trial with no result
        self._target = target  # trials the study should hold; kept in the searcher's checkpoint for Tuner.restore
        self._deadline = deadline  # time.time() after which no trial starts
        self._stopping = early_stopping(job.settings, evaluator=job.evaluator)

    def _write_rungs(self, ot_trial: Any, epochs: list[float]) -> None:
        """Keep the trial's rung accuracies on its Optuna trial (where a resumed run's scheduler reads them)."""
        if self._stopping is None:
            return
        rungs = {str(r): epochs[r - 1] for r in self._stopping.rungs if r <= len(epochs)}
        if rungs:
            ot_trial.set_user_attr("rung_accuracy", rungs)
            ot_trial.set_user_attr("rung_costs", prior_costs(NetworkSpec.from_dict(ot_trial.user_attrs["network"])))

    def suggest(self, trial_id: str) -> Any:
        # A restored experiment would otherwise sample up to its original num_samples, on top of the
        # trials that finished since: stop asking once finished + running trials reach the target.
        past = self._deadline is not None and time.time() >= self._deadline
        full = self._target is not None and getattr(self, "_ot_study", None) is not None and target_reached(self._ot_study, self._target)
        if past or full:
            from ray.tune.search import Searcher

            return Searcher.FINISHED
        with warnings.catch_warnings():
            # A model-based sampler (gp fits a Gaussian process) decides inside the define-by-run space: those
            # seconds are the search's own, not training misplaced in the driver as Ray's warning supposes.
            warnings.filterwarnings("ignore", message="Define-by-run function passed in the `space` argument took", category=UserWarning)
            return super().suggest(trial_id)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if result.get("fail_reason"):
            self._reasons[trial_id] = str(result["fail_reason"])
        if "val_accuracy" in result and not result.get("finished"):
            epochs = self._epochs.setdefault(trial_id, [])
            epochs.append(float(result["val_accuracy"]))
            if "elapsed_s" in result:
                self._elapsed[trial_id] = float(result["elapsed_s"])
            if self._stopping is not None and len(epochs) in self._stopping.rungs and trial_id in self._ot_trials:
                self._write_rungs(self._ot_trials[trial_id], epochs)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is None or trial_id in self._completed_trials:
            return super().on_trial_complete(trial_id, result=result, error=error)
        try:
            return self._complete(trial_id, ot_trial, result, error)
        except optuna.exceptions.UpdateFinishedTrialError:  # a restored searcher replaying a trial told before the crash
            self._completed_trials.add(trial_id)
            self._epochs.pop(trial_id, None)
            self._reasons.pop(trial_id, None)
            return None

    def _complete(self, trial_id: str, ot_trial: Any, result: dict | None, error: bool) -> None:
        epochs = self._epochs.pop(trial_id, [])
        elapsed = self._elapsed.pop(trial_id, None)
        reported = self._reasons.pop(trial_id, None)
        if result and not result.get("finished") and "val_accuracy" in result and len(epochs) < int(result.get("epoch", 0)):
            epochs.append(float(result["val_accuracy"]))  # the report on which the scheduler stopped it
            elapsed = float(result.get("elapsed_s", elapsed or 0.0))
        if result and result.get("finished"):
            ended: Any = json.loads(result["record"])
        elif result and result.get("refused"):  # over budget: its reason was recorded when it was sampled
            ended = None
        elif result and result.get("fail_reason"):
            ended = str(result["fail_reason"])
        elif reported:  # it reported why it failed, then raised (a CUDA error: see _train_particle)
            ended = reported
        elif error:
            ended = "ray: the trial's worker failed (see the Ray logs)"
        elif epochs:  # stopped by the scheduler (ASHA, MO-ASHA) before its last epoch
            self._write_rungs(ot_trial, epochs)
            ended = self._stop(ot_trial, epochs, elapsed)
        else:
            return super().on_trial_complete(trial_id, result=None, error=False)
        outcome = self._runner.end(ot_trial, ended)
        if outcome.state == TrialState.COMPLETE:
            return super().on_trial_complete(trial_id, result=dict(zip(self._runner.job.settings.objectives, outcome.values)), error=False)
        return super().on_trial_complete(trial_id, result=None, error=outcome.state == TrialState.FAIL)

    def _stop(self, ot_trial: Any, epochs: list[float], elapsed: float | None) -> TrialStopped:
        """The scheduler's stop as the trial's ``TrialStopped``: its costs (as the local engine records them), seconds and accuracies."""
        stop = TrialStopped(epoch=len(epochs), epoch_accuracy=epochs, rule=self._stopping.name if self._stopping is not None else "the scheduler")
        stop.record.update({name: int(value) for name, value in prior_costs(NetworkSpec.from_dict(ot_trial.user_attrs["network"])).items()})
        if elapsed is not None:
            stop.record["duration_s"] = elapsed
        return stop


class RungScheduler(FIFOScheduler):
    """ASHA / MO-ASHA for Tune: each per-epoch report at a rung is ranked with ``EarlyStopping.keeps`` (the local engine's rule).

    Rung records: those the study held when the scheduler was made (earlier
    runs), then this run's trials in the order they reach the rung. A
    trial's costs come from its particle's analytic cost. A baseline trial
    (``baseline`` in its config) is ranked against but never stopped.
    """

    def __init__(self, job: SearchJob, stopping: EarlyStopping) -> None:
        super().__init__()
        self._job, self._stopping = job, stopping
        study = optuna.load_study(study_name=job.name, storage=open_storage(str(job.storage)))
        trials = study.get_trials(deepcopy=False)
        self._rungs: dict[int, dict[Any, dict[str, float]]] = {r: {("study", n): v for n, v in stored_rungs(trials, r).items()} for r in stopping.rungs}
        self._costs: dict[str, dict[str, float]] = {}

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return True  # ranks on val_accuracy and the costs, whatever the searcher's metrics

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        epoch = result.get("epoch")
        if result.get("finished") or "val_accuracy" not in result or epoch not in self._stopping.rungs:
            return TrialScheduler.CONTINUE
        if trial.trial_id not in self._costs:
            particle = particle_from_record(json.loads(trial.config["particle"]))
            self._costs[trial.trial_id] = prior_costs(self._job.network.replace(particle=particle))
        reached = self._rungs[epoch]
        reached[trial.trial_id] = rung_record(result["val_accuracy"], self._costs[trial.trial_id])
        if "baseline" in trial.config:  # a yardstick: ranked against, never stopped
            return TrialScheduler.CONTINUE
        return TrialScheduler.CONTINUE if self._stopping.keeps(trial.trial_id, epoch, reached) else TrialScheduler.STOP

