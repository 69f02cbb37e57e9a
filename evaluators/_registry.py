"""Every number an evaluation reports, once: its direction, trials.csv column, unit and how it is shown.

The search (objectives, constraints), the trials table, the Pareto front, the
dashboard and the CLI all read this registry; nothing else lists metric names
or directions. The constraint grammar shared by ``search.constraints`` and the
pick rules of ``particle-nas export --pick`` lives here too.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, NamedTuple

from particle_nas.space import SpecError

DIRECTIONS: tuple[str, ...] = ("maximize", "minimize")


def human(value: Any, unit: str = "") -> str:
    """A count in short units: ``human(12_345_678, "FLOPs") == "12.3 MFLOPs"``; "n/a" when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "n/a"
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}".rstrip()
    text = f"{value:.0f}" if value.is_integer() else f"{value:.3g}"
    return f"{text} {unit}".rstrip()


@dataclass(frozen=True)
class MetricInfo:
    """One reported number: which way is better, where it goes, how it reads."""

    name: str  # the key in an evaluation record, e.g. "latency_ms"
    direction: str  # "maximize" or "minimize"
    source: str  # the evaluator reporting it: cost | train | latency | zero_cost | size
    title: str  # axis title on plots
    unit: str = ""  # shown after the value ("FLOPs", "ms", "s")
    integer: bool = False  # a count (flops, params): shown without decimals
    objective: bool = True  # may be a search objective or constraint

    @property
    def column(self) -> str:
        """Its trials.csv column (the record key)."""
        return self.name

    @property
    def log_axis(self) -> bool:
        """Plotted on a log axis (counts spanning orders of magnitude)."""
        return self.integer

    def format(self, value: Any) -> str:
        """The value for a table or a label: counts in short units, accuracy with 4 decimals, others with 3 digits; "n/a" when missing."""
        try:
            number = float(value)
        except (TypeError, ValueError):  # None, pandas NA, text
            return "n/a"
        if math.isnan(number):
            return "n/a"
        if self.integer:
            return human(number, self.unit)
        return f"{number:.4f}" if self.name == "accuracy" else f"{number:.3g}"

    def exact(self, value: float) -> str:
        """The value in full, as an error message states it (a count without ".0")."""
        return str(int(value)) if self.integer and float(value).is_integer() else f"{value:.6g}"


_METRICS: tuple[MetricInfo, ...] = (
    MetricInfo("accuracy", "maximize", "train", "validation top-1 accuracy"),
    MetricInfo("flops", "minimize", "cost", "FLOPs per clip (multiply-adds)", unit="FLOPs", integer=True),
    MetricInfo("params", "minimize", "cost", "parameters", integer=True),
    MetricInfo("duration_s", "minimize", "train", "evaluation time (s)", unit="s", objective=False),
    MetricInfo("latency_ms", "minimize", "latency", "latency per clip (ms)", unit="ms"),
    MetricInfo("latency_batch_ms", "minimize", "latency", "latency per training batch (ms, CUDA only)", unit="ms", objective=False),
    MetricInfo("synflow", "maximize", "zero_cost", "synflow score"),
    MetricInfo("grad_norm", "maximize", "zero_cost", "gradient norm score"),
    MetricInfo("snip", "maximize", "zero_cost", "snip score"),
    MetricInfo("naswot", "maximize", "zero_cost", "naswot score"),
    MetricInfo("size_bytes", "minimize", "size", "stored size (bytes; int8 when the particle quantizes)", unit="B", integer=True),
)
METRIC_INFO: dict[str, MetricInfo] = {m.name: m for m in _METRICS}
# Names a search may optimize or constrain, with their direction.
OBJECTIVES: dict[str, str] = {m.name: m.direction for m in _METRICS if m.objective}
# The numbers beyond accuracy, FLOPs and params (latency, zero-cost scores, stored size), in trials.csv column order.
OPTIONAL_METRICS: tuple[str, ...] = tuple(m.name for m in _METRICS if m.source in ("latency", "zero_cost", "size"))
ZERO_COST: tuple[str, ...] = tuple(m.name for m in _METRICS if m.source == "zero_cost")


# ---------------------------------------------------------------- constraints
_NUMBER = r"[-+]?(?:\d[\d_]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_CONSTRAINT = re.compile(rf"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=|<|>)\s*({_NUMBER})\s*([kKMG]?)\s*$")
_SUFFIX = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9}
BOUNDS: tuple[str, ...] = ("<=", ">=")  # what search.constraints takes (Optuna's violation is <= 0 when it holds)
COMPARISONS: tuple[str, ...] = ("<=", ">=", "<", ">")  # what a pick rule takes


class Constraint(NamedTuple):
    """``NAME OP NUMBER`` on a reported metric, e.g. ``flops <= 2e9`` or ``params<100k``."""

    name: str  # a METRIC_INFO name
    op: str  # one of COMPARISONS
    bound: float
    text: str = ""  # as written, without spaces

    @classmethod
    def match(cls, text: Any, *, ops: tuple[str, ...] = COMPARISONS, names: Any = None) -> Constraint | None:
        """The constraint ``text`` states (NUMBER may end in k, M or G), or None when it is not one of ``names`` x ``ops``."""
        found = _CONSTRAINT.match(text) if isinstance(text, str) else None
        if found is None or found.group(2) not in ops or found.group(1) not in (OBJECTIVES if names is None else names):
            return None
        try:
            bound = float(found.group(3)) * _SUFFIX[found.group(4)]
        except ValueError:
            return None
        if not math.isfinite(bound):
            return None
        return cls(found.group(1), found.group(2), bound, text.replace(" ", "").strip())

    @classmethod
    def parse(cls, text: Any, *, field: str = "search.constraints") -> Constraint:
        """A search constraint (``<=`` or ``>=``), or SpecError naming ``field``."""
        constraint = cls.match(text, ops=BOUNDS)
        if constraint is None:
            raise SpecError(field, f"must be 'NAME <= NUMBER' or 'NAME >= NUMBER' with NAME one of {list(OBJECTIVES)}", text)
        return constraint

    def violation(self, value: float) -> float:
        """Optuna's convention: <= 0 when the constraint holds, else by how much it is broken."""
        return float(value) - self.bound if self.op in ("<=", "<") else self.bound - float(value)

    def holds(self, values: Any) -> Any:
        """Elementwise: whether each value satisfies it (NaN never does)."""
        import numpy as np

        values = np.asarray(values, dtype=float)
        return {"<=": np.less_equal, "<": np.less, ">=": np.greater_equal, ">": np.greater}[self.op](values, self.bound)

    @property
    def upper(self) -> bool:
        """An upper bound (``<=``, ``<``)."""
        return self.op in ("<=", "<")

    def __str__(self) -> str:
        return f"{self.name} {self.op} {self.bound:g}"
