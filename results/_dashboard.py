"""What the run dashboard shows, computed as plain data (no plotly here).

``_dashboard_page`` only draws what these functions return, so each number on
the page (hypervolume, importances, the parallel-coordinates encoding, the
table of Pareto members) is tested without a browser or plotly.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import TYPE_CHECKING, Any, NamedTuple, Sequence

import numpy as np
import pandas as pd

from particle_nas.evaluators import SyntheticConfig, VideoPretextConfig
from particle_nas.search import BASELINE_ATTR, YARDSTICK_ATTR, Yardstick, observed_yardstick

from ._export import particle_document, particle_yaml
from ._pareto import COLUMN_DIRECTIONS
from ._table import PARTICLE_FIELDS, trials_table

if TYPE_CHECKING:
    import optuna

# Trial user attributes the dashboard reads beyond trials_table's columns.
PRESET_ATTR = "preset"  # a reference architecture's label, e.g. "R(2+1)D-18"
LATENCY_ATTR = "latency_ms"  # measured latency of one clip, when an evaluator reports it
REPLAY_ATTR = "replay"  # True on trials answered from a ParticleBench table (with "replay_table", its path)
# A numeric axis with at most this many distinct values is drawn as categories.
MAX_CATEGORIES = 12


# ---------------------------------------------------------------- the table, with dashboard extras
def dashboard_table(study: optuna.Study, *, table: pd.DataFrame | None = None) -> pd.DataFrame:
    """``trials_table(study)`` (or a copy of ``table``, when it was read already) plus ``preset`` (str or NA) and ``latency_ms`` (float or NaN) columns."""
    df = trials_table(study) if table is None else table.copy()
    by_number = {t.number: t.user_attrs for t in study.get_trials(deepcopy=False)}
    presets, latencies = [], []
    for number in df["number"]:
        attrs = by_number.get(int(number), {})
        preset = attrs.get(PRESET_ATTR)
        presets.append(str(preset) if preset not in (None, "") else None)
        latency = attrs.get(LATENCY_ATTR)
        ok = isinstance(latency, (int, float)) and not isinstance(latency, bool) and math.isfinite(latency)
        latencies.append(float(latency) if ok else math.nan)
    df["preset"] = pd.Series(presets, index=df.index, dtype=object)
    df["latency_ms"] = pd.Series(latencies, index=df.index, dtype="float64")
    return df


def replay_note(study: optuna.Study) -> str | None:
    """One sentence saying that the study's trials were replayed from a table, or None when none was."""
    tables = sorted({str(t.user_attrs.get("replay_table", "a table")) for t in study.get_trials(deepcopy=False) if t.user_attrs.get(REPLAY_ATTR) is True})
    if not tables:
        return None
    return (
        f"Replay: accuracies and costs were looked up in {', '.join(tables)}, not measured by this run; "
        "duration_s is the table's recorded training time (simulated)."
    )


def task_note(study: optuna.Study) -> tuple[str, str]:
    """(the data kind, one sentence saying which task the run's trials were trained on), read from the config stored on the study."""
    data = (study.user_attrs.get("config") or {}).get("data") or {}
    kind = str(data.get("kind", "synthetic"))
    clip = "x".join(str(n) for n in data.get("clip", [])) or "the default"
    if kind == "video_pretext":
        speeds = "/".join(f"{s}x" for s in _given_or_default(data, VideoPretextConfig, "speeds"))
        directions = " x forward/backward" if _given_or_default(data, VideoPretextConfig, "reverse") else ""
        return kind, f"Task: label-free pretext on the videos of {data.get('root')} (playback speed {speeds}{directions}, {clip} clips); no labels were read."
    if kind == "video_folder":
        return kind, f"Task: labelled videos, one class per sub-folder of {data.get('root')} ({clip} clips)."
    classes, difficulty = (_given_or_default(data, SyntheticConfig, name) for name in ("num_classes", "difficulty"))
    return kind, f"Task: the synthetic motion task ({classes} classes, difficulty {difficulty}, {clip} clips)."


def _given_or_default(data: dict[str, Any], config: type, name: str) -> Any:
    """``data[name]`` as the config file gave it, else the default of that field of the task's config class (one source of defaults)."""
    return data[name] if name in data else next(f.default for f in dataclasses.fields(config) if f.name == name)


def complete_rows(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["state"].astype(str) == "COMPLETE"]


def cost_axes(df: pd.DataFrame) -> list[str]:
    """The cost columns worth a Pareto plot: flops and params, and latency_ms when any complete trial has it."""
    rows = complete_rows(df)
    axes = [c for c in ("flops", "params") if c in df.columns and rows[c].notna().any()]
    if "latency_ms" in df.columns and rows["latency_ms"].notna().any():
        axes.append("latency_ms")
    return axes


