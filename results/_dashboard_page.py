"""The run dashboard: one self-contained HTML page that only draws what ``_dashboard`` computed.

plotly.js is embedded once in the page head, so the file opens offline and
each figure is a plain ``<div>`` with its ``Plotly.newPlot`` call. Element ids
(used by the browser test): ``pareto-flops``, ``pareto-params``,
``pareto-latency_ms``, ``hypervolume``, ``parallel``, ``importance``,
``members``.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from particle_nas.evaluators import METRIC_INFO

from ._dashboard import (
    HypervolumeHistory,
    Importance,
    complete_rows,
    failed_trials,
    cost_axes,
    dashboard_table,
    hypervolume_history,
    study_yardstick,
    param_importance,
    parallel_axes,
    pareto_members,
    replay_note,
    task_note,
    searched_axes,
)
from ._files import atomic_write
from ._pareto import baseline_lines, pareto_front
from ._plots import AXIS_TITLES, _plotly, labelled_trace, pareto_figure, plotly_text

if TYPE_CHECKING:
    import optuna
    import pandas as pd
    import plotly.graph_objects as go

PRESET_STYLE = dict(color="#1f77b4", size=13, symbol="square", line=dict(color="black", width=1))
PLOT_CONFIG = {"displaylogo": False, "responsive": True}


# ---------------------------------------------------------------- figures
def preset_trace(df: pd.DataFrame, *, x: str, y: str = "accuracy") -> go.Scatter | None:
    """The reference presets evaluated in the study, as labelled markers (an overlay: they are also trials)."""
    return labelled_trace(df, "preset", x=x, y=y, name="reference presets", style=PRESET_STYLE)


def dashboard_pareto_figure(df: pd.DataFrame, *, x: str) -> go.Figure:
    """``pareto_figure`` on (x, accuracy) (baselines labelled) with the presets drawn over it."""
    fig = pareto_figure(df, x=x, y="accuracy", title="")
    overlay = preset_trace(df, x=x)
    if overlay is not None:
        fig.add_trace(overlay)
    fig.update_layout(title=None, height=430, margin=dict(l=60, r=20, t=30, b=50), legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0))
    return fig


def hypervolume_figure(history: HypervolumeHistory) -> go.Figure:
    go = _plotly()
    fig = go.Figure(
        go.Scatter(
            x=history.numbers,
            y=history.values,
            mode="lines+markers",
            line=dict(shape="hv", color="#d62728", width=2),
            marker=dict(size=5, color="#d62728"),
            name="hypervolume",
            hovertemplate="after trial %{x}: %{y:.4f}<extra></extra>",
        )
    )
    fig.update_layout(
        template="plotly_white",
        height=380,
        margin=dict(l=60, r=20, t=20, b=50),
        xaxis_title="trial number",
        yaxis_title=f"hypervolume ({history.yardstick.scale} {history.cost}, fraction of the box)",
    )
    return fig


def parallel_figure(df: pd.DataFrame, axes: list[str]) -> go.Figure:
    go = _plotly()
    drawn, accuracy, numbers = parallel_axes(df, axes)
    dimensions = []
    for axis in drawn:
        dimension: dict[str, Any] = dict(label=plotly_text(axis.name), values=axis.values)
        if axis.tickvals is not None:  # parcoords draws tick text as plain text (no tags read): left as it is
            dimension.update(tickvals=axis.tickvals, ticktext=axis.ticktext, range=[-0.25, max(axis.tickvals) + 0.25])
        dimensions.append(dimension)
    dimensions.append(dict(label="accuracy", values=accuracy))
    fig = go.Figure(
        go.Parcoords(
            line=dict(color=accuracy, colorscale="Viridis", showscale=True, colorbar=dict(title="accuracy")),
            dimensions=dimensions,
        )
    )
    fig.update_layout(height=420, margin=dict(l=90, r=60, t=50, b=30))
    return fig


def importance_figure(importance: Importance) -> go.Figure:
    go = _plotly()
    names = list(importance.values)[::-1]  # most important on top
    fig = go.Figure(
        go.Bar(
            x=[importance.values[n] for n in names],
            y=[plotly_text(n) for n in names],
            orientation="h",
            marker_color="#2ca02c",
            hovertemplate="%{y}: %{x:.3f}<extra></extra>",
        )
    )
    fig.update_layout(
        template="plotly_white",
        height=110 + 40 * len(names),
        margin=dict(l=130, r=20, t=20, b=50),
        xaxis_title="importance (sums to 1)",
    )
    return fig


# ---------------------------------------------------------------- the page
def _div(fig: go.Figure, div_id: str) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=PLOT_CONFIG)


def _cell(value: Any, column: str) -> str:
    if value is None:
        return '<td data-sort=""></td>'
    sort = html.escape(str(value), quote=True)
    if column in METRIC_INFO:
        text = METRIC_INFO[column].format(value)
    else:
        text = str(value)
    return f'<td data-sort="{sort}">{html.escape(text)}</td>'


def failed_table(failed: list[dict[str, Any]]) -> str:
    """The trials that did not complete, with their recorded reason, as a sortable HTML table."""
    columns = ("number", "state", "particle", "epoch", "reason")  # epoch: the last one a trial stopped early trained
    titles = {"epoch": "epoch reached"}
    head = "".join(f'<th data-col="{i}" title="click to sort">{titles.get(c, c)}</th>' for i, c in enumerate(columns))
    body = "".join(f'<tr data-trial="{f["number"]}">' + "".join(_cell(f[c], c) for c in columns) + "</tr>" for f in failed)
    return f'<table id="failed" class="sortable"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def members_table(members: list[dict[str, Any]]) -> str:
    """The Pareto members as a sortable HTML table (click a header), each with its YAML in a fold-out."""
    # Columns every member leaves empty, and particle fields all members share, are left out (the YAML has them).
    keep = {"number", "accuracy", "flops", "params"}
    columns = [
        c
        for c in (members[0] if members else [])
        if c != "yaml" and any(m[c] is not None for m in members) and (c in keep or len(members) == 1 or len({repr(m[c]) for m in members}) > 1)
    ]
    head = "".join(f'<th data-col="{i}" title="click to sort">{html.escape(c)}</th>' for i, c in enumerate(columns))
    body = []
    for member in members:
        cells = "".join(_cell(member[c], c) for c in columns)
        yaml_text = member["yaml"]
        fold = f"<details><summary>YAML</summary><pre>{html.escape(yaml_text)}</pre></details>" if yaml_text else ""
        body.append(f'<tr data-trial="{member["number"]}">{cells}<td>{fold}</td></tr>')
    return f'<table id="members" class="sortable"><thead><tr>{head}<th>exported YAML</th></tr></thead><tbody>{"".join(body)}</tbody></table>'


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; background: #f4f5f7; color: #222; }
header { background: #1f2a44; color: white; padding: 14px 28px; }
header h1 { margin: 0 0 4px 0; font-size: 22px; }
header p { margin: 0; opacity: 0.85; font-size: 14px; }
header p.replay { margin-top: 6px; opacity: 1; background: #ffd866; color: #222; padding: 4px 8px; border-radius: 4px; font-weight: 600; }
main { padding: 16px 24px; display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 16px; }
@media (max-width: 1100px) { main { grid-template-columns: minmax(0, 1fr); } }
section { background: white; border-radius: 8px; box-shadow: 0 1px 3px rgba(0,0,0,0.12); padding: 10px 14px; min-width: 0; }
section.wide { grid-column: 1 / -1; overflow-x: auto; }
section h2 { font-size: 16px; margin: 4px 0 6px 0; }
section p.note { font-size: 13px; color: #555; margin: 4px 0; }
table.sortable { border-collapse: collapse; font-size: 13px; width: 100%; }
table.sortable th, table.sortable td { border-bottom: 1px solid #e2e4e8; padding: 4px 8px; text-align: left; vertical-align: top; white-space: nowrap; }
table.sortable tbody tr:hover { background: #f6f8fc; }
table.sortable th { cursor: pointer; background: #eef0f4; user-select: none; position: sticky; top: 0; }
table.sortable th.asc::after { content: " \\25B2"; } table.sortable th.desc::after { content: " \\25BC"; }
pre { background: #f7f7f9; padding: 6px; font-size: 12px; max-height: 320px; overflow: auto; }
"""

