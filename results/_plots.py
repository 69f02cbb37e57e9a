"""Drawing the front: ``pareto_figure`` only draws what ``pareto_front`` computed.

plotly is imported inside the functions, so ``import particle_nas.results``
works without it.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from particle_nas.evaluators import METRIC_INFO, human

from ._files import atomic_write
from ._pareto import pareto_front
from ._table import PARTICLE_FIELDS

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

LOG_AXES = frozenset(name for name, info in METRIC_INFO.items() if info.log_axis)
AXIS_TITLES = {name: info.title for name, info in METRIC_INFO.items()}
# Colours and markers: the rest muted, the front strong, the knee unmistakable.
OTHER_STYLE = dict(color="rgba(120, 120, 120, 0.55)", size=7, symbol="circle")
FRONT_STYLE = dict(color="#d62728", size=10, symbol="diamond", line=dict(color="black", width=1))
KNEE_STYLE = dict(color="#ffbf00", size=18, symbol="star", line=dict(color="black", width=1.5))
STEP_STYLE = dict(color="#d62728", width=2)
# A marker trace with more points is drawn by WebGL (scattergl): SVG slows the page with tens of thousands.
WEBGL_ABOVE = 2000
BASELINE_STYLE = dict(color="#9467bd", size=13, symbol="triangle-up", line=dict(color="black", width=1))


def _plotly() -> Any:
    try:
        import plotly.graph_objects as go
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("pareto_figure needs plotly, which is not installed: pip install plotly") from err
    return go


def plotly_text(value: Any) -> str:
    """A string from a study, made safe for plotly text (labels, hover text, titles, category ticks).

    plotly.js draws some tags it finds in text (``<a href>`` links, ``<b>``, ``<br>``, ...)
    and decodes ``&amp;``, ``&lt;`` and ``&gt;``; with those three escaped, a label such as
    ``<a href="https://...">`` is shown as written and never becomes a link. (Tick text
    of parallel coordinates is drawn as plain text and needs none.)
    """
    return html.escape(str(value), quote=False)


def _is_missing(value: Any) -> bool:
    try:
        return value is None or bool(value != value)  # NaN and pandas NA
    except TypeError:  # pandas NA refuses bool()
        return True


def hover_text(row: Any) -> str:
    """Hover label of one trial: number, accuracy, flops, params, then one particle field per line."""
    lines = [
        f"<b>trial {int(row['number'])}</b>",
        *(f"{name}: {METRIC_INFO[name].format(row.get(name))}" for name in ("accuracy", "flops", "params")),
    ]
    for name in PARTICLE_FIELDS:
        value = row.get(name)
        if not _is_missing(value):
            lines.append(f"{name}: {plotly_text(value)}")
    if not _is_missing(row.get("duplicate_of")):
        lines.append(f"duplicate of trial {int(row['duplicate_of'])}")
    return "<br>".join(lines)


def labelled_trace(df: pd.DataFrame, column: str, *, x: str, y: str, name: str, style: dict[str, Any]) -> go.Scatter | None:
    """The COMPLETE trials labelled in ``column`` (a baseline's or preset's name) as labelled markers; None when there are none.

    An overlay: those trials are drawn in the other traces too.
    """
    go = _plotly()
    if column not in df.columns:
        return None
    rows = df[(df["state"].astype(str) == "COMPLETE") & df[column].notna() & df[x].notna() & df[y].notna()]
    if rows.empty:
        return None
    return go.Scatter(
        x=rows[x].astype(float).tolist(),
        y=rows[y].astype(float).tolist(),
        mode="markers+text",
        name=name,
        text=[plotly_text(label) for label in rows[column].tolist()],
        textposition="top center",
        marker=style,
        customdata=rows["number"].astype(int).tolist(),
        hovertemplate="<b>%{text}</b> (trial %{customdata})<br>" + f"{x}: %{{x:.4g}}<br>{y}: %{{y:.4f}}<extra></extra>",
    )


def pareto_figure(df: pd.DataFrame, *, x: str = "flops", y: str = "accuracy", title: str | None = None) -> go.Figure:
    """All COMPLETE trials of a ``trials_table`` on (x, y), the front highlighted.

    Every complete trial with both values is drawn exactly once, in one of
    three marker traces: "trials" (dominated), "Pareto front" and "knee"
    (one of more than ``WEBGL_ABOVE`` points is a WebGL ``Scattergl``).
    A fourth trace, "front (step)", is a line only: the staircase joining the
    front members; a fifth, "baselines", labels the baseline trials (search.baselines)
    over the others, when the study has any. flops and params axes are logarithmic (when all values are
    positive). The front is the two-column front of ``pareto_front(df, x=, y=)``.
    """
    go = _plotly()
    front = pareto_front(df, x=x, y=y)
    members = set(front.members)
    others = [label for label in front.complete if label not in members]
    on_front = [label for label in front.members if label != front.knee]
    knee = [] if front.knee is None else [front.knee]

    def markers(labels: list[Any], name: str, style: dict[str, Any]) -> go.Scatter:
        rows = df.loc[labels]
        trace = go.Scattergl if len(rows) > WEBGL_ABOVE else go.Scatter
        return trace(
            x=rows[x].astype(float).tolist(),
            y=rows[y].astype(float).tolist(),
            mode="markers",
            name=name,
            marker=style,
            text=[hover_text(row) for row in rows.to_dict("records")],  # records, not iterrows: a pandas row costs a millisecond
            customdata=rows["number"].astype(int).tolist(),
            hovertemplate="%{text}<extra></extra>",
        )

    fig = go.Figure()
    fig.add_trace(markers(others, "trials", OTHER_STYLE))
    step = df.loc[front.members]
    fig.add_trace(
        go.Scatter(
            x=step[x].astype(float).tolist(),
            y=step[y].astype(float).tolist(),
            mode="lines",
            name="front (step)",
            line=dict(shape="hv", **STEP_STYLE),
            hoverinfo="skip",
            showlegend=False,
        )
    )
    fig.add_trace(markers(on_front, "Pareto front", FRONT_STYLE))
    fig.add_trace(markers(knee, "knee", KNEE_STYLE))
    baselines = labelled_trace(df, "baseline", x=x, y=y, name="baselines", style=BASELINE_STYLE)
    if baselines is not None:
        fig.add_trace(baselines)

    n_complete = len(front.complete)
    if title is None:
        name = df.attrs.get("study_name")
        title = f"{plotly_text(name) + ': ' if name else ''}{len(front.members)} on the front of {n_complete} complete trials"
    fig.update_layout(
        title=title,
        template="plotly_white",
        hovermode="closest",
        legend=dict(orientation="h", yanchor="bottom", y=1.01, xanchor="right", x=1.0),
    )
    for column, update in ((x, fig.update_xaxes), (y, fig.update_yaxes)):
        values = df.loc[front.complete, column].astype(float) if front.complete else []
        log = column in LOG_AXES and len(values) > 0 and bool((values > 0).all())
        update(title_text=AXIS_TITLES.get(column, column), type="log" if log else "linear")
    return fig


def write_html(fig: go.Figure, path: str | os.PathLike[str]) -> Path:
    """Write ``fig`` as one self-contained HTML file (plotly.js embedded, works offline), atomically."""
    return atomic_write(
        path,
        lambda tmp: fig.write_html(tmp, include_plotlyjs=True, full_html=True, config={"displaylogo": False}),
    )
