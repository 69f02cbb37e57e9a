"""Pareto fronts, knees and picking one trial: plain data in, plain data out.

Nothing here draws; ``_plots`` only draws what ``pareto_front`` computes, so the
logic is tested without plotly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple, Sequence

import numpy as np

from particle_nas.evaluators import METRIC_INFO, Constraint

if TYPE_CHECKING:
    import pandas as pd

# Which way each metric column of the table is better (from the metric registry).
COLUMN_DIRECTIONS: dict[str, str] = {info.column: info.direction for info in METRIC_INFO.values()}
# Rows compared at once by the O(n^2) dominance check (memory: chunk * n * objectives bools).
_CHUNK = 512


# ---------------------------------------------------------------- non-dominated sets
def _as_loss(values: Any, directions: Sequence[Any]) -> np.ndarray:
    """(n, m) float array where lower is better in every column."""
    array = np.asarray(values.to_numpy(dtype=float, na_value=np.nan) if hasattr(values, "to_numpy") else values, dtype=float)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise ValueError(f"values must be a 2-D array (points x objectives), but got shape {array.shape}.")
    directions = list(directions)
    if len(directions) != array.shape[1]:
        raise ValueError(f"directions must give one direction per objective ({array.shape[1]}), but got {directions!r}.")
    signs = np.array([_sign(d) for d in directions], dtype=float)
    if np.isnan(array).any():
        row = int(np.argwhere(np.isnan(array))[0][0])
        raise ValueError(f"values must not contain NaN, but got NaN in row {row}: {array[row].tolist()}.")
    return array * signs


def _sign(direction: Any) -> float:
    """-1 for maximize, +1 for minimize; accepts strings and optuna's StudyDirection."""
    name = getattr(direction, "name", direction)
    name = str(name).lower()
    if name in ("maximize", "max"):
        return -1.0
    if name in ("minimize", "min"):
        return 1.0
    raise ValueError(f"direction must be 'maximize' or 'minimize', but got {direction!r}.")


def pareto_mask(values: np.ndarray | pd.DataFrame, directions: Sequence[Any]) -> np.ndarray:
    """Which points are non-dominated: a boolean array with one entry per row of ``values``.

    ``values`` is (points x objectives) (a DataFrame's columns are used in
    order); ``directions`` gives "maximize" or "minimize" (or optuna's
    ``StudyDirection``) per column. A point is dominated when another is at
    least as good in every objective and strictly better in one, so exact
    duplicates of a non-dominated point are all members (as in optuna's
    ``study.best_trials``). NaN is refused; +-inf compare as usual.

    Two objectives: one lexicographic sort and a running minimum, O(n log n).
    More: distinct points in lexicographic order, each chunk checked (vectorized)
    against the front found so far: O(n * front size) time, O(chunk^2) memory.
    """
    loss = _as_loss(values, directions)
    n, m = loss.shape
    if n == 0:
        return np.zeros(0, dtype=bool)
    if m == 1:
        return loss[:, 0] == loss[:, 0].min()
    if m == 2:
        return _mask_2d(loss)
    return _mask_nd(loss)


def _mask_2d(loss: np.ndarray) -> np.ndarray:
    # Sorted by first objective, then second: only points earlier in the order can dominate.
    order = np.lexsort((loss[:, 1], loss[:, 0]))
    first, second = loss[order, 0], loss[order, 1]
    # Start of each run of identical points: duplicates never dominate each other.
    new_group = np.ones(len(order), dtype=bool)
    new_group[1:] = (first[1:] != first[:-1]) | (second[1:] != second[:-1])
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(len(order)), 0))
    # Best second objective strictly before each position.
    best_before = np.concatenate(([np.inf], np.minimum.accumulate(second)[:-1]))
    # A point survives when it beats everything before its group in the second objective.
    # (inf - inf cannot arise: the first group compares against +inf and wins unless it is +inf.)
    survives = second < best_before[group_start]
    survives |= group_start == 0  # the lexicographically smallest point(s) are never dominated
    mask = np.empty(len(order), dtype=bool)
    mask[order] = survives
    return mask


def _mask_nd(loss: np.ndarray) -> np.ndarray:
    # Distinct points in lexicographic order: a point can only be dominated by one before it,
    # and every dominated point is dominated by some front member, so each chunk is checked
    # against the front found so far and against itself. O(n * front) comparisons.
    unique, inverse = np.unique(loss, axis=0, return_inverse=True)
    on_front = np.zeros(len(unique), dtype=bool)
    front = unique[:0]
    for start in range(0, len(unique), _CHUNK):
        block = unique[start : start + _CHUNK]
        keep = ~_dominated_by(block, front) & ~_dominated_by(block, block)
        on_front[start : start + _CHUNK] = keep
        front = np.concatenate([front, block[keep]])
    return on_front[inverse.reshape(-1)]