_SORT_JS = """
// plots drawn while the page was still being laid out take their final width here
window.addEventListener("load", function () {
  document.querySelectorAll(".js-plotly-plot").forEach(function (div) { Plotly.Plots.resize(div); });
});
document.querySelectorAll("table.sortable th[data-col]").forEach(function (th) {
  th.addEventListener("click", function () {
    var table = th.closest("table"), body = table.tBodies[0], col = +th.dataset.col;
    var asc = !th.classList.contains("asc");
    table.querySelectorAll("th").forEach(function (h) { h.classList.remove("asc", "desc"); });
    th.classList.add(asc ? "asc" : "desc");
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[col].dataset.sort, y = b.cells[col].dataset.sort;
      var nx = parseFloat(x), ny = parseFloat(y), c;
      if (x === "" || y === "") { c = (x === "") - (y === ""); return c; }
      c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return asc ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"""


def dashboard_html(study: optuna.Study, *, run: str, table: pd.DataFrame | None = None) -> str:
    """The dashboard page of ``study`` as one HTML string (plotly.js embedded); ``table``: its ``trials_table``, when read already."""
    _plotly()
    from plotly.offline import get_plotlyjs

    df = dashboard_table(study, table=table)
    rows = complete_rows(df)
    sections: list[str] = []
    front = pareto_front(df, x="flops", y="accuracy")
    for cost in cost_axes(df):
        fig = dashboard_pareto_figure(df, x=cost)
        on = len(pareto_front(df, x=cost, y="accuracy").members)
        sections.append(
            f'<section><h2>accuracy vs {html.escape(AXIS_TITLES.get(cost, cost))}</h2>'
            f'<p class="note">{on} of {len(rows)} complete trials on this front (red diamonds; the star is the knee). Hover a point for its particle.</p>'
            f"{_div(fig, f'pareto-{cost}')}</section>"
        )
    history = hypervolume_history(df, cost="flops", yardstick=study_yardstick(study))
    sections.append(f'<section><h2>hypervolume of the accuracy–FLOPs front over trials (log FLOPs)</h2><p class="note">{html.escape(history.description)}.</p>{_div(hypervolume_figure(history), "hypervolume")}</section>')
    importance = param_importance(study)
    if importance.values:
        imp = _div(importance_figure(importance), "importance")
    else:
        imp = f'<div id="importance"><p class="note">Not available: {html.escape(importance.reason)}</p></div>'
    sections.append(
        f'<section><h2>which axes matter</h2><p class="note">Optuna parameter importance for accuracy ({html.escape(importance.method)}); '
        f"axes asked in every trial only.</p>{imp}</section>"
    )
    if len(sections) % 2:  # an odd panel out takes the whole row rather than leave a hole
        sections[-1] = sections[-1].replace("<section>", '<section class="wide">', 1)
    axes = searched_axes(study, df)
    if axes:
        n_lines = len(parallel_axes(df, axes)[2])
        sections.append(
            f'<section class="wide"><h2>searched axes</h2><p class="note">One line per complete trial ({n_lines}), coloured by accuracy; '
            f"drag along an axis to keep only the trials crossing that range.</p>{_div(parallel_figure(df, axes), 'parallel')}</section>"
        )
    members = pareto_members(df, run=run)
    sections.append(
        f'<section class="wide"><h2>Pareto members ({len(members)})</h2>'
        f'<p class="note">Non-dominated complete trials under all the study\'s objectives ({html.escape(", ".join(df.attrs.get("objectives", [])))}). '
        f"Click a header to sort; open YAML for the particle file <code>particle-nas export {html.escape(run)} --pick ...</code> writes.</p>"
        f"{members_table(members)}</section>"
    )
    beaten = baseline_lines(df)
    if beaten:
        items = "".join(f"<li>{html.escape(line)}</li>" for line in beaten)
        sections.append(
            f'<section class="wide"><h2>baselines ({len(beaten)})</h2>'
            '<p class="note">The hand-designed particles of classic networks (<code>search.baselines</code>), trained in this run\'s proxy network '
            "like any trial (purple triangles on the fronts), and the searched Pareto members that dominate each under all the study's objectives.</p>"
            f'<ul id="baselines">{items}</ul></section>'
        )
    failed = failed_trials(df)
    if failed:
        sections.append(
            f'<section class="wide"><h2>trials that did not complete ({len(failed)})</h2>'
            f'<p class="note">Failed, pruned or still running, with the reason recorded on each (tracebacks are in search.log).</p>'
            f"{failed_table(failed)}</section>"
        )
    knee = "" if front.knee is None else f"; knee: trial {int(df.loc[front.knee, 'number'])} (accuracy {METRIC_INFO['accuracy'].format(df.loc[front.knee, 'accuracy'])}, {METRIC_INFO['flops'].format(df.loc[front.knee, 'flops'])})"
    states = ", ".join(f"{n} {s.lower()}" for s, n in df["state"].value_counts().items())
    presets = int(rows["preset"].notna().sum())
    baselines = int(df["baseline"].notna().sum())
    summary = (
        f"{len(df)} trials ({states}); {len(front.members)} on the accuracy–FLOPs front{knee}; "
        f"hypervolume {history.values[-1] if history.values else 0:.4f}" + (f"; {presets} reference presets" if presets else "")
        + (f"; {baselines} baselines + {len(df) - baselines} searched" if baselines else "")
    )
    title = f"particle-nas: {study.study_name}"
    replay = replay_note(study)
    banner = f'<p class="replay" id="replay">{html.escape(replay)}</p>' if replay else ""
    kind, task = task_note(study)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head><body>'
        f'<header><h1>{html.escape(title)}</h1><p>{html.escape(summary)}</p><p id="task">{html.escape(task)}</p>{banner}</header>'
        f"<main>{''.join(sections)}</main><script>{_SORT_JS}</script>"
        f'<script type="application/json" id="dashboard-data">{json.dumps({"complete": len(rows), "front_flops": len(front.members), "presets": presets, "baselines": baselines, "replay": replay is not None, "task": kind})}</script>'
        "</body></html>\n"
    )


def write_dashboard(study: optuna.Study, path: str | os.PathLike[str], *, run: str | None = None, table: pd.DataFrame | None = None) -> Path:
    """Write the dashboard of ``study`` to ``path`` (one self-contained HTML file), atomically; ``table`` as for dashboard_html."""
    path = Path(path)
    text = dashboard_html(study, run=run or path.resolve().parent.name, table=table)
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
