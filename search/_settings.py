from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from particle_nas.space import SpecError

OBJECTIVES: dict[str, str] = {"accuracy": "maximize", "flops": "minimize", "params": "minimize"}
SAMPLERS: tuple[str, ...] = ("nsga2", "tpe", "random")
BACKENDS: tuple[str, ...] = ("optuna",)


@dataclass(frozen=True)
class SearchSettings:
    """How a search runs: which engine, how long, and what it optimizes."""

    backend: str = "optuna"  # see BACKENDS
    sampler: str = "nsga2"  # see SAMPLERS; every sampler is seeded from the run's seed
    trials: int = 20  # finished trials the study should hold (a resumed run only adds the missing ones)
    timeout: float | None = None  # seconds for this invocation; None = no limit
    objectives: tuple[str, ...] = ("accuracy", "flops")  # accuracy first, then costs to minimize
    population: int = 8  # nsga2 only: population size per generation
    export: str = "knee"  # pick rule for best.yaml (knee, max-accuracy, "flops<=2e7", ...)

    def __post_init__(self) -> None:
        p = "search."
        if self.backend not in BACKENDS:
            raise SpecError(p + "backend", f"must be one of {BACKENDS}", self.backend)
        if self.sampler not in SAMPLERS:
            raise SpecError(p + "sampler", f"must be one of {SAMPLERS}", self.sampler)
        if isinstance(self.trials, bool) or not isinstance(self.trials, int) or not 1 <= self.trials <= 1_000_000:
            raise SpecError(p + "trials", "must be an integer in [1, 1000000]", self.trials)
        if self.timeout is not None and (
            isinstance(self.timeout, bool) or not isinstance(self.timeout, (int, float)) or not math.isfinite(self.timeout) or self.timeout <= 0
        ):
            raise SpecError(p + "timeout", "must be a positive number of seconds or null", self.timeout)
        objectives = self.objectives
        if isinstance(objectives, str) or not isinstance(objectives, (list, tuple)):
            raise SpecError(p + "objectives", f"must be a list drawn from {list(OBJECTIVES)}", objectives)
        objectives = tuple(objectives)
        unknown = [o for o in objectives if o not in OBJECTIVES]
        if unknown:
            raise SpecError(p + "objectives", f"must be drawn from {list(OBJECTIVES)}", list(objectives))
        if len(set(objectives)) != len(objectives) or len(objectives) < 2 or objectives[0] != "accuracy":
            raise SpecError(p + "objectives", "must start with accuracy and add at least one of flops, params, without repeats", list(objectives))
        object.__setattr__(self, "objectives", objectives)
        if isinstance(self.population, bool) or not isinstance(self.population, int) or not 2 <= self.population <= 10_000:
            raise SpecError(p + "population", "must be an integer in [2, 10000]", self.population)
        if not isinstance(self.export, str) or not self.export.strip():
            raise SpecError(p + "export", "must be a pick rule such as knee, max-accuracy or 'flops<=2e7'", self.export)

    @property
    def directions(self) -> list[str]:
        return [OBJECTIVES[name] for name in self.objectives]

    def objective_records(self) -> list[dict[str, Any]]:
        return [{"name": name, "direction": OBJECTIVES[name]} for name in self.objectives]
