"""One trial runner for every engine: the life of a trial from sample to record, in three phases.

- ``begin`` (where the trial is asked: the engine's process; Ray's searcher, in the driver):
  sample the network (or take the engine's candidate), record what the trial scores, then
  plan it: refused by the budget (from the analytic cost: nothing is built), reuse an
  identical network's record, or train.
- ``evaluate`` (where it trains: the same process, a worker process, a Ray trainable): the
  evaluator on the trial's clip, with its per-epoch reports (early stopping raises
  ``TrialStopped`` from one), the weights saved; the record checked to hold every
  objective and constrained number.
- ``end`` (where it is told): the record and its constraints written (COMPLETE), a trial
  stopped early written (PRUNED), or the failure's one-line reason (FAIL); it returns
  what to tell the study.

``run`` calls the three in one process (the local and progressive engines); the Ray engine
calls ``begin`` and ``end`` in its searcher and ``evaluate`` in its trainable. Engines only
decide when and where a trial runs, and tell the study what ``end`` returns.
"""

from __future__ import annotations

import logging
import types
from dataclasses import dataclass
from typing import Any, Callable, Mapping, NamedTuple

import optuna
from optuna.trial import TrialState

from particle_nas.evaluators import EpochReport, Evaluator, TrialStopped
from particle_nas.space import NetworkSpec, particle_to_record
from particle_nas.space import cost as analytic_cost

from ._job import SearchJob
from ._sampler import sample_network
from ._study import _ledger, measured, network_key
from ._early_stopping import EarlyStopping, study_on_epoch
from ._layout import RunLayout
from ._storage import worker_id
from ._trial import BASELINE_ATTR, fail_reason, objective_values, score_particle, stopped_reason, tqdm_write

_log = logging.getLogger("particle_nas.search")


class Plan(NamedTuple):
    """What to do with a sampled network: ``refused`` (over budget), ``reuse`` a record, or ``train``."""

    action: str  # "refused" | "reuse" | "train"
    record: dict[str, Any] | None = None  # reuse: the identical trial's record
    weights: str | None = None  # train: where its weights go, relative to the run directory
    network: NetworkSpec | None = None  # the network the trial scores


class TrialOutcome(NamedTuple):
    """What ``end`` recorded, and what to tell the study: ``state`` with ``values`` (COMPLETE only)."""

    state: TrialState
    values: tuple[float, ...] | None = None  # COMPLETE: the objectives, in order
    record: dict[str, Any] | None = None  # COMPLETE: what the trial measured (or reused)
    error: BaseException | None = None  # FAIL: what raised (None when the reason came as a line of text)


