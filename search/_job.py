"""A search is data: what to search (``SearchTask``) and how and where to run it (``RunOptions``), together a ``SearchJob``.

As Ray Tune separates ``TuneConfig`` (what is tuned) from ``RunConfig`` (where
the run lives), the task decides the trials' results and the study's
fingerprint, while the options decide only where the study is kept and how
many processes share it. All three are frozen and picklable: worker processes
and Ray get the job whole.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from particle_nas.evaluators import Evaluator
from particle_nas.space import NetworkSpec, SearchSpace

from ._layout import RunLayout
from ._settings import SearchSettings


@dataclass(frozen=True)
class SearchTask:
    """What to search: the space, the proxy network, the evaluator and the settings (the results depend on these alone)."""

    name: str  # the study's name
    space: SearchSpace
    network: NetworkSpec  # the proxy network; each trial replaces its particle
    evaluator: Evaluator
    settings: SearchSettings
    seed: int  # seeds the sampler, and every trial's weights and data order
    fingerprint: Mapping[str, Any]  # what decides trial results; a resumed study must match it
    config: Mapping[str, Any]  # the config document, stored on the study (particle-nas resume reads it)


@dataclass(frozen=True)
class RunOptions:
    """How and where to run it: the run directory, the study's storage, the processes and devices."""

    run_dir: Path  # the run directory (see RunLayout)
    storage: str | None = None  # a database URL; None: the run directory's study.db or study.journal (run resolves it)
    workers: int | None = 1  # optuna: worker processes (None: 1); ray: most trials at once (None: one per CPU)
    address: str | None = None  # ray: HOST:PORT of a running cluster; None: a local Ray
    gpus: tuple[int, ...] | None = None  # optuna: the GPUs workers spread over (worker i on gpus[i % len]); None: every visible GPU


_TASK = tuple(f.name for f in dataclasses.fields(SearchTask))
_OPTIONS = tuple(f.name for f in dataclasses.fields(RunOptions))


@dataclass(frozen=True, init=False)
class SearchJob:
    """A ``SearchTask`` run with ``RunOptions``; each of their fields reads as the job's own (``job.settings``, ``job.run_dir``).

    Made as ``SearchJob(task, options)``, or from the fields of both as keywords
    (``SearchJob(run_dir=..., name=..., ...)``); keywords given with a task or
    options replace those fields (so ``dataclasses.replace(job, workers=2)`` works).
    """

    task: SearchTask
    options: RunOptions

    def __init__(self, task: SearchTask | None = None, options: RunOptions | None = None, **fields: Any) -> None:
        unknown = sorted(set(fields) - set(_TASK) - set(_OPTIONS))
        if unknown:
            raise TypeError(f"SearchJob fields must be those of SearchTask or RunOptions, but got {unknown}.")
        task = _made(SearchTask, task, {k: v for k, v in fields.items() if k in _TASK})
        options = _made(RunOptions, options, {k: v for k, v in fields.items() if k in _OPTIONS})
        object.__setattr__(self, "task", task)
        object.__setattr__(self, "options", options)

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.run_dir)

    def replace(self, **fields: Any) -> SearchJob:
        """This job with ``fields`` (of the task or the options) changed."""
        return SearchJob(self.task, self.options, **fields)


def _reads(half: str, name: str) -> property:
    return property(lambda job: getattr(getattr(job, half), name), doc=f"``{half}.{name}``")


for _name in _TASK:  # the task's fields, then the options', read as the job's own
    setattr(SearchJob, _name, _reads("task", _name))
for _name in _OPTIONS:
    setattr(SearchJob, _name, _reads("options", _name))


def _made(cls: type, base: Any, changes: dict[str, Any]) -> Any:
    return cls(**changes) if base is None else dataclasses.replace(base, **changes)
