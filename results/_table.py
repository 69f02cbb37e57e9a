"""Reading a run: open its Optuna study and flatten the trials into one table."""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from particle_nas.evaluators import OPTIONAL_METRICS
from particle_nas.search import BASELINE_ATTR, RunLayout, open_storage, shown_location
from particle_nas.space import ParticleSpec

from ._files import atomic_write
from ._pareto import pareto_mask

if TYPE_CHECKING:
    import optuna

PARTICLE_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ParticleSpec))
# Numbers the optional evaluators report (latency, zero-cost proxies); NA when not measured.
METRIC_COLUMNS: tuple[str, ...] = OPTIONAL_METRICS
# Where each trial ran (the evaluator's record): "cpu" or "cuda:0 (NVIDIA H200)", the resolved precision, where latency was timed.
DEVICE_COLUMNS: tuple[str, ...] = ("device", "precision", "latency_device")
# Column order of trials_table. "network" (last) is NetworkSpec.to_dict() as compact JSON.
COLUMNS: tuple[str, ...] = (
    "number",
    "state",
    *PARTICLE_FIELDS,
    "stage_particles",  # per-stage searches: the particle of each stage as compact JSON (the field columns hold values all stages share)
    "flops",
    "params",
    "accuracy",
    "accuracy_before_prune",  # trials whose spec prunes: validation top-1 of the unpruned network before pruning
    "accuracy_fp32",  # trials whose spec quantizes (int8): validation top-1 of the float network (accuracy is the int8 one's)
    "epoch_accuracy",
    "stopped_at_epoch",  # trials stopped early (ASHA, MO-ASHA; state PRUNED): the last epoch they trained
    "duration_s",
    *METRIC_COLUMNS,
    *DEVICE_COLUMNS,
    "datetime_start",
    "datetime_complete",
    "fail_reason",
    "duplicate_of",
    "baseline",  # a baseline trial's name (search.baselines, e.g. "R(2+1)D"); NA for searched trials
    "pareto",
    "feasible",
    "network",
)


# ---------------------------------------------------------------- opening a run
def _study_names(db: Path) -> list[str]:
    """Study names in an Optuna SQLite file, read without creating or migrating anything.

    The file is opened read-write (``mode=rw`` never creates one): a writer
    killed in the middle of a transaction leaves a hot rollback journal
    (``study.db-journal``), and only a connection that may write rolls it back,
    which SQLite does on the first read. A read-only connection would refuse
    the file until then. Where the file cannot be written, it is read
    read-only, which works unless such a journal waits to be rolled back.
    """
    journal = db.with_name(db.name + "-journal")
    writable = os.access(db, os.W_OK) and os.access(db.parent, os.W_OK)
    try:
        with closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode={'rw' if writable else 'ro'}", uri=True)) as conn:
            rows = conn.execute("SELECT study_name FROM studies ORDER BY study_id").fetchall()
    except sqlite3.DatabaseError as err:
        if not writable and journal.is_file() and journal.stat().st_size > 0:
            raise ValueError(
                f"{db} must be writable to be read: a process stopped in the middle of writing it left {journal.name}, which "
                f"SQLite rolls back on the next read-write open (every complete trial is kept); make {db.parent} writable ({err})."
            ) from None
        raise ValueError(f"{db} must be an Optuna study database, but reading it failed: {err}.") from None
    return [name for (name,) in rows]


