"""The search domain: which values each particle axis may take, fixed or searched.

The domain is plain data; ``SearchSpace.sample`` asks a ``choose`` callback for
each axis that applies, so any search engine (Optuna, Ray, a grid) can drive it
without this module knowing about it.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

from ._errors import SpecError
from ._registry import get_factorization
from ._spec import DEFAULT_EXPANSION, EXPANDING_WIRINGS, FACTORIZATIONS, INCEPTION_FIELDS, NO_TEMPORAL_KERNEL, RECURRENT, ParticleSpec

# Inception's list-valued fields: a space may fix them (one list), not search them; branch_widths (absolute, for presets) is no axis.
FIXED_LIST_AXES = frozenset({"branch_fractions", "reduce_fractions"})
AXES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ParticleSpec) if f.name != "branch_widths")
MAX_RANGE_VALUES = 10_000  # a stepped range may hold at most this many values


def _min_temporal_kernel(factorization: str) -> int:
    """The smallest temporal kernel ``factorization`` accepts (1 for a name no entry has: the spec refuses it later)."""
    return get_factorization(factorization).min_temporal_kernel if factorization in FACTORIZATIONS else 1


def _reads(factorization: str) -> tuple[str, ...]:
    return get_factorization(factorization).reads if factorization in FACTORIZATIONS else ()


# Fields only one factorization reads (its registry entry's ``reads``): asked only when the particle has it.
_READ_BY_ONE = frozenset(name for factorization in FACTORIZATIONS for name in _reads(factorization))


def _check_context(name: str, value: Any) -> dict[str, Any]:
    """Other fields set so that one axis value can be checked on its own."""
    if name == "temporal_kernel":
        return {"factorization": "full"}
    if name == "expansion":
        return {"wiring": "bottleneck"}
    if name == "factorization":
        return {"temporal_kernel": 1 if value in NO_TEMPORAL_KERNEL else max(3, _min_temporal_kernel(value))}
    if name in INCEPTION_FIELDS:
        return {"wiring": "inception"}
    return {}


@dataclass(frozen=True)
class Axis:
    """One axis: a list of ``choices`` (categorical), or a numeric range ``low..high`` by ``step``."""

    name: str
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False

    @property
    def is_fixed(self) -> bool:
        return self.choices is not None and len(self.choices) == 1

    @property
    def is_int(self) -> bool:
        return self.choices is None and all(isinstance(v, int) and not isinstance(v, bool) for v in (self.low, self.high, self.step or 1))

    def values(self) -> tuple[Any, ...]:
        """Every value of the axis (a range is enumerated by its step)."""
        if self.choices is not None:
            return self.choices
        step = self.step if self.step is not None else (1 if self.is_int else None)
        if step is None:
            raise SpecError(f"space.{self.name}", "needs a step to be enumerated", {"low": self.low, "high": self.high})
        count = int(math.floor((self.high - self.low) / step + 1e-9)) + 1
        values = [self.low + i * step for i in range(count)]
        return tuple(int(v) if self.is_int else round(v, 12) for v in values)

    def restricted(self, keep: Callable[[Any], bool], suffix: str) -> Axis:
        """The axis limited to the values ``keep`` accepts, renamed when that changes its values."""
        values = tuple(v for v in self.values() if keep(v))
        if values == self.values():
            return self
        if not values:
            raise SpecError(f"space.{self.name}", f"has no value allowed {suffix}", list(self.values()))
        return Axis(name=f"{self.name}@{suffix}", choices=values)

    def to_yaml(self) -> Any:
        if self.choices is not None:
            value = self.choices[0] if self.is_fixed else list(self.choices)
            return list(value) if isinstance(value, tuple) else value
        out = {"low": self.low, "high": self.high}
        if self.step is not None:
            out["step"] = self.step
        if self.log:
            out["log"] = True
        return out


def _parse_axis(name: str, raw: Any) -> Axis:
    where = f"space.{name}"
    if name in FIXED_LIST_AXES:
        if not isinstance(raw, (list, tuple)) or any(isinstance(v, (list, tuple, Mapping)) for v in raw):
            raise SpecError(where, "must be one list of numbers (a fixed value: it is not searched)", raw)
        _check_value(name, tuple(raw))
        return Axis(name=name, choices=(tuple(raw),))
    if isinstance(raw, Mapping):
        unknown = sorted(set(map(str, raw)) - {"low", "high", "step", "log"})
        if unknown:
            raise SpecError(where, "must be a value, a list of values, or {low, high, step, log}", dict(raw))
        if "low" not in raw or "high" not in raw:
            raise SpecError(where, "range needs both low and high", dict(raw))
        low, high, step = raw["low"], raw["high"], raw.get("step")
        for label, v in (("low", low), ("high", high), ("step", step)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
                raise SpecError(f"{where}.{label}", "must be a finite number", v)
        if low > high:
            raise SpecError(where, f"low <= high must hold (low={low}, high={high})", dict(raw))
        if step is not None and step <= 0:
            raise SpecError(f"{where}.step", "must be > 0", step)
        if step is not None and (high - low) / step > MAX_RANGE_VALUES:
            raise SpecError(f"{where}.step", f"must leave at most {MAX_RANGE_VALUES} values between low and high", step)
        log = raw.get("log", False)
        if not isinstance(log, bool):
            raise SpecError(f"{where}.log", "must be true or false", log)
        if log and (low <= 0 or step is not None):
            raise SpecError(where, "log ranges need low > 0 and no step", dict(raw))
        axis = Axis(name=name, low=low, high=high, step=step, log=log)
        endpoints = (low, high)
    elif isinstance(raw, (list, tuple)):
        if not raw:
            raise SpecError(where, "must list at least one value", list(raw))
        if len(set(map(repr, raw))) != len(raw):
            raise SpecError(where, "must not repeat a value", list(raw))
        axis = Axis(name=name, choices=tuple(raw))
        endpoints = tuple(raw)
    else:
        axis = Axis(name=name, choices=(raw,))
        endpoints = (raw,)
    for value in endpoints:
        _check_value(name, value)
    return axis


def _check_value(name: str, value: Any) -> None:
    try:
        ParticleSpec(**{**_check_context(name, value), name: value})
    except SpecError as err:
        raise SpecError(f"space.{name}", err.rule, err.value) from None
    except TypeError:
        raise SpecError(f"space.{name}", "has a value of the wrong type", value) from None


# space.stages: one particle shared by every stage, or one sampled per stage.
STAGE_MODES: tuple[str, ...] = ("shared", "per_stage")


@dataclass(frozen=True)
class SearchSpace:
    """Which values each ``ParticleSpec`` axis may take. Axes not listed keep the spec default.

    With ``per_stage`` every stage of the network gets its own particle, drawn
    from the same axes under per-stage names (``stage0.factorization``, ...).
    """

    axes: tuple[Axis, ...]
    per_stage: bool = False  # space.stages: per_stage

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> SearchSpace:
        data = {} if data is None else data
        if not isinstance(data, Mapping):
            raise SpecError("space", "must be a mapping from particle axis to values", data)
        unknown = sorted(str(k) for k in data if k not in AXES and k != "stages")
        if unknown:
            raise SpecError(f"space.{unknown[0]}", f"is not a particle axis (or stages); axes are {list(AXES)}", data[unknown[0]])
        stages = data.get("stages", "shared")
        if stages not in STAGE_MODES:
            raise SpecError("space.stages", f"must be one of {STAGE_MODES}", stages)
        space = cls(axes=tuple(_parse_axis(name, data[name]) for name in AXES if name in data), per_stage=stages == "per_stage")
        space._check_combinations()
        return space

    def _check_combinations(self) -> None:
        factorizations = self.axis("factorization")
        kernels = self.axis("temporal_kernel")
        if factorizations is None or kernels is None:
            return
        for factorization in factorizations.values():
            least = _min_temporal_kernel(factorization)
            if least > 1 and not any(k >= least for k in kernels.values()):
                raise SpecError("space.temporal_kernel", f"must include a kernel >= {least} when factorization includes {factorization!r}", list(kernels.values()))
        for name in ("temporal_kernel", "spatial_kernel"):
            axis = self.axis(name)
            if axis is not None and axis.choices is None:
                for value in axis.values():
                    _check_value(name, value)

    def to_dict(self) -> dict[str, Any]:
        data = {axis.name: axis.to_yaml() for axis in self.axes}
        if self.per_stage:
            data["stages"] = "per_stage"  # written only when set, so shared spaces read as before
        return data

    def axis(self, name: str) -> Axis | None:
        for axis in self.axes:
            if axis.name == name:
                return axis
        return None

    @property
    def searched(self) -> tuple[str, ...]:
        """Names of the axes with more than one value."""
        return tuple(a.name for a in self.axes if not a.is_fixed)

    def sample(self, choose: Callable[[Axis], Any]) -> ParticleSpec:
        """Build a particle, asking ``choose(axis)`` for every axis that applies to it.

        Axes that do not apply are not asked: ``temporal_kernel`` for a
        factorization without one, ``expansion`` for wirings without a width
        ratio. An axis whose values depend on an earlier choice (temporal kernels
        >= 3 for ``temporal_shift``) is asked under a distinct name
        (``temporal_kernel@temporal_shift``), so engines that require a fixed
        value set per name stay consistent. So is one whose meaning does:
        ``temporal_kernel@conv_gru`` sizes a recurrent particle's gate convs,
        so a model-based sampler does not pool it with the other factorizations' kernels.
        """
        values: dict[str, Any] = {}

        def pick(name: str) -> None:
            axis = self.axis(name)
            if axis is not None:
                values[name] = axis.choices[0] if axis.is_fixed else choose(axis)

        pick("factorization")
        pick("wiring")
        factorization = values.get("factorization", ParticleSpec.factorization)
        wiring = values.get("wiring", ParticleSpec.wiring)
        least = _min_temporal_kernel(factorization)
        for name in AXES:
            if name in ("factorization", "wiring"):
                continue
            axis = self.axis(name)
            if name == "temporal_kernel" and factorization in NO_TEMPORAL_KERNEL:
                values[name] = 1
            elif name == "temporal_kernel" and least > 1 and axis is not None:
                limited = axis.restricted(lambda k: k >= least, factorization)
                values[name] = limited.choices[0] if limited.is_fixed else choose(limited)
            elif name == "temporal_kernel" and axis is None and least > 1:
                values[name] = max(ParticleSpec.temporal_kernel, least)
            elif name == "temporal_kernel" and factorization in RECURRENT and axis is not None and not axis.is_fixed:
                values[name] = choose(dataclasses.replace(axis, name=f"temporal_kernel@{factorization}"))  # it sizes the gate convs
            elif name == "expansion" and wiring not in EXPANDING_WIRINGS:
                values[name] = 1.0
            elif name in _READ_BY_ONE and name not in _reads(factorization):  # another factorization's own field
                continue
            elif name in FIXED_LIST_AXES and wiring != "inception":
                continue
            elif axis is not None:
                pick(name)
        if "expansion" not in values:
            values["expansion"] = DEFAULT_EXPANSION[wiring]
        return ParticleSpec(**values)

    def sample_network(self, choose: Callable[[Axis], Any], *, stages: int) -> ParticleSpec | tuple[ParticleSpec, ...]:
        """The particle of a network of ``stages`` stages: one shared, or with ``per_stage`` one per stage.

        Per-stage particles are sampled axis by axis as ``sample`` does, each axis
        asked under a per-stage name (``stage1.temporal_kernel``), so engines see
        distinct parameters for each stage.
        """
        if not self.per_stage:
            return self.sample(choose)
        return tuple(self.sample(lambda axis, i=i: choose(dataclasses.replace(axis, name=f"stage{i}.{axis.name}"))) for i in range(stages))

    def grid(self) -> Iterator[ParticleSpec]:
        """Every distinct particle of the space (ranges enumerated by their step)."""
        names = [a.name for a in self.axes]
        seen: set[ParticleSpec] = set()
        for combo in itertools.product(*(a.values() for a in self.axes)):
            lookup = dict(zip(names, combo))

            def choose(axis: Axis) -> Any:
                base = axis.name.split("@")[0]
                value = lookup[base]
                return value if value in axis.values() else axis.values()[0]

            spec = self.sample(choose)
            if spec not in seen:
                seen.add(spec)
                yield spec