def _dominated_by(points: np.ndarray, others: np.ndarray) -> np.ndarray:
    """For each point: is some row of ``others`` no worse everywhere and better somewhere?"""
    if len(others) == 0:
        return np.zeros(len(points), dtype=bool)
    dominated = np.zeros(len(points), dtype=bool)
    for start in range(0, len(others), _CHUNK):
        chunk = others[None, start : start + _CHUNK, :]  # (1, c, m)
        no_worse = np.all(chunk <= points[:, None, :], axis=2)  # (b, c)
        better = np.any(chunk < points[:, None, :], axis=2)
        dominated |= np.any(no_worse & better, axis=1)
    return dominated


# ---------------------------------------------------------------- knee
def knee_index(values: np.ndarray | pd.DataFrame, directions: Sequence[Any]) -> int:
    """Position (row number in ``values``) of the knee of a two-objective Pareto front.

    The rule: take the non-dominated rows of ``values`` (see ``pareto_mask``);
    normalize each objective to [0, 1] over those members, oriented so that 0
    is best; the two extreme members (best in one objective each) then sit at
    (0, 1) and (1, 0), joined by the chord x + y = 1. The knee is the member
    farthest from that chord on the side of the ideal point (0, 0), i.e. the
    one maximizing ``1 - x - y``. Ties, and fronts that do not bulge toward
    the ideal point (straight or concave ones, where the extremes score 0),
    go to the member best in the first objective (for (accuracy, flops): the
    most accurate), then to the earliest row. With one or two members this
    is simply the member best in the first objective.
    """
    loss = _as_loss(values, directions)
    if loss.shape[1] != 2:
        raise ValueError(f"knee_index needs exactly 2 objectives, but got {loss.shape[1]}.")
    if len(loss) == 0:
        raise ValueError("knee_index needs at least one point, but got 0.")
    members = np.flatnonzero(pareto_mask(loss, ("minimize", "minimize")))
    front = loss[members]
    if len(members) <= 2:
        score = np.zeros(len(members))
    else:
        low, high = front.min(axis=0), front.max(axis=0)
        span = np.where(high > low, high - low, 1.0)
        norm = (front - low) / span
        score = 1.0 - norm[:, 0] - norm[:, 1]
        score = np.where(np.isfinite(score), score, -np.inf)  # an infinite objective is never the knee
    best = score.max()
    tied = np.flatnonzero(np.isclose(score, best, rtol=0.0, atol=1e-12) | (score == best))
    # Among ties: best first objective, then earliest row.
    winner = min(tied, key=lambda i: (front[i, 0], members[i]))
    return int(members[winner])


# ---------------------------------------------------------------- front of a trials table
class ParetoFront(NamedTuple):
    """The two-objective front of a trials table, as index labels of that table."""

    x: str  # column on the x axis, e.g. "flops"
    y: str  # column on the y axis, e.g. "accuracy"
    complete: list[Any]  # labels of the COMPLETE trials with both values
    members: list[Any]  # labels of the front members, ordered from best x to worst x
    knee: Any | None  # label of the knee (see knee_index); None when there are no complete trials


def pareto_front(df: pd.DataFrame, *, x: str = "flops", y: str = "accuracy") -> ParetoFront:
    """The (x, y) front of the COMPLETE rows of a ``trials_table``, and its knee.

    Directions come from ``COLUMN_DIRECTIONS`` (accuracy up; flops, params,
    duration down). This front uses only the two columns, so in a study with a
    third objective it can differ from the table's ``pareto`` column.
    """
    for column in (x, y):
        if column not in COLUMN_DIRECTIONS:
            raise ValueError(f"axis column must be one of {sorted(COLUMN_DIRECTIONS)}, but got {column!r}.")
        if column not in df.columns:
            raise ValueError(f"the table must have a {column!r} column, but got columns {list(df.columns)}.")
    rows = _complete(df)
    rows = rows[rows[x].notna() & rows[y].notna()]
    if rows.empty:
        return ParetoFront(x=x, y=y, complete=[], members=[], knee=None)
    directions = (COLUMN_DIRECTIONS[x], COLUMN_DIRECTIONS[y])
    values = rows[[x, y]].to_numpy(dtype=float, na_value=np.nan)
    mask = pareto_mask(values, directions)
    loss_x = values[:, 0] * _sign(directions[0])
    loss_y = values[:, 1] * _sign(directions[1])
    positions = sorted(np.flatnonzero(mask), key=lambda i: (loss_x[i], loss_y[i], i))
    # The knee rule prefers the first objective on ties, so hand it (y, x): accuracy first.
    knee = knee_index(values[:, ::-1], directions[::-1])
    labels = list(rows.index)
    return ParetoFront(x=x, y=y, complete=labels, members=[labels[i] for i in positions], knee=labels[knee])