@dataclass(frozen=True)
class TrialRunner:
    """Runs a trial the same way on every engine: begin -> (refused | reuse | evaluate) -> end."""

    job: SearchJob

    def known(self, study: optuna.Study) -> Mapping[str, optuna.trial.FrozenTrial]:
        """COMPLETE trials by network, the first of each (the source of a duplicate); a read-only view.

        Kept per process and study (see _Ledger): each call visits only the
        trials added or finished since the last, by any process.
        """
        ledger = _ledger(study)
        with ledger.lock:
            ledger.look(study)
            return types.MappingProxyType(ledger.known)

    def over_budget(self, network: NetworkSpec) -> dict[str, Any] | None:
        """The attributes of a refused trial when the spec's analytic cost breaks the FLOPs/params budget, else None."""
        settings = self.job.settings
        if settings.max_flops is None and settings.max_params is None:
            return None
        cost = analytic_cost(network)  # from the spec: nothing is built
        refused = settings.over_budget(flops=cost.flops, params=cost.params)
        return None if refused is None else {"flops": cost.flops, "params": cost.params, "fail_reason": refused}

    # ------------------------------------------------------------ the phases
    def begin(self, trial: Any, network: NetworkSpec | None = None, *, known: Mapping[str, Any], **attrs: Any) -> Plan:
        """Sample ``trial``'s network (unless given), record what it scores (``attrs`` too), then plan: refused, reuse or train."""
        trial.set_user_attr("worker", worker_id())
        network = sample_network(self.job, trial) if network is None else network
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        trial.set_user_attr("particle", particle_to_record(network.particle))
        trial.set_user_attr("network", network.to_dict())
        refused = self.over_budget(network)
        if refused is not None:  # pruned from the analytic cost: nothing is built or trained
            for key, value in refused.items():
                trial.set_user_attr(key, value)
            return Plan("refused", network=network)
        source = known.get(network_key(network))
        if source is not None:
            trial.set_user_attr("duplicate_of", source.number)
            return Plan("reuse", record=measured(source.user_attrs), network=network)
        return Plan("train", weights=RunLayout.weights_name(trial.number), network=network)

    def evaluate(self, network: NetworkSpec, *, weights: str | None, evaluator: Evaluator | None = None, on_epoch: EpochReport | None = None) -> dict[str, Any]:
        """Train and score ``network`` (saving its weights), checked to report every objective and constrained number.

        The evaluator (``job.evaluator`` unless given) is put on the network's clip
        when it differs from the job's (the progressive engine grows the clip).
        """
        scorer = evaluator or self.job.evaluator
        if tuple(network.clip) != tuple(self.job.network.clip):
            scorer = scorer.for_clip(tuple(network.clip))
            if scorer is None:
                raise ValueError(f"the evaluator cannot change its clip to {list(network.clip)}")
        path = self.job.run_dir / weights if weights else None
        _, record = score_particle(network.particle, network=network, evaluator=scorer, seed=self.job.seed, on_epoch=on_epoch, weights_path=path)
        if path is not None and path.is_file():  # a duplicate copies this record, so it points at the same file
            record["weights"] = weights
        elif record.get("weights_error"):  # a full disk: the result stands, without its weights
            _log.warning("%s %s", weights, record["weights_error"])
            tqdm_write(f"particle-nas: warning: {weights} {record['weights_error']}; the trial keeps its result (export --weights will say so)")
        self.check(record)
        return record

    def end(self, trial: Any, result: Mapping[str, Any] | TrialStopped | BaseException | str | None) -> TrialOutcome:
        """Record how ``trial`` ended and return what to tell.

        ``result``: its record (COMPLETE, or FAIL when it lacks an objective);
        ``TrialStopped`` (PRUNED: stopped early); an exception or a one-line
        reason (FAIL); None when ``begin`` refused it (PRUNED: its reason is recorded).
        """
        if result is None:
            return TrialOutcome(TrialState.PRUNED)
        if isinstance(result, TrialStopped):
            self._stopped(trial, result)
            return TrialOutcome(TrialState.PRUNED)
        if isinstance(result, (BaseException, str)):
            self._fail(trial, result)
            return TrialOutcome(TrialState.FAIL, error=result if isinstance(result, BaseException) else None)
        try:
            values = self._finish(trial, result)
        except ValueError as err:  # a record without an objective or a constrained number
            self._fail(trial, err)
            return TrialOutcome(TrialState.FAIL, error=err)
        return TrialOutcome(TrialState.COMPLETE, values=values, record=dict(result))

    def run(
        self,
        trial: Any,
        *,
        study: optuna.Study,
        network: NetworkSpec | None = None,
        known: Mapping[str, Any] | None = None,
        stopping: EarlyStopping | None = None,
        on_train: Callable[[int, NetworkSpec], EpochReport | None] | None = None,
        **attrs: Any,
    ) -> TrialOutcome:
        """The three phases in this process: ``begin``, ``evaluate`` (judged by ``stopping`` at its rungs), ``end``.

        ``on_train(number, network)`` is called when the trial is about to train and may
        return a per-epoch report (the progress bar). ``known`` defaults to the study's
        (``known``). A baseline is never stopped: a yardstick must reach the front.
        """
        try:
            plan = self.begin(trial, network, known=self.known(study) if known is None else known, **attrs)
            if plan.action == "refused":
                return self.end(trial, None)
            record = plan.record
            if record is None:
                on_epoch = on_train(trial.number, plan.network) if on_train is not None else None
                if stopping is not None:
                    on_epoch = study_on_epoch(stopping, study, trial, plan.network, then=on_epoch, judged=BASELINE_ATTR not in trial.user_attrs)
                record = self.evaluate(plan.network, weights=plan.weights, on_epoch=on_epoch)
        except BaseException as err:  # recorded on the trial; the engine decides whether the search goes on
            return self.end(trial, err)
        return self.end(trial, record)

    # ------------------------------------------------------------ what end writes
    def check(self, record: Mapping[str, Any]) -> tuple[tuple[float, ...], list[float]]:
        """The record's objective values and constraint violations; ValueError when it lacks one."""
        return objective_values(record, self.job.settings.objectives), self.job.settings.constraint_values(dict(record))

    def _finish(self, trial: Any, record: Mapping[str, Any]) -> tuple[float, ...]:
        """Write the record and the constraints on ``trial``; the values to tell."""
        values, violations = self.check(record)
        for key, value in record.items():
            trial.set_user_attr(key, value)
        settings = self.job.settings
        if settings.constraints:  # where Optuna's samplers and best_trials read them (<= 0 is feasible)
            for constraint, violation in zip(settings.parsed_constraints, violations):
                trial.set_constraint(str(constraint), violation)
            trial.set_user_attr("constraints", violations)
            trial.set_user_attr("feasible", all(v <= 0 for v in violations))
        return values

    def _stopped(self, trial: Any, stop: TrialStopped) -> None:
        """A trial stopped early (told PRUNED): what it measured, its per-epoch accuracies, where and why it stopped."""
        for key, value in stop.record.items():
            trial.set_user_attr(key, value)
        trial.set_user_attr("epoch_accuracy", list(stop.epoch_accuracy))
        trial.set_user_attr("stopped_at_epoch", stop.epoch)
        trial.set_user_attr("fail_reason", stopped_reason(stop.rule, stop.epoch))

    def _fail(self, trial: Any, err: BaseException | str) -> str:
        """Why ``trial`` failed (one line); Ctrl-C reads 'interrupted: Ctrl-C'. An exception is logged with its traceback."""
        reason = err if isinstance(err, str) else fail_reason(err)
        trial.set_user_attr("fail_reason", reason)
        if isinstance(err, Exception):
            _log.warning("trial %s failed: %s", trial.number, reason, exc_info=err)
            tqdm_write(f"trial {trial.number} failed: {reason}")
        return reason


TrialRecorder = TrialRunner  # the name engines used before the runner had its phases
