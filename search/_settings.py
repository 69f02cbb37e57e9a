"""How a search runs (the ``search:`` section of a config), validated in one place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from particle_nas.evaluators import OBJECTIVES, Constraint
from particle_nas.space import SpecError, baseline_names, check_choice, check_int, check_number

SAMPLERS: tuple[str, ...] = ("ehvi", "gp", "nsga2", "tpe", "random", "distinct", "progressive")
BACKENDS: tuple[str, ...] = ("optuna", "ray")
EARLY_STOPPING: tuple[str, ...] = ("none", "asha", "mo-asha")
# The search settings a resumed run may change; everything else must match the study's fingerprint.
# trials_per_gpu only decides how many local workers share a GPU (every trial trains with the same seed), so it may change too.
RESUMABLE: tuple[str, ...] = ("trials", "timeout", "export", "resources_per_trial", "max_flops", "max_params", "trials_per_gpu")


@dataclass(frozen=True)
class SearchSettings:
    """How a search runs: which engine, how long, and what it optimizes."""

    backend: str = "optuna"  # see BACKENDS
    sampler: str = "auto"  # see SAMPLERS, or auto: ehvi (cost-aware, search/_cost_aware.py: the best on ParticleBench, docs/particlebench.md) when the objectives are accuracy and flops or params, else gp; every sampler is seeded from the run's seed
    trials: int = 20  # finished trials the study should hold (a resumed run only adds the missing ones)
    timeout: float | None = None  # seconds for this invocation; None = no limit
    objectives: tuple[str, ...] = ("accuracy", "flops")  # accuracy first, then costs to minimize
    population: int = 8  # nsga2: population size per generation; gp, tpe: random trials before the model, max(4, population)
    export: str = "knee"  # pick rule for best.yaml (knee, max-accuracy, "flops<=2e7", ...)
    resources_per_trial: dict | None = None  # ray only: {cpu: 1, gpu: 0} (fractions allowed); None = one CPU per trial
    early_stopping: str = "none"  # none | asha (ranks a rung by accuracy) | mo-asha (by accuracy and the costs): see _early_stopping
    grace_epochs: int = 2  # early stopping: the first rung's epoch (rungs at grace * reduction_factor**k); 2: on ParticleBench, epoch 1 ranks too poorly
    reduction_factor: int = 2  # early stopping: 1 / reduction_factor of the trials reaching a rung go on
    flops_budget: float | None = None  # progressive only: largest network FLOPs the expansion may reach
    max_flops: float | None = None  # budget: a candidate costing more multiply-adds is pruned before it is built; None = no limit
    max_params: float | None = None  # budget: a candidate with more parameters is pruned before it is built; None = no limit
    constraints: tuple[str, ...] = ()  # e.g. ["flops <= 2e9", "latency_ms <= 30"]: trials breaking one are infeasible
    trials_per_gpu: int = 1  # optuna only: worker processes training at once on each GPU (the default --workers is GPUs x this); no effect without CUDA
    baselines: bool | tuple[str, ...] = False  # true, false or names from space.BASELINES: hand-designed particles run first (they count toward trials)

    def __post_init__(self) -> None:
        p = "search."
        check_choice(p + "backend", self.backend, BACKENDS)
        check_choice(p + "sampler", self.sampler, ("auto", *SAMPLERS))
        check_int(p + "trials", self.trials, low=1, high=1_000_000)
        if self.timeout is not None:
            check_number(p + "timeout", self.timeout, low=0.0, low_open=True)
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
        analytic = len(objectives) == 2 and objectives[1] in ("flops", "params")  # accuracy and one cost known before training
        if self.sampler == "auto":  # the cost-aware sampler where it applies, Optuna's GP elsewhere
            object.__setattr__(self, "sampler", "ehvi" if analytic else "gp")
        if self.sampler in ("ehvi", "distinct") and not analytic:
            raise SpecError(p + "objectives", f"must be accuracy and one analytic cost (flops or params) for the {self.sampler} sampler", list(objectives))
        constraints = self.constraints
        if isinstance(constraints, str):
            constraints = (constraints,)
        if not isinstance(constraints, (list, tuple)):
            raise SpecError(p + "constraints", "must be a list such as ['flops <= 2e9', 'latency_ms <= 30']", self.constraints)
        for i, text in enumerate(constraints):
            Constraint.parse(text, field=f"{p}constraints[{i}]")
        object.__setattr__(self, "constraints", tuple(constraints))
        check_int(p + "population", self.population, low=2, high=10_000)
        if self.flops_budget is not None:
            check_number(p + "flops_budget", self.flops_budget, low=0.0, low_open=True)
        if self.sampler == "progressive" and (self.flops_budget is None or self.backend != "optuna"):
            raise SpecError(p + "flops_budget", "must be set for the progressive sampler (which runs on the optuna backend)", self.flops_budget)
        check_choice(p + "early_stopping", self.early_stopping, EARLY_STOPPING)
        if self.early_stopping != "none" and self.sampler == "progressive":
            raise SpecError(p + "early_stopping", "must be none for the progressive sampler", self.early_stopping)
        check_int(p + "grace_epochs", self.grace_epochs, low=1, high=1_000_000)
        check_int(p + "reduction_factor", self.reduction_factor, low=2, high=1_000)
        if self.resources_per_trial is not None:
            res = self.resources_per_trial
            if not isinstance(res, dict) or not set(res) <= {"cpu", "gpu"}:
                raise SpecError(p + "resources_per_trial", "must be a mapping with keys cpu and gpu", res)
            for key, value in res.items():
                check_number(f"{p}resources_per_trial.{key}", value, low=0.0)
            if res.get("cpu", 1) == 0 and res.get("gpu", 0) == 0:
                raise SpecError(p + "resources_per_trial", "must ask for some cpu or gpu", res)
            object.__setattr__(self, "resources_per_trial", {"cpu": float(res.get("cpu", 1)), "gpu": float(res.get("gpu", 0))})
        check_int(p + "trials_per_gpu", self.trials_per_gpu, low=1, high=64)
        if self.trials_per_gpu != 1 and self.backend == "ray":
            raise SpecError(p + "trials_per_gpu", "must be 1 with the ray backend (pack Ray trials on a GPU with resources_per_trial: {gpu: 0.25})", self.trials_per_gpu)
        for name in ("max_flops", "max_params"):
            if getattr(self, name) is not None:
                check_number(p + name, getattr(self, name), low=0.0, low_open=True)
        if not isinstance(self.baselines, bool):
            object.__setattr__(self, "baselines", baseline_names(self.baselines, field=p + "baselines"))  # checked, as a tuple
        if not isinstance(self.export, str) or not self.export.strip():
            raise SpecError(p + "export", "must be a pick rule such as knee, max-accuracy or 'flops<=2e7'", self.export)

    @property
    def baseline_names(self) -> tuple[str, ...]:
        """The baselines a new study starts with (none for the progressive sampler, which samples no particle)."""
        return () if self.sampler == "progressive" else baseline_names(self.baselines)

    @property
    def parsed_constraints(self) -> tuple[Constraint, ...]:
        return tuple(Constraint.parse(text) for text in self.constraints)

    @property
    def metrics(self) -> tuple[str, ...]:
        """Every reported number the search needs: the objectives, then the constrained ones."""
        names = list(self.objectives)
        names += [c.name for c in self.parsed_constraints if c.name not in names]
        return tuple(names)

    def constraint_values(self, record: dict[str, Any]) -> list[float]:
        """Violations (<= 0 is feasible) of every constraint for an evaluation record."""
        values = []
        for c in self.parsed_constraints:
            if c.name not in record:
                raise ValueError(f"the evaluator must report every constrained number, but {c.name!r} is missing (it reported {sorted(record)}).")
            values.append(c.violation(record[c.name]))
        return values

    @property
    def directions(self) -> list[str]:
        return [OBJECTIVES[name] for name in self.objectives]

    def over_budget(self, *, flops: int, params: int) -> str | None:
        """Why a candidate of this cost is refused (one line), or None when it fits the budget."""
        for name, value, limit in (("flops", flops, self.max_flops), ("params", params, self.max_params)):
            if limit is not None and value > limit:
                return f"over budget: {name} {value:,} > search.max_{name} {limit:,.0f}"
        return None

    def objective_records(self) -> list[dict[str, Any]]:
        return [{"name": name, "direction": OBJECTIVES[name]} for name in self.objectives]
