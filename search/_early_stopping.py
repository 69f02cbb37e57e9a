"""Early stopping by successive halving, written once for every engine: ASHA on accuracy, or MO-ASHA on all objectives.

A trial is judged at each rung epoch ``grace * eta**k`` (``k = 0, 1, ...``,
below the last epoch): among the trials that reached that rung (running,
finished or stopped, in any process or run of the study), it goes on when
it is in the top ``ceil(n / eta)`` of the ``n`` of them, else it stops
(asynchronous successive halving, ASHA: a trial never waits for others).

The ranking is ``rank_order``: non-dominated sorting of the rung's points,
ties within a front broken by crowding distance (NSGA-II's), then by
trial number (the order trials were asked). ``asha`` ranks by the accuracy at the
rung alone; ``mo-asha`` (Syne Tune's MO-ASHA rule) ranks by the accuracy at
the rung and the study's costs known before training (``flops``, ``params``
from the analytic cost), so a cheap particle that learns slowly is kept
while it is on the rung's front.

The ranking is pure (no Optuna, no Ray). The engines keep the rung records:
the local engine on the trials' user attributes ``rung_accuracy`` (epoch ->
accuracy at each rung reached) and ``rung_costs`` (``study_on_epoch``), so
every worker process and a resumed run see them; Ray's scheduler in the
driver, seeded from the same attributes. A trial that should stop raises
``TrialStopped`` from its ``on_epoch``; the engine tells it PRUNED.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Mapping, Sequence

from particle_nas.evaluators import OBJECTIVES, TrialStopped
from particle_nas.space import NetworkSpec, SpecError, check_int
from particle_nas.space import cost as analytic_cost

from ._trial import stopped_reason

RULES: dict[str, str] = {"asha": "ASHA", "mo-asha": "MO-ASHA"}  # early_stopping -> the name a stopped trial's reason gives
# Costs known before training (from the spec's analytic cost): the ones MO-ASHA can rank a rung by.
PRIOR_COSTS: tuple[str, ...] = ("flops", "params")


# ---------------------------------------------------------------- ranking (pure)
def _dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` dominates ``b`` (every value minimized): no worse anywhere, better somewhere."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def nondominated_sort(points: Sequence[Sequence[float]]) -> list[int]:
    """The front of each point (0: non-dominated; 1: non-dominated once front 0 is removed; ...); every value minimized."""
    n = len(points)
    dominated_by = [0] * n  # how many points dominate i
    dominates: list[list[int]] = [[] for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            if _dominates(points[i], points[j]):
                dominates[i].append(j)
                dominated_by[j] += 1
            elif _dominates(points[j], points[i]):
                dominates[j].append(i)
                dominated_by[i] += 1
    front = [-1] * n
    current = [i for i in range(n) if dominated_by[i] == 0]
    level = 0
    while current:
        following = []
        for i in current:
            front[i] = level
            for j in dominates[i]:
                dominated_by[j] -= 1
                if dominated_by[j] == 0:
                    following.append(j)
        current, level = following, level + 1
    return front


def crowding_distance(points: Sequence[Sequence[float]]) -> list[float]:
    """NSGA-II's crowding distance of each point within ``points`` (one front): the ends of every objective get inf.

    Per objective, the points are sorted and each inner point adds the gap
    between its neighbours divided by the objective's range (an objective
    whose values are all equal adds nothing).
    """
    n = len(points)
    if n == 0:
        return []
    distance = [0.0] * n
    for m in range(len(points[0])):
        order = sorted(range(n), key=lambda i: points[i][m])
        low, high = points[order[0]][m], points[order[-1]][m]
        if high == low:
            continue
        distance[order[0]] = distance[order[-1]] = math.inf
        for k in range(1, n - 1):
            distance[order[k]] += (points[order[k + 1]][m] - points[order[k - 1]][m]) / (high - low)
    return distance


def rank_order(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices of ``points`` best first: by front, then larger crowding distance within the front, then index."""
    front = nondominated_sort(points)
    crowding = [0.0] * len(points)
    for level in set(front):
        members = [i for i in range(len(points)) if front[i] == level]
        for i, d in zip(members, crowding_distance([points[i] for i in members])):
            crowding[i] = d
    return sorted(range(len(points)), key=lambda i: (front[i], -crowding[i], i))


def promote(rung_records: Mapping[Hashable, Mapping[str, float]], objectives: Sequence[tuple[str, str]], eta: int) -> set[Hashable]:
    """The trials of one rung that go on: the top ``ceil(n / eta)`` of its ``n`` records by ``rank_order``.

    ``rung_records`` maps a trial (in the order the trials reached the rung)
    to its values; ``objectives`` are (name, "maximize" | "minimize") pairs.
    A record lacking an objective's value cannot be ranked on it: such a rung
    is ranked on the objectives every record holds.
    """
    keys = list(rung_records)
    if not keys:
        return set()
    usable = [(name, direction) for name, direction in objectives if all(name in rung_records[k] for k in keys)]
    if not usable:
        raise ValueError(f"the rung's records must hold at least one objective of {[n for n, _ in objectives]}, but got {dict(rung_records)}.")
    points = [[(-1.0 if direction == "maximize" else 1.0) * float(rung_records[k][name]) for name, direction in usable] for k in keys]
    keep = max(1, math.ceil(len(keys) / eta))
    return {keys[i] for i in rank_order(points)[:keep]}


