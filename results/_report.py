"""Everything a finished (or interrupted) run leaves behind: trials.csv, pareto.html, dashboard.html, best.yaml."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from particle_nas.search import RunLayout

from ._dashboard_page import write_dashboard
from ._export import particle_document, write_particle_yaml
from ._pareto import pick as pick_row
from ._plots import pareto_figure, write_html
from ._table import trials_table, write_trials_csv

if TYPE_CHECKING:
    import optuna


@dataclass(frozen=True)
class RunOutputs:
    """What ``write_run_outputs`` wrote, and the counts behind it."""

    trials_csv: Path  # one row per trial (trials_table)
    pareto_html: Path  # the (flops, accuracy) front, self-contained HTML
    best_yaml: Path  # the picked particle (particle_document)
    n_trials: int  # all trials, every state
    n_complete: int
    n_failed: int
    n_pareto: int  # COMPLETE trials on the study's front (all objectives)
    chosen: int  # trial number of the picked particle
    pick: str  # the rule that picked it
    dashboard_html: Path | None = None  # the run dashboard (fronts, hypervolume, importance, members), self-contained HTML


def write_run_outputs(study: optuna.Study, run_dir: str | os.PathLike[str], *, pick: str = "knee") -> RunOutputs:
    """Write ``trials.csv``, ``pareto.html``, ``dashboard.html`` and ``best.yaml`` into ``run_dir``.

    ``trials.csv`` is always written first. With no COMPLETE trial there is
    nothing to plot or pick: it then raises ValueError (naming what was written
    and the first failure reason) rather than returning half a result. A
    ``pick`` rule that no trial satisfies raises the ValueError of ``pick``
    after trials.csv and pareto.html are written. The run name in best.yaml is
    the directory name.
    """
    run_dir = Path(run_dir)
    layout = RunLayout(run_dir)
    df = trials_table(study)
    trials_csv = write_trials_csv(df, layout.trials_csv)
    states = df["state"].value_counts()
    n_complete = int(states.get("COMPLETE", 0))
    n_failed = int(states.get("FAIL", 0))
    if n_complete == 0:
        counts = ", ".join(f"{count} {state}" for state, count in states.items()) or "no trials at all"
        reasons = df["fail_reason"].dropna()
        first = f" The first failure: trial {int(df.loc[reasons.index[0], 'number'])}: {reasons.iloc[0]}" if len(reasons) else ""
        first = first.rstrip(".") + "." if first else ""
        raise ValueError(
            f"study {study.study_name!r} must have a COMPLETE trial to plot and pick from, but got {counts}; "
            f"wrote {trials_csv} only.{first}"
        )
    pareto_html = write_html(pareto_figure(df), layout.pareto_html)
    dashboard = write_dashboard(study, layout.dashboard_html, run=str(run_dir), table=df)
    row = pick_row(df, pick)
    doc = particle_document(row, run=run_dir.resolve().name, pick=pick)
    best_yaml = write_particle_yaml(doc, layout.best_yaml)
    return RunOutputs(
        trials_csv=trials_csv,
        pareto_html=pareto_html,
        best_yaml=best_yaml,
        n_trials=len(df),
        n_complete=n_complete,
        n_failed=n_failed,
        n_pareto=int(df["pareto"].sum()),
        chosen=int(row["number"]),
        pick=pick,
        dashboard_html=dashboard,
    )