def _complete(df: pd.DataFrame) -> pd.DataFrame:
    if "state" not in df.columns:
        raise ValueError(f"the table must have a 'state' column (see trials_table), but got columns {list(df.columns)}.")
    return df[df["state"].astype(str) == "COMPLETE"]


# ---------------------------------------------------------------- pick
_NAMED_RULES = ("knee", "max-accuracy", "min-flops", "min-params")
ACCEPTED_RULES = (
    "'knee', 'max-accuracy', 'min-flops', 'min-params', or constraints on a metric (accuracy, flops, params, latency_ms, ...) "
    "such as 'flops<=2e8', 'params<100k', 'accuracy>=0.8', several joined by ',' "
    "(optionally with one of the named rules, e.g. 'knee,flops<=2e8')"
)


def _parse_rule(rule: str) -> tuple[str | None, list[Constraint]]:
    if not isinstance(rule, str) or not rule.strip():
        raise ValueError(f"pick rule must be {ACCEPTED_RULES}, but got {rule!r}.")
    named: list[str] = []
    constraints: list[Constraint] = []
    for part in (p.strip() for p in rule.split(",")):
        if part in _NAMED_RULES:
            named.append(part)
            continue
        constraint = Constraint.match(part)
        if constraint is None:
            raise ValueError(f"pick rule must be {ACCEPTED_RULES}, but got {rule!r}.")
        constraints.append(constraint)
    if len(named) > 1:
        raise ValueError(f"pick rule must name at most one of {_NAMED_RULES}, but got {rule!r}.")
    return (named[0] if named else None), constraints


def pick(df: pd.DataFrame, rule: str) -> pd.Series:
    """The row of a ``trials_table`` chosen by ``rule``, among COMPLETE trials.

    Rules:
      * ``knee``: the knee of the (flops, accuracy) front (see ``knee_index``);
      * ``max-accuracy``: ties go to fewer flops, then fewer params;
      * ``min-flops`` / ``min-params``: ties go to higher accuracy, then the other cost;
      * constraints ``NAME`` ``<=|<|>=|>`` number (``2e8``, ``200M``, ``100k``)
        on a metric column (accuracy, flops, params, latency_ms, ...; the
        grammar of ``particle_nas.evaluators.Constraint``), several joined by ``,``. They filter the trials;
        then a named rule in the same string applies, or else: max-accuracy
        when any constraint is on a cost, min-flops when all are on accuracy.
    Remaining ties go to the lowest trial number, so a result reused by a
    duplicate trial is credited to the original.

    Returns the row (a Series whose ``.name`` is its index label in ``df``).
    Raises ValueError for an unparseable rule (listing the accepted forms),
    and for a rule no complete trial satisfies (stating the best available).
    """
    named, constraints = _parse_rule(rule)
    if named is None:
        named = "max-accuracy" if any(c.name != "accuracy" for c in constraints) else "min-flops"
    complete = _complete(df)
    needed = ["accuracy", "flops", "params"]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ValueError(f"the table must have columns {needed}, but got {list(df.columns)}.")
    complete = complete[complete["accuracy"].notna() & complete["flops"].notna()]
    if "feasible" in complete.columns and complete["feasible"].any():  # trials breaking the search's constraints are not picked
        complete = complete[complete["feasible"].astype(bool)]
    if complete.empty:
        raise ValueError(f"no complete trial to pick from with {rule!r}; the table has {len(df)} trials and none is COMPLETE with accuracy and flops.")
    keep = np.ones(len(complete), dtype=bool)
    for c in constraints:
        if c.name not in complete.columns:
            raise ValueError(f"the table must have a {c.name!r} column to pick by {c.text}, but got columns {list(df.columns)}.")
        keep &= c.holds(complete[c.name].to_numpy(dtype=float, na_value=np.nan))  # NaN never holds: a trial without the value fails
    if not keep.any():
        bests = []
        for column in dict.fromkeys(c.name for c in constraints):
            values = complete[column].to_numpy(dtype=float, na_value=np.nan)
            values = values[~np.isnan(values)]
            upper = any(c.upper for c in constraints if c.name == column)
            word, best = ("smallest", values.min()) if upper else ("largest", values.max())
            bests.append(f"the {word} {column} is {METRIC_INFO[column].exact(best)}" if len(values) else f"no trial has {column}")
        rule_text = ",".join(c.text for c in constraints)
        raise ValueError(f"no complete trial satisfies {rule_text}; {' and '.join(bests)}.")
    rows = complete[keep]
    if named == "knee":
        label = pareto_front(rows, x="flops", y="accuracy").knee
        return df.loc[label]
    acc = rows["accuracy"].to_numpy(dtype=float, na_value=np.nan)
    flops = rows["flops"].to_numpy(dtype=float, na_value=np.nan)
    params = rows["params"].to_numpy(dtype=float, na_value=np.inf)
    number = rows["number"].to_numpy(dtype=float, na_value=np.inf) if "number" in rows.columns else np.arange(len(rows), dtype=float)
    if named == "max-accuracy":
        keys = (number, params, flops, -acc)
    elif named == "min-flops":
        keys = (number, params, -acc, flops)
    else:  # min-params
        keys = (number, flops, -acc, params)
    position = int(np.lexsort(keys)[0])  # np.lexsort sorts by the last key first
    return rows.iloc[position]