# ---------------------------------------------------------------- the rule
@dataclass(frozen=True)
class EarlyStopping:
    """When and on what a trial is judged: ``rule`` (asha | mo-asha) at rungs ``grace * eta**k`` < ``epochs``."""

    rule: str  # see RULES
    objectives: tuple[str, ...]  # the study's objectives (accuracy first)
    epochs: int  # the training budget in epochs: no rung at or past it (the trial finishes)
    grace: int = 1  # the first rung's epoch
    eta: int = 2  # the reduction factor: 1 / eta of a rung goes on

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise SpecError("search.early_stopping", f"must be one of {tuple(RULES)} to stop trials", self.rule)
        check_int("search.grace_epochs", self.grace, low=1, high=1_000_000)
        check_int("search.reduction_factor", self.eta, low=2, high=1_000)

    @property
    def name(self) -> str:
        return RULES[self.rule]

    @property
    def ranked(self) -> tuple[tuple[str, str], ...]:
        """(name, direction) of what a rung is ranked by: accuracy, and for mo-asha the study's costs known before training."""
        names = ("accuracy",) if self.rule == "asha" else ("accuracy",) + tuple(o for o in self.objectives if o in PRIOR_COSTS)
        return tuple((name, OBJECTIVES[name]) for name in names)

    @property
    def rungs(self) -> tuple[int, ...]:
        """The epochs at which a trial is judged."""
        rungs, epoch = [], self.grace
        while epoch < self.epochs:
            rungs.append(epoch)
            epoch *= self.eta
        return tuple(rungs)

    def keeps(self, trial: Hashable, epoch: int, reached: Mapping[Hashable, Mapping[str, float]]) -> bool:
        """Whether ``trial`` goes on after ``epoch``, given the records of every trial that reached it (``trial``'s among them)."""
        if epoch not in self.rungs:
            return True
        return trial in promote(reached, self.ranked, self.eta)

    def reason(self, epoch: int) -> str:
        return stopped_reason(self.name, epoch)


def early_stopping(settings: Any, *, evaluator: Any) -> EarlyStopping | None:
    """The early stopping a job's settings ask for (None for ``none``), over the evaluator's epoch budget (``evaluator.epochs``)."""
    if settings.early_stopping == "none":
        return None
    epochs = evaluator.epochs
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"search.early_stopping must know the evaluator's epochs (evaluator.epochs), but {type(evaluator).__name__} has {epochs!r}.")
    return EarlyStopping(rule=settings.early_stopping, objectives=tuple(settings.objectives), epochs=epochs, grace=settings.grace_epochs, eta=settings.reduction_factor)


def rung_record(accuracy: float, costs: Mapping[str, float]) -> dict[str, float]:
    """One trial's values at a rung: its accuracy there and its costs."""
    return {"accuracy": float(accuracy), **{k: float(v) for k, v in costs.items()}}


def prior_costs(network: NetworkSpec) -> dict[str, float]:
    """The costs a trial is ranked by before it has trained: its spec's analytic FLOPs and params."""
    cost = analytic_cost(network)
    return {"flops": float(cost.flops), "params": float(cost.params)}


def stored_rungs(trials: Sequence[Any], epoch: int) -> dict[int, dict[str, float]]:
    """Trial number -> rung record of the study's trials that reached rung ``epoch`` (their user attributes), in number order."""
    reached = {}
    for t in sorted(trials, key=lambda t: t.number):
        accuracy = (t.user_attrs.get("rung_accuracy") or {}).get(str(epoch))
        if accuracy is not None:
            reached[t.number] = rung_record(accuracy, t.user_attrs.get("rung_costs") or {})
    return reached


def study_on_epoch(
    stopping: EarlyStopping, study: Any, trial: Any, network: NetworkSpec, then: Callable[[int, float], None] | None = None, *, judged: bool = True
) -> Callable[[int, float], None]:
    """The local engine's ``on_epoch`` for ``trial``: record each rung on the trial, raise ``TrialStopped`` when it should stop.

    The records live on the study's trials, so worker processes sharing the
    study (and a resumed run) rank against each other's. ``then`` is called
    first (the progress bar). A trial that is not ``judged`` (a baseline: a
    yardstick that must reach the front) records its rungs, which the others
    are ranked against, and is never stopped.
    """
    costs = prior_costs(network)
    trial.set_user_attr("rung_costs", costs)
    accuracies: list[float] = []
    rungs: dict[str, float] = {}

    def on_epoch(epoch: int, accuracy: float) -> None:
        if then is not None:
            then(epoch, accuracy)
        accuracies.append(float(accuracy))
        if epoch not in stopping.rungs:
            return
        rungs[str(epoch)] = float(accuracy)
        trial.set_user_attr("rung_accuracy", dict(rungs))
        reached = stored_rungs(study.get_trials(deepcopy=False), epoch)
        reached[trial.number] = rung_record(accuracy, costs)
        if judged and not stopping.keeps(trial.number, epoch, reached):
            raise TrialStopped(stopping.reason(epoch), epoch=epoch, epoch_accuracy=accuracies, rule=stopping.name)

    return on_epoch
