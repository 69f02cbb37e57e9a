"""Progressive expansion, in the spirit of X3D: grow a small network one axis at a time within a FLOPs budget.

Start from the smallest particle of the space (the first value of every
choice) in the configured proxy network and clip. At each step, try one step
along each axis:

- ``temporal_kernel``: the next kernel size (1 -> 3 -> 5 -> 7);
- ``width``: every stage width and the stem x1.5 (rounded up to a multiple of 4);
- ``depth``: one more particle in every stage;
- ``clip_length``: twice the frames;
- ``resolution``: height and width x1.5 (rounded up to a multiple of 4).

Each candidate is trained and counted like any trial (and recorded as one,
in the same study and table, with ``expansion`` naming the step and axis);
the candidate with the best accuracy gain per added FLOP becomes the new
network. Candidates whose analytic cost (``particle_nas.space.cost``, from
the spec: nothing is built) is over ``search.flops_budget`` are not tried.
Expansion stops when no step fits the budget, the study holds
``search.trials`` trials, or ``search.timeout`` has passed. The walk is deterministic; a resumed run replays it from the study
without training a network twice.
"""

from __future__ import annotations

import math
import time
from typing import Any

import optuna
from optuna.trial import TrialState

from particle_nas.space import NetworkSpec, ParticleSpec, SearchSpace
from particle_nas.space import cost as analytic_cost

from ._engine import Engine, progress_bar
from ._job import SearchJob
from ._study import count_finished, network_key
from ._runner import TrialRunner
from ._stopped import stop_after_cuda_error

AXES: tuple[str, ...] = ("temporal_kernel", "width", "depth", "clip_length", "resolution")
_KERNELS = (1, 3, 5, 7)


def _round4(x: float) -> int:
    return int(math.ceil(x / 4) * 4)


def smallest_particle(space: SearchSpace) -> ParticleSpec:
    """The first value of every choice, the low end of every range."""
    return space.sample(lambda axis: axis.choices[0] if axis.choices is not None else (int(axis.low) if axis.is_int else float(axis.low)))


def expand(network: NetworkSpec, axis: str) -> NetworkSpec | None:
    """``network`` one step larger along ``axis``; None when that axis cannot grow."""
    p = network.particle
    try:
        if axis == "temporal_kernel":
            bigger = [k for k in _KERNELS if k > p.temporal_kernel]
            if p.factorization == "spatial_only" or not bigger:
                return None
            return network.replace(particle=p.replace(temporal_kernel=bigger[0]))
        if axis == "width":
            return network.replace(widths=tuple(_round4(w * 1.5) for w in network.widths), stem_channels=_round4(network.stem_channels * 1.5))
        if axis == "depth":
            return network.replace(depths=tuple(d + 1 for d in network.depths))
        t, h, w = network.clip
        if axis == "clip_length":
            return network.replace(clip=(2 * t, h, w))
        if axis == "resolution":
            return network.replace(clip=(t, _round4(h * 1.5), _round4(w * 1.5)))
    except ValueError:  # a step that breaks a rule of the spec (e.g. a kernel the factorization refuses)
        return None
    raise ValueError(f"axis must be one of {AXES}, but got {axis!r}.")


class ProgressiveEngine(Engine):
    """The deterministic walk above, in this process; every candidate is a trial recorded like any other."""

    name = "progressive"

    def check(self, job: SearchJob) -> None:
        if job.settings.flops_budget is None:
            raise ValueError("search.flops_budget must be set for the progressive sampler, but got None.")
        if (job.workers or 1) != 1:
            raise ValueError(f"workers must be 1 for the progressive sampler (a deterministic walk in one process), but got {job.workers}.")

    def run(self, job: SearchJob, study: optuna.Study, *, progress: bool, deadline: float | None) -> bool:
        bar = progress_bar(job, study, progress=progress)
        try:
            self._walk(job, study, deadline=deadline, bar=bar)
        finally:
            bar.close()
        return False

    def _walk(self, job: SearchJob, study: optuna.Study, *, deadline: float | None, bar: Any) -> None:
        settings, runner = job.settings, TrialRunner(job)
        scored: dict[str, dict[str, Any]] = {}  # network -> record: a resumed walk replays these without training
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if isinstance(t.user_attrs.get("network"), dict):
                scored.setdefault(network_key(t.user_attrs["network"]), dict(t.user_attrs))

        def score(candidate: NetworkSpec, step: int, axis: str) -> dict[str, Any] | None:
            """The candidate's record: from the study when it was scored, else trained now as a new trial ({} when it failed)."""
            key = network_key(candidate)
            if key in scored:
                return scored[key]
            if count_finished(study) >= settings.trials or (deadline is not None and time.time() >= deadline):
                return None
            trial = study.ask()

            def training(number: int, network: NetworkSpec) -> None:
                bar.set_postfix_str(f"#{number} step {step} {axis} training", refresh=True)

            outcome = runner.run(trial, study=study, network=candidate, known={}, on_train=training, expansion={"step": step, "axis": axis})
            study.tell(trial, outcome.values, state=outcome.state)
            bar.update(1)
            stop_after_cuda_error(outcome.error, trial=trial.number, run_dir=job.run_dir)  # this process's CUDA context is broken
            if outcome.error is not None and not isinstance(outcome.error, Exception):
                raise outcome.error
            if outcome.state != TrialState.COMPLETE:
                return {}
            scored[key] = {**outcome.record, "particle": candidate.particle.to_dict(), "network": candidate.to_dict()}
            return scored[key]

        current = job.network.replace(particle=smallest_particle(job.space))
        base = score(current, 0, "start")
        path: list[dict[str, Any]] = []
        step = 0
        while base:
            step += 1
            best: tuple[float, NetworkSpec, str, dict[str, Any]] | None = None
            for axis in AXES:
                candidate = expand(current, axis)
                if candidate is None or job.evaluator.for_clip(candidate.clip) is None:
                    continue
                if analytic_cost(candidate).flops > settings.flops_budget:  # from the spec: nothing is built
                    continue
                record = score(candidate, step, axis)
                if not record:
                    continue
                added = max(1.0, float(record["flops"]) - float(base["flops"]))
                gain = (float(record["accuracy"]) - float(base["accuracy"])) / added
                if best is None or gain > best[0]:
                    best = (gain, candidate, axis, record)
            if best is None:
                break
            _, current, axis, base = best
            path.append({"step": step, "axis": axis, "accuracy": float(base["accuracy"]), "flops": float(base["flops"])})
            study.set_user_attr("expansion_path", path)
            bar.set_postfix_str(f"step {step}: {axis}, acc {float(base['accuracy']):.3f}", refresh=True)
