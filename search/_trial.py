"""One trial, whatever engine runs it: a particle in, a record of plain numbers out."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Callable, Mapping

from particle_nas.evaluators import Evaluator, is_cuda_error
from particle_nas.space import NetworkSpec, ParticleSpec

INTERRUPTED = "interrupted"  # fail_reason prefix of trials whose process stopped mid-trial
CUDA_INTERRUPTED = f"{INTERRUPTED}: the worker stopped after a CUDA error"  # ... " (TYPE: first line)": its process's CUDA context broke
BASELINE_ATTR = "baseline"  # a baseline trial's label (a name of space.BASELINES), set when it is queued
# User attributes that describe a trial rather than measure it.
DESCRIPTIVE_ATTRS = frozenset({"particle", "network", "duplicate_of", "fail_reason", "constraints", "feasible"})


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if hasattr(value, "item"):  # numpy / torch scalars
        return _plain(value.item())
    return str(value)


def evaluation_record(result: Any) -> dict[str, Any]:
    """The evaluator's result as a JSON-able mapping of metric name to value."""
    if hasattr(result, "to_dict"):
        data = result.to_dict()
    elif dataclasses.is_dataclass(result):
        data = dataclasses.asdict(result)
    elif isinstance(result, Mapping):
        data = dict(result)
    else:
        raise TypeError(f"an evaluator must return a mapping, a dataclass or an object with to_dict(), but got {type(result).__name__}.")
    return {str(k): _plain(v) for k, v in data.items()}


def objective_values(record: Mapping[str, Any], objectives: tuple[str, ...]) -> tuple[float, ...]:
    """The record's values for the study's objectives, in order; each must be a finite number."""
    values = []
    for name in objectives:
        if name not in record:
            raise ValueError(f"the evaluator must report every objective, but {name!r} is missing (it reported {sorted(record)}).")
        value = record[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"objective {name} must be a finite number, but got {value!r}.")
        values.append(float(value))
    return tuple(values)


def score_particle(
    particle: ParticleSpec,
    *,
    network: NetworkSpec,
    evaluator: Evaluator,
    seed: int,
    on_epoch: Callable[[int, float], None] | None = None,
    weights_path: Path | None = None,
) -> tuple[NetworkSpec, dict[str, Any]]:
    """Stack ``particle`` into ``network``, evaluate it, and return the spec and its record.

    ``weights_path`` is where the evaluator saves the trained weights (one that trains nothing ignores it).
    """
    spec = network.replace(particle=particle)
    return spec, evaluation_record(evaluator.evaluate(spec, seed=seed, on_epoch=on_epoch, weights_path=weights_path))


def stopped_reason(rule: str, epoch: int) -> str:
    """The reason of a trial stopped early (told PRUNED), whichever engine stopped it: "pruned: stopped by RULE after epoch N"."""
    return f"pruned: stopped by {rule or 'early stopping'} after epoch {epoch}"


def fail_reason(err: BaseException) -> str:
    """One short line for the trial table: "TYPE: first line of the message" (out of memory reads "TrialOutOfMemory: out of memory on ...").

    A CUDA error other than out of memory reads "interrupted: the worker stopped after a CUDA error (...)":
    the process's CUDA context is broken, so the process stops and the trial,
    not at fault, is run again (it does not count as finished).
    """
    if isinstance(err, KeyboardInterrupt):
        return f"{INTERRUPTED}: Ctrl-C"
    text = error_line(err)
    if is_cuda_error(err):
        return f"{CUDA_INTERRUPTED} ({text})"[:500]
    return text[:500]


def error_line(err: BaseException) -> str:
    """"TYPE: first line of the message"."""
    return f"{type(err).__name__}: {err}".splitlines()[0]


def tqdm_write(line: str) -> None:
    """Print above the progress bar (of this process or, in a worker, the parent's)."""
    import sys

    from tqdm.auto import tqdm

    tqdm.write(line, file=sys.stderr)
