"""The hypervolume yardstick: one definition of how much of the accuracy-cost plane a front covers.

A ``Yardstick`` names its cost, its scale and its box. On the default ``log``
scale a cost c sits at ``(log10 c - log10 low) / (log10 high - log10 low)``,
where ``low`` is the cheapest network of the space by the analytic cost
(``yardstick_for``: so that every run of one space is measured in one box) and
``high`` is 1.1 x its largest; accuracy runs from 0 to 1. The hypervolume is
the share of that unit box the front dominates, so 1.0 would be a perfect
network as cheap as the space's cheapest. The ``linear`` scale is the earlier
yardstick: cost from 0 to ``high`` on a linear axis, where a front of small
networks sits in the first few per cent of the box and the hypervolume is
mostly the best accuracy found (docs/particlebench.md: the yardstick).
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from particle_nas.space import NetworkSpec, SearchSpace, SpecError, check_choice, cost

SCALES: tuple[str, ...] = ("log", "linear")
REFERENCE_MARGIN = 1.1  # the box's cost edge: this x the largest cost (of the space, or of the trials seen)
COSTS: tuple[str, ...] = ("flops", "params")  # the costs the analytic model knows before training
ENUMERATE_UP_TO = 50_000  # spaces with at most this many particles are enumerated whole; larger ones sampled
SAMPLED = 20_000  # candidates the ehvi sampler draws from a larger space (seeded, so the same every time)
BOUNDS_SAMPLED = 4_000  # networks drawn from a larger space for its yardstick's cost bounds (seeded): a second or two at a study's start
YARDSTICK_ATTR = "yardstick"  # the study's user attribute holding the yardstick of its space (``Yardstick.to_dict``)


@dataclass(frozen=True)
class Yardstick:
    """How a hypervolume is measured: the cost axis (its name, scale and edges) of the box accuracy [0, 1] x cost."""

    cost: str = "flops"  # the cost column, e.g. flops
    scale: str = "log"  # see SCALES
    low: float = 1.0  # the box's cheap edge (log: the space's cheapest network; linear: 0)
    high: float = 10.0  # the box's costly edge, the reference point's cost
    bounds: str = "given"  # where low and high come from, in words

    def __post_init__(self) -> None:
        check_choice("yardstick.scale", self.scale, SCALES)
        if not (math.isfinite(self.high) and self.high > self.low):
            raise SpecError("yardstick.high", f"must be finite and above low ({self.low:g})", self.high)
        if self.scale == "log" and not self.low > 0:
            raise SpecError("yardstick.low", "must be above 0 on the log scale", self.low)
        if self.scale == "linear" and self.low < 0:
            raise SpecError("yardstick.low", "must be at least 0", self.low)

    def position(self, costs: Any) -> np.ndarray:
        """Where each cost sits on the box's cost axis: 0 at ``low``, 1 at ``high`` (costs outside lie outside [0, 1])."""
        c = np.asarray(costs, dtype=float)
        if self.scale == "linear":
            return (c - self.low) / (self.high - self.low)
        with np.errstate(divide="ignore"):
            return (np.log10(np.maximum(c, 1e-300)) - math.log10(self.low)) / (math.log10(self.high) - math.log10(self.low))

    def losses(self, accuracy: Any, costs: Any) -> np.ndarray:
        """Rows (-accuracy, position): both lower is better, the reference point (0, 1), the box of area 1."""
        return np.column_stack([-np.asarray(accuracy, dtype=float).reshape(-1), self.position(costs).reshape(-1)])

    def hypervolume(self, accuracy: Any, costs: Any) -> float:
        """The share of the box that the points (accuracy, cost) dominate."""
        return hypervolume_2d(self.losses(accuracy, costs), (0.0, 1.0))

    def running(self, accuracy: Sequence[float | None], costs: Sequence[float]) -> list[float]:
        """The hypervolume after each point; a point without accuracy (a trial stopped early) leaves it as it was."""
        acc = np.array([-math.inf if a is None else float(a) for a in accuracy], dtype=float)
        return running_hypervolume_2d(self.losses(acc, costs), (0.0, 1.0))

    def describe(self) -> str:
        """The yardstick in words, for a page or a table."""
        axis = f"log10 {self.cost}" if self.scale == "log" else f"{self.cost} (linear)"
        return (
            f"hypervolume on {axis} from {self.low:.4g} to {self.high:.4g} ({self.bounds}) and accuracy from 0 to 1, "
            f"a fraction of that box; reference point accuracy 0, {self.cost} {self.high:.4g}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {"cost": self.cost, "scale": self.scale, "low": self.low, "high": self.high, "bounds": self.bounds}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Yardstick:
        return cls(cost=str(data["cost"]), scale=str(data["scale"]), low=float(data["low"]), high=float(data["high"]), bounds=str(data.get("bounds", "given")))

    def with_scale(self, scale: str) -> Yardstick:
        """The same box's costly edge on another scale (linear starts at 0, as the earlier yardstick did)."""
        if scale == self.scale:
            return self
        bounds = self.bounds.replace("'s cheapest network to", " from 0 to") if scale == "linear" else self.bounds
        return Yardstick(cost=self.cost, scale=scale, low=0.0 if scale == "linear" else self.low, high=self.high, bounds=bounds)


def _grid_size(space: SearchSpace) -> int:
    return math.prod(len(a.values()) for a in space.axes)


def space_particles(space: SearchSpace, network: NetworkSpec, *, limit: int = ENUMERATE_UP_TO, sample: int = SAMPLED, seed: int = 0) -> tuple[list[Any], bool]:
    """The space's particles (one per stage for a per-stage space): all of them when at most ``limit`` combinations, else ``sample`` drawn at random (seeded).

    Returns (particles, whole) where ``whole`` says whether the list is the whole space.
    """
    stages = len(network.widths)
    if not space.per_stage and _grid_size(space) <= limit:
        return list(space.grid()), True
    rng = random.Random(seed)
    drawn = [space.sample_network(lambda axis: rng.choice(axis.values()), stages=stages) for _ in range(sample)]
    return list(dict.fromkeys(drawn)), False


def cost_bounds(space: SearchSpace, network: NetworkSpec, *, cost_name: str = "flops") -> tuple[float, float, bool]:
    """(cheapest, largest, exact) analytic ``cost_name`` of the space's networks in ``network``; exact when the space was enumerated whole."""
    check_choice("yardstick.cost", cost_name, COSTS)
    particles, whole = space_particles(space, network, sample=BOUNDS_SAMPLED)
    values = [float(getattr(cost(network.replace(particle=p)), cost_name)) for p in particles]
    return min(values), max(values), whole


def yardstick_for(space: SearchSpace, network: NetworkSpec, *, scale: str = "log", cost_name: str = "flops") -> Yardstick:
    """The yardstick of a space: cost from its cheapest network to 1.1 x its largest (analytic cost), on ``scale`` (linear: from 0)."""
    low, high, whole = cost_bounds(space, network, cost_name=cost_name)
    how = "the space's cheapest network to 1.1 x its largest, by the analytic cost" + ("" if whole else f", over {BOUNDS_SAMPLED} sampled networks")
    return Yardstick(cost=cost_name, scale="log", low=low, high=REFERENCE_MARGIN * high, bounds=how).with_scale(scale)


def observed_yardstick(costs: Sequence[float], *, scale: str = "log", cost_name: str = "flops") -> Yardstick:
    """A yardstick from the costs seen (a run whose space is unknown): the cheapest seen to 1.1 x the largest seen."""
    positive = [float(c) for c in costs if c is not None and float(c) > 0]
    low = min(positive) if positive else 1.0
    high = REFERENCE_MARGIN * max(positive) if positive else 10.0
    return Yardstick(cost=cost_name, scale="log", low=low, high=max(high, low * REFERENCE_MARGIN), bounds="the cheapest trial to 1.1 x the costliest, of the trials seen").with_scale(scale)


# ---------------------------------------------------------------- the area
def hypervolume_2d(points: np.ndarray, reference: tuple[float, float]) -> float:
    """Area dominated by ``points`` (rows of (loss_a, loss_b), lower is better) and bounded by ``reference``.

    Points not strictly better than the reference in both losses add nothing.
    """
    points = np.asarray(points, dtype=float).reshape(-1, 2)
    ref_a, ref_b = float(reference[0]), float(reference[1])
    points = points[(points[:, 0] < ref_a) & (points[:, 1] < ref_b)]
    if len(points) == 0:
        return 0.0
    points = points[np.lexsort((points[:, 1], points[:, 0]))]  # by first loss, ties by the second
    keep = points[:, 1] < np.minimum.accumulate(np.concatenate([[np.inf], points[:-1, 1]]))  # below every point before it
    front = points[keep]
    return _staircase(front[:, 0], front[:, 1], (ref_a, ref_b))


def _staircase(first: np.ndarray, second: np.ndarray, reference: tuple[float, float]) -> float:
    """The area under a front sorted by its first loss (the second then strictly decreases): a staircase of boxes up to ``reference``."""
    next_a = np.append(first[1:], reference[0])
    return float(np.sum((next_a - first) * (reference[1] - second)))


def running_hypervolume_2d(points: np.ndarray, reference: tuple[float, float]) -> list[float]:
    """The area dominated by ``points[: i + 1]`` for every i, in O(n x front).

    The front is kept sorted by the first loss (the second then strictly
    decreases). A point that some member weakly dominates, or that is not
    strictly better than the reference, leaves the area as it was (a bisection);
    otherwise it goes in, the members it dominates go out, and the area is summed
    again over the front.
    """
    points = np.asarray(points, dtype=float).reshape(-1, 2)
    ref_a, ref_b = float(reference[0]), float(reference[1])
    first: list[float] = []  # the front's first losses, ascending
    second: list[float] = []  # its second losses, descending
    areas, area = [], 0.0
    for a, b in points.tolist():
        if a < ref_a and b < ref_b:
            at = bisect.bisect_right(first, a)  # members before ``at`` have a first loss <= a
            if at == 0 or second[at - 1] > b:  # not weakly dominated by the member just before (the best of those in b)
                end = at
                while end < len(first) and second[end] >= b:  # members with first loss >= a that it dominates
                    end += 1
                if at and first[at - 1] == a:  # a member with the same first loss and a worse second one
                    at -= 1
                first[at:end], second[at:end] = [a], [b]
                area = _staircase(np.array(first), np.array(second), (ref_a, ref_b))
        areas.append(area)
    return areas


def front_steps(accuracy: Sequence[float], positions: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """The front of points (accuracy up, position down) as a staircase: positions ascending and the best accuracy at or below each.

    Returns (edges, level): on [edges[k], edges[k + 1]) (the last up to 1) the
    front reaches accuracy level[k]; before edges[0], 0.
    """
    order = sorted(zip(positions, accuracy))
    edges, level, best = [], [], 0.0
    for x, a in order:
        if a > best and x < 1.0:
            if edges and edges[-1] == x:
                level[-1] = a
            else:
                edges.append(max(x, 0.0))
                level.append(a)
            best = a
    return np.array(edges, dtype=float), np.array(level, dtype=float)