# ---------------------------------------------------------------- hypervolume
class HypervolumeHistory(NamedTuple):
    """Hypervolume of the (cost, accuracy) front after each complete trial, in trial order."""

    cost: str  # the cost column, e.g. "flops"
    numbers: list[int]  # trial numbers of the complete trials, ascending
    values: list[float]  # hypervolume after each: a fraction of the yardstick's box
    yardstick: Yardstick  # the cost axis, its scale and its box
    description: str  # the yardstick in words, for the page


def study_yardstick(study: optuna.Study | None, *, cost: str = "flops", scale: str = "log") -> Yardstick | None:
    """The yardstick the search stored with its study (its space's cost bounds), on ``scale``; None when it stored none or of another cost."""
    stored = None if study is None else study.user_attrs.get(YARDSTICK_ATTR)
    if not isinstance(stored, dict) or stored.get("cost") != cost:
        return None
    try:
        return Yardstick.from_dict(stored).with_scale(scale)
    except (KeyError, TypeError, ValueError):
        return None


def hypervolume_history(df: pd.DataFrame, *, cost: str = "flops", yardstick: Yardstick | None = None, scale: str = "log") -> HypervolumeHistory:
    """Hypervolume of the (accuracy up, ``cost`` down) front of the complete trials so far, after each one.

    ``yardstick`` (the study's, ``study_yardstick``: its space's cheapest
    network to 1.1 x its largest) defaults to one from the trials themselves
    (the cheapest seen to 1.1 x the costliest), on ``scale`` (log, or linear
    from 0). A trial that adds nothing to the front leaves the curve flat.
    """
    if cost not in COLUMN_DIRECTIONS or COLUMN_DIRECTIONS[cost] != "minimize":
        raise ValueError(f"cost must be a column to minimize ({sorted(k for k, v in COLUMN_DIRECTIONS.items() if v == 'minimize')}), but got {cost!r}.")
    rows = complete_rows(df)
    rows = rows[rows["accuracy"].notna() & rows[cost].notna()].sort_values("number")
    acc = rows["accuracy"].to_numpy(dtype=float)
    spend = rows[cost].to_numpy(dtype=float, na_value=np.nan)
    if yardstick is None:
        yardstick = observed_yardstick(spend.tolist(), scale=scale, cost_name=cost)
    values = yardstick.running(acc.tolist(), spend.tolist())
    return HypervolumeHistory(cost=cost, numbers=[int(n) for n in rows["number"]], values=values, yardstick=yardstick, description=yardstick.describe())


# ---------------------------------------------------------------- parameter importance
class Importance(NamedTuple):
    """Optuna's parameter importances for accuracy, or why there are none."""

    values: dict[str, float]  # axis -> importance (sums to 1), most important first; empty when unavailable
    reason: str  # why values is empty ("" when it is not)
    method: str  # the evaluator used


def param_importance(study: optuna.Study, *, min_trials: int = 4) -> Importance:
    """``optuna.importance.get_param_importances`` with target = the trial's accuracy.

    The evaluator is fANOVA (Optuna's default) when scikit-learn is
    installed, else PED-ANOVA; both handle categorical axes natively.
    Axes that were not asked in every complete trial (e.g. ``temporal_kernel``
    for ``spatial_only``) fall outside Optuna's intersection search space and
    are left out; axes with a single value carry no information and are left
    out too, and so are baseline trials (search.baselines: they sample nothing). Fewer than ``min_trials`` complete trials, or nothing left to
    rank, gives empty values and the reason, never an exception.
    """
    import optuna
    from optuna.trial import TrialState

    evaluator, method, sign = _importance_evaluator()
    # Baseline trials record no params (their particle may lie outside the space): Optuna leaves them out, and so does this count.
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if _accuracy(t) is not None and BASELINE_ATTR not in t.user_attrs]
    if len(complete) < min_trials:
        return Importance({}, f"needs at least {min_trials} complete trials with an accuracy, but the study has {len(complete)}.", method)
    varying = set()
    for name in set().union(*(t.params for t in complete)):
        if all(name in t.params for t in complete) and len({repr(t.params[name]) for t in complete}) > 1:
            varying.add(name)
    if not varying:
        return Importance({}, "no searched axis took more than one value in every complete trial.", method)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # optuna warns (rather than fails) on tiny studies; the page says enough
            values = optuna.importance.get_param_importances(
                study,
                evaluator=evaluator,
                params=sorted(varying),
                target=lambda t: math.nan if _accuracy(t) is None else sign * _accuracy(t),
            )
    except (ValueError, RuntimeError, ZeroDivisionError) as err:
        return Importance({}, f"optuna could not compute importances: {' '.join(str(err).split())}", method)
    values = {str(k): float(v) for k, v in values.items() if math.isfinite(float(v))}
    if not values:
        return Importance({}, "optuna returned no finite importance.", method)
    return Importance(dict(sorted(values.items(), key=lambda kv: -kv[1])), "", method)