# ---------------------------------------------------------------- baselines
class BaselineResult(NamedTuple):
    """One baseline trial of a table, and the searched Pareto members that dominate it."""

    name: str  # e.g. "R(2+1)D"
    number: int  # its trial number
    state: str  # e.g. "COMPLETE", "PRUNED" (over budget)
    on_front: bool  # it is itself a member of the study's front
    dominated_by: list[int]  # trial numbers of the searched Pareto members dominating it, largest accuracy gain first


def baseline_results(df: pd.DataFrame) -> list[BaselineResult]:
    """Which searched Pareto members of a ``trials_table`` dominate which baselines, under all the study's objectives.

    A member is a row with ``pareto`` set that is no baseline; it dominates a
    complete baseline when it is at least as good in every objective
    (``df.attrs["objectives"]``, default accuracy and flops) and strictly
    better in one. A baseline that did not complete is listed with no dominator.
    """
    if "baseline" not in df.columns or not df["baseline"].notna().any():  # none: nothing to compare, whatever the objectives are named
        return []
    objectives = list(df.attrs.get("objectives") or ("accuracy", "flops"))
    directions = list(df.attrs.get("directions") or (COLUMN_DIRECTIONS[o] for o in objectives))
    complete = _complete(df)
    complete = complete[complete[objectives].notna().all(axis=1)]
    members = complete[complete["pareto"].astype(bool) & complete["baseline"].isna()]
    member_loss = _as_loss(members[objectives], directions)
    results = []
    for label, row in df[df["baseline"].notna()].sort_values("number").iterrows():
        dominated_by: list[int] = []
        if label in complete.index:
            loss = _as_loss(complete.loc[[label], objectives], directions)[0]
            wins = np.all(member_loss <= loss, axis=1) & np.any(member_loss < loss, axis=1)
            order = sorted(np.flatnonzero(wins), key=lambda i: (member_loss[i, 0], int(members["number"].iloc[i])))
            dominated_by = [int(members["number"].iloc[i]) for i in order]
        results.append(BaselineResult(str(row["baseline"]), int(row["number"]), str(row["state"]), bool(row.get("pareto", False)), dominated_by))
    return results


def _particle_label(row: Any) -> str:
    if not isinstance(row.get("factorization"), str):
        return "per-stage particles"
    return f"{row['factorization']}/{row['wiring']} kt{int(row['temporal_kernel'])}"


def baseline_lines(df: pd.DataFrame) -> list[str]:
    """The summary of ``baseline_results`` in words, one line per baseline, e.g.

    ``trial 12 (csn_ip/bottleneck kt3) dominates R(2+1)D: +0.031 accuracy at 0.42x FLOPs``
    (the dominating member with the largest accuracy gain; "and N more" when others do too),
    ``no searched Pareto member dominates X3D (trial 4, on the front)``, or
    ``C3D (trial 0) did not complete (PRUNED: over budget: ...)``.
    """
    objectives = list(df.attrs.get("objectives") or ("accuracy", "flops"))
    by_number = {int(n): label for label, n in df["number"].items()}
    lines = []
    for result in baseline_results(df):
        base = df.loc[by_number[result.number]]
        if result.state != "COMPLETE":
            reason = base.get("fail_reason")
            lines.append(f"{result.name} (trial {result.number}) did not complete ({result.state}{': ' + str(reason) if isinstance(reason, str) else ''})")
            continue
        if not result.dominated_by:
            where = ", on the front" if result.on_front else ""
            lines.append(f"no searched Pareto member dominates {result.name} (trial {result.number}{where})")
            continue
        best = df.loc[by_number[result.dominated_by[0]]]
        changes = []
        for name in objectives:
            mine, theirs = float(best[name]), float(base[name])
            if name != "accuracy" and COLUMN_DIRECTIONS.get(name) == "minimize" and theirs > 0:
                changes.append(f"{mine / theirs:.2f}x {'FLOPs' if name == 'flops' else name}")
            else:
                changes.append(f"{mine - theirs:+.3f} {name}")
        more = len(result.dominated_by) - 1
        lines.append(
            f"trial {result.dominated_by[0]} ({_particle_label(best)}) dominates {result.name}: {changes[0]} at {', '.join(changes[1:])}"
            + (f" (and {more} more Pareto member{'s' if more > 1 else ''})" if more else "")
        )
    return lines