def open_run(run_dir: str | os.PathLike[str], *, study_name: str | None = None, storage: str | None = None) -> optuna.Study:
    """Load the Optuna study of a run directory (``runs/NAME/study.db``, ``study.journal``, or run.json's storage URL).

    The study name defaults to the directory name; when that name is not in the
    file but the file holds exactly one study, that study is used (a renamed
    run directory still opens). The file is checked first (never created), so a
    wrong path never creates an empty database. ``storage``: the URL of the
    run's database with its password (run.json keeps none; see ``RunLayout.storage``).
    """
    import optuna

    run = Path(run_dir)
    layout = RunLayout(run)
    db = layout.study_db
    location = layout.other_storage(url=storage)
    if location is not None:
        other = open_storage(location)  # a journal file (several workers) or a database URL named in run.json
        names = [s.study_name for s in optuna.get_all_study_summaries(storage=other, include_best_trial=False)]
        if not names:  # e.g. a search that is starting right now has not created its study yet
            raise ValueError(f"{shown_location(location)} must hold an Optuna study, but it holds none.")
        if study_name is None:
            study_name = run.resolve().name if run.resolve().name in names or len(names) != 1 else names[0]
        if study_name not in names:
            raise ValueError(f"study_name must be one of the studies in {run} ({', '.join(map(repr, names))}), but got {study_name!r}.")
        return optuna.load_study(study_name=study_name, storage=other)
    if not db.is_file():
        reason = "no such directory" if not run.is_dir() else f"it has no {db.name}"
        raise ValueError(f"run directory must contain {db.name}, but got {str(run)!r} ({reason}).")
    names = _study_names(db)
    if not names:
        raise ValueError(f"{db} must hold an Optuna study, but it holds none.")
    if study_name is None:
        study_name = run.resolve().name
        if study_name not in names and len(names) == 1:
            study_name = names[0]
    if study_name not in names:
        raise ValueError(f"study_name must be one of the studies in {db} ({', '.join(map(repr, names))}), but got {study_name!r}.")
    return optuna.load_study(study_name=study_name, storage=layout.sqlite_url())


# ---------------------------------------------------------------- the table
def _objective_names(study: optuna.Study) -> list[str]:
    objectives = study.user_attrs.get("objectives")
    names = [o.get("name") for o in objectives] if isinstance(objectives, list) and all(isinstance(o, dict) for o in objectives) else []
    if len(names) != len(study.directions) or not all(isinstance(n, str) for n in names):
        names = [f"value_{i}" for i in range(len(study.directions))]
    return names


def _compact(values: Any) -> str | None:
    """epoch_accuracy as one short string: "0.4120 0.5330 0.6010"."""
    if not isinstance(values, (list, tuple)) or not values:
        return None
    return " ".join(f"{float(v):.4f}" for v in values)


def _particle_of(attrs: dict[str, Any]) -> dict[str, Any]:
    particle = attrs.get("particle")
    if isinstance(particle, list) and particle and all(isinstance(p, dict) for p in particle):  # per stage: what all share
        return {k: v for k, v in particle[0].items() if all(p.get(k, v) == v and k in p for p in particle)}
    if not isinstance(particle, dict):
        network = attrs.get("network")
        particle = network.get("particle") if isinstance(network, dict) else None
    return particle if isinstance(particle, dict) else {}