def _importance_evaluator() -> tuple[Any, str, float]:
    """fANOVA (Optuna's default) when scikit-learn is installed, else PED-ANOVA (no extra dependency).

    Returns (evaluator, its name, sign applied to accuracy): PED-ANOVA treats lower targets as better.
    """
    import optuna

    try:
        import sklearn  # noqa: F401  (fANOVA's random forest)
    except ImportError:
        return optuna.importance.PedAnovaImportanceEvaluator(target_quantile=0.25), "PED-ANOVA, top quarter of trials by accuracy", -1.0
    return optuna.importance.FanovaImportanceEvaluator(seed=0), "fANOVA, seed 0", 1.0


def _accuracy(trial: optuna.trial.FrozenTrial) -> float | None:
    value = trial.user_attrs.get("accuracy")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


# ---------------------------------------------------------------- parallel coordinates
class ParallelAxis(NamedTuple):
    """One axis of the parallel-coordinates view."""

    name: str
    values: list[float]  # one per complete trial (codes for categorical axes)
    tickvals: list[float] | None  # None: a continuous axis
    ticktext: list[str] | None


def searched_axes(study: optuna.Study, df: pd.DataFrame) -> list[str]:
    """Particle fields the study sampled (a trial param of that name) and that vary over the complete trials."""
    asked = set().union(*(t.params for t in study.get_trials(deepcopy=False))) if len(df) else set()
    rows = complete_rows(df)
    return [f for f in PARTICLE_FIELDS if f in asked and rows[f].dropna().astype(str).nunique() > 1]


def parallel_axes(df: pd.DataFrame, axes: Sequence[str]) -> tuple[list[ParallelAxis], list[float], list[int]]:
    """The complete trials on ``axes``: (axes, accuracy per trial, trial numbers).

    Each trial's particle value of the field is used (an axis that did not
    apply to a particle shows the value the particle has, e.g. temporal kernel
    1 for spatial_only). Text axes, and numeric axes with few distinct values,
    become categories coded 0..k-1 in sorted order; a missing value is the
    category "n/a".
    """
    rows = complete_rows(df)
    rows = rows[rows["accuracy"].notna()].sort_values("number")
    result = []
    for name in axes:
        column = rows[name]
        present = column.dropna()
        numeric = pd.api.types.is_numeric_dtype(column)
        distinct = sorted(set(present.tolist()), key=lambda v: (float(v) if numeric else str(v)))
        if numeric and len(distinct) > MAX_CATEGORIES and not column.isna().any():
            result.append(ParallelAxis(name, column.astype(float).tolist(), None, None))
            continue
        labels = [_label(v) for v in distinct] + (["n/a"] if column.isna().any() else [])
        code = {_label(v): float(i) for i, v in enumerate(distinct)}
        values = [code[_label(v)] if not _missing(v) else float(len(distinct)) for v in column.tolist()]
        result.append(ParallelAxis(name, values, [float(i) for i in range(len(labels))], labels))
    return result, rows["accuracy"].astype(float).tolist(), rows["number"].astype(int).tolist()


def _missing(value: Any) -> bool:
    try:
        return value is None or bool(value != value)
    except TypeError:
        return True


def _label(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) >= 1 else f"{value:g}"
    return f"{value:g}" if isinstance(value, float) else str(value)


# ---------------------------------------------------------------- the table of Pareto members
MEMBER_COLUMNS = ("number", "accuracy", "flops", "params", "latency_ms", "factorization", "wiring", "temporal_kernel", "spatial_kernel", "expansion", "squeeze_excite", "activation", "prune_ratio", "preset", "baseline", "duplicate_of")


def pareto_members(df: pd.DataFrame, *, run: str) -> list[dict[str, Any]]:
    """The study's front (``df["pareto"]``), best accuracy first: the ``MEMBER_COLUMNS`` of each, plus ``yaml``.

    ``yaml`` is the particle file ``particle-nas export RUN --pick ...`` would
    write for that trial (its exported YAML); None for a member without a particle.
    """
    rows = df[df["pareto"].astype(bool)]
    rows = rows.sort_values(["accuracy", "number"], ascending=[False, True])
    members = []
    for _, row in rows.iterrows():
        record = {c: (None if c not in row.index or _missing(row[c]) else _scalar(row[c])) for c in MEMBER_COLUMNS}
        try:
            doc = particle_document(row, run=run, pick=f"trial {int(row['number'])}")
            record["yaml"] = particle_yaml(doc, f"trial-{int(row['number'])}.yaml")
        except ValueError:
            record["yaml"] = None
        members.append(record)
    return members


def _scalar(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def failed_trials(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Trials that did not complete (failed, pruned, stopped early, still running), with the reason recorded for each and the epoch a stopped one reached."""
    rows = df[df["state"] != "COMPLETE"]
    out = []
    for _, row in rows.iterrows():
        particle = " / ".join(str(row[c]) for c in ("factorization", "wiring") if c in row and not _missing(row[c]))
        reason = row.get("fail_reason")
        stopped = row.get("stopped_at_epoch")
        epoch = None if _missing(stopped) else int(stopped)  # stopped early: the epoch it reached
        out.append({"number": int(row["number"]), "state": str(row["state"]), "particle": particle, "epoch": epoch, "reason": "" if _missing(reason) else str(reason)})
    return out

