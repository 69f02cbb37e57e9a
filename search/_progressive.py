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
network. Candidates over ``search.flops_budget`` are not trained. Expansion
stops when no step fits the budget or the study holds ``search.trials``
trials. The walk is deterministic; a resumed run replays it from the study
without training a network twice.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Callable, Mapping

from optuna.trial import TrialState

from particle_nas.evaluators import count_cost
from particle_nas.space import NetworkSpec, ParticleSpec, SearchSpace, build_network

from ._optuna import SearchSummary, summarize, _fail_stale_trials, _is_finished, open_study
from ._settings import SearchSettings
from ._storage import resolve_storage, run_lock, worker_id
from ._trial import Evaluator, fail_reason, objective_values, score_particle

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


def evaluator_for_clip(evaluator: Evaluator, clip: tuple[int, int, int]) -> Evaluator | None:
    """The evaluator on clips of another size (an evaluator with a ``data`` config); None if it cannot change."""
    data = getattr(evaluator, "data", None)
    if data is None or not dataclasses.is_dataclass(evaluator) or not hasattr(data, "clip"):
        return None
    if tuple(data.clip) == tuple(clip):
        return evaluator
    return dataclasses.replace(evaluator, data=dataclasses.replace(data, clip=tuple(clip)))


def _key(network: NetworkSpec) -> str:
    return json.dumps(network.to_dict(), sort_keys=True)


def run_progressive(
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
    workers: int = 1,
    storage: str | None = None,
    on_step: Callable[[int, str, NetworkSpec, float, float], None] | None = None,
) -> SearchSummary:
    """Grow the network from the space's smallest particle until ``settings.flops_budget`` (see the module doc)."""
    if settings.flops_budget is None:
        raise ValueError("search.flops_budget must be set for the progressive sampler, but got None.")
    run_dir = Path(run_dir)
    location = resolve_storage(run_dir, url=storage)
    study = open_study(run_dir=run_dir, name=name, settings=settings, seed=seed, fingerprint=fingerprint, config=config, storage=location)
    with run_lock(run_dir):
        _fail_stale_trials(study)
    before = {t.number for t in study.get_trials(deepcopy=False) if _is_finished(t)}
    scored: dict[str, dict[str, Any]] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if isinstance(t.user_attrs.get("network"), dict):
            scored.setdefault(_key(NetworkSpec.from_dict(t.user_attrs["network"])), dict(t.user_attrs))
    interrupted = False

    def score(candidate: NetworkSpec, step: int, axis: str) -> dict[str, Any] | None:
        """The candidate's record: from the study when it was scored, else trained now as a new trial."""
        nonlocal interrupted
        key = _key(candidate)
        if key in scored:
            return scored[key]
        if sum(_is_finished(t) for t in study.get_trials(deepcopy=False)) >= settings.trials:
            return None
        trial = study.ask()
        trial.set_user_attr("worker", worker_id())
        trial.set_user_attr("expansion", {"step": step, "axis": axis})
        trial.set_user_attr("particle", candidate.particle.to_dict())
        trial.set_user_attr("network", candidate.to_dict())
        try:
            scorer = evaluator_for_clip(evaluator, candidate.clip)
            if scorer is None:
                raise ValueError(f"the evaluator cannot change its clip to {list(candidate.clip)}")
            _, record = score_particle(candidate.particle, network=candidate, evaluator=scorer, seed=seed)
            values = objective_values(record, settings.objectives)
        except BaseException as err:
            trial.set_user_attr("fail_reason", fail_reason(err))
            study.tell(trial, state=TrialState.FAIL)
            if isinstance(err, KeyboardInterrupt):
                interrupted = True
                raise
            if not isinstance(err, Exception):
                raise
            return {}
        for k, v in record.items():
            trial.set_user_attr(k, v)
        study.tell(trial, values)
        record = {**record, "particle": candidate.particle.to_dict(), "network": candidate.to_dict()}
        scored[key] = record
        return record

    try:
        current = network.replace(particle=smallest_particle(space), clip=network.clip)
        base = score(current, 0, "start")
        path: list[dict[str, Any]] = []
        step = 0
        while base:
            step += 1
            best: tuple[float, NetworkSpec, str, dict[str, Any]] | None = None
            for axis in AXES:
                candidate = expand(current, axis)
                if candidate is None:
                    continue
                scorer = evaluator_for_clip(evaluator, candidate.clip)
                if scorer is None:
                    continue
                if count_cost(build_network(candidate), input_shape=candidate.input_shape).flops > settings.flops_budget:
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
            if on_step is not None:
                on_step(step, axis, current, float(base["accuracy"]), float(base["flops"]))
    except KeyboardInterrupt:
        interrupted = True
    return summarize(name=name, location=location, before=before, settings=settings, interrupted=interrupted, elapsed=0.0)