def trials_table(study: optuna.Study) -> pd.DataFrame:
    """One row per trial of ``study`` (every state), ordered by trial number.

    Columns (``COLUMNS``): number, state (e.g. "COMPLETE"), every
    ``ParticleSpec`` field, flops, params, accuracy, accuracy_before_prune
    (NA unless the spec prunes), epoch_accuracy (space
    separated, 4 decimals), stopped_at_epoch (trials stopped early), duration_s, the optional evaluators' numbers
    (``METRIC_COLUMNS``: latency_ms, latency_batch_ms and zero-cost scores),
    device, precision, latency_device (``DEVICE_COLUMNS``), datetime_start,
    datetime_complete, fail_reason, duplicate_of, baseline (the name of a
    baseline trial, NA for searched ones), pareto, feasible, network.
    ``feasible`` is False for trials that break the search's constraints;
    ``pareto`` marks the non-dominated feasible COMPLETE trials under all the
    study's objectives and directions (the same set as ``study.best_trials``). ``network`` is the
    trial's ``NetworkSpec.to_dict()`` as compact JSON, so a row alone can be
    exported (``particle_document``). Missing values are NA. accuracy, flops
    and params come from the trial's user_attrs, or else from its values when
    an objective of that name exists. ``df.attrs`` holds "study_name",
    "objectives" and "directions".
    """
    from optuna.trial import TrialState

    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    objectives = _objective_names(study)
    directions = [d.name.lower() for d in study.directions]
    defaults = ParticleSpec()

    columns: dict[str, list[Any]] = {name: [] for name in COLUMNS}
    for trial in trials:
        attrs = trial.user_attrs
        from_values = dict(zip(objectives, trial.values)) if trial.values is not None and trial.state == TrialState.COMPLETE else {}
        particle = _particle_of(attrs)
        network = attrs.get("network")
        columns["number"].append(trial.number)
        columns["state"].append(trial.state.name)
        stages = attrs.get("particle") if isinstance(attrs.get("particle"), list) else None
        for name in PARTICLE_FIELDS:
            value = particle.get(name, getattr(defaults, name) if particle and stages is None else None)  # fields newer than the trial: their default
            columns[name].append(json.dumps(list(value), separators=(",", ":")) if isinstance(value, (list, tuple)) else value)  # inception's lists as JSON
        columns["stage_particles"].append(json.dumps(stages, separators=(",", ":")) if stages is not None else None)
        for name in ("flops", "params", "accuracy"):
            columns[name].append(attrs.get(name, from_values.get(name)))
        columns["accuracy_before_prune"].append(attrs.get("accuracy_before_prune"))
        columns["accuracy_fp32"].append(attrs.get("accuracy_fp32"))
        columns["epoch_accuracy"].append(_compact(attrs.get("epoch_accuracy")))
        columns["stopped_at_epoch"].append(attrs.get("stopped_at_epoch"))
        columns["duration_s"].append(attrs.get("duration_s"))
        for name in (*METRIC_COLUMNS, *DEVICE_COLUMNS):
            columns[name].append(attrs.get(name))
        columns["datetime_start"].append(trial.datetime_start)
        columns["datetime_complete"].append(trial.datetime_complete)
        columns["fail_reason"].append(attrs.get("fail_reason"))
        columns["duplicate_of"].append(attrs.get("duplicate_of"))
        columns["baseline"].append(str(attrs[BASELINE_ATTR]) if attrs.get(BASELINE_ATTR) not in (None, "") else None)
        columns["pareto"].append(False)
        columns["feasible"].append(bool(attrs.get("feasible", True)))
        columns["network"].append(json.dumps(network, separators=(",", ":")) if isinstance(network, dict) else None)

    complete = [
        i
        for i, t in enumerate(trials)
        if t.state == TrialState.COMPLETE and t.values is not None and len(t.values) == len(directions) and columns["feasible"][i]
    ]
    if complete:
        values = np.array([trials[i].values for i in complete], dtype=float)
        finite = ~np.isnan(values).any(axis=1)
        mask = np.zeros(len(complete), dtype=bool)
        mask[finite] = pareto_mask(values[finite], directions)
        for i, on_front in zip(complete, mask):
            columns["pareto"][i] = bool(on_front)

    data: dict[str, pd.Series] = {}
    for name in COLUMNS:
        data[name] = pd.Series(columns[name], dtype=_dtype(name, defaults), name=name)
    df = pd.DataFrame(data, columns=list(COLUMNS))
    df.attrs.update(study_name=study.study_name, objectives=objectives, directions=directions)
    return df


def _dtype(name: str, defaults: ParticleSpec) -> Any:
    if name in ("number", "flops", "params", "duplicate_of", "stopped_at_epoch"):
        return "Int64"
    if name in ("accuracy", "accuracy_before_prune", "accuracy_fp32", "duration_s", *METRIC_COLUMNS):
        return "float64"
    if name in ("datetime_start", "datetime_complete"):
        return "datetime64[us]"
    if name in ("pareto", "feasible"):
        return bool
    if name in PARTICLE_FIELDS:
        kind = type(getattr(defaults, name))
        return "Int64" if kind is int else "float64" if kind is float else object
    return object


# A text cell beginning with one of these runs as a formula in a spreadsheet (OWASP, CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> Any:
    """``value``, or a string that would start a formula (``=``, ``+``, ``-``, ``@``, tab, CR) with a leading ``'``; numbers stay numbers."""
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def write_trials_csv(df: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write the table as CSV (no index column), atomically; returns the path.

    Text from a study (a fail reason, a baseline's name, a particle field) cannot run
    as a spreadsheet formula: ``spreadsheet_safe`` prefixes such a cell with ``'``.
    Numeric columns, negative numbers included, are written as they are.
    """
    text = [name for name in df.columns if pd.api.types.is_string_dtype(df[name].dtype)]
    safe = df.assign(**{name: df[name].map(spreadsheet_safe) for name in text}) if text else df
    return atomic_write(path, lambda tmp: safe.to_csv(tmp, index=False))

