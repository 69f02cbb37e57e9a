from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from particle_nas.results import human, pareto_figure, pareto_front, trials_table, write_html

pytest.importorskip("plotly")


def marker_traces(fig):
    return [t for t in fig.data if "markers" in (t.mode or "")]


def test_every_complete_trial_is_one_point(study):
    df = trials_table(study)
    fig = pareto_figure(df)
    n_complete = int((df["state"] == "COMPLETE").sum())
    assert sum(len(t.x) for t in marker_traces(fig)) == n_complete == 7
    drawn = sorted(n for t in marker_traces(fig) for n in t.customdata)
    assert drawn == sorted(df.loc[df["state"] == "COMPLETE", "number"])


def test_front_highlighted_step_line_and_knee(study):
    df = trials_table(study)
    fig = pareto_figure(df)
    traces = {t.name: t for t in fig.data}
    assert set(traces) == {"trials", "front (step)", "Pareto front", "knee"}
    assert list(traces["knee"].customdata) == [3]
    assert sorted(traces["Pareto front"].customdata) == [0, 2, 5, 8]
    assert sorted(traces["trials"].customdata) == [1, 10]
    step = traces["front (step)"]
    assert step.mode == "lines" and step.line.shape == "hv"
    assert list(step.x) == [1e6, 2e6, 4e6, 4e6, 4e7]  # best (fewest) flops first
    assert traces["Pareto front"].marker.symbol != traces["trials"].marker.symbol
    assert traces["Pareto front"].marker.color != traces["trials"].marker.color
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "linear"


def test_hover_text(study):
    df = trials_table(study)
    fig = pareto_figure(df)
    knee = {t.name: t for t in fig.data}["knee"].text[0]
    lines = knee.split("<br>")
    assert lines[0] == "<b>trial 3</b>"
    assert "accuracy: 0.8000" in lines
    assert "flops: 4 MFLOPs" in lines
    assert "params: 12 k" in lines
    assert "factorization: spatial_only" in lines and "temporal_kernel: 1" in lines
    assert any(line.startswith("shift_fraction: ") for line in lines)
    assert any("duplicate of trial 3" in text for text in {t.name: t for t in fig.data}["Pareto front"].text)


def test_other_axes(study):
    df = trials_table(study)
    fig = pareto_figure(df, x="params", y="accuracy", title="by params")
    assert fig.layout.title.text == "by params"
    assert fig.layout.xaxis.type == "log"
    assert sum(len(t.x) for t in marker_traces(fig)) == 7
    with pytest.raises(ValueError, match="axis column must be one of .*but got 'latency'"):
        pareto_figure(df, x="latency")


def test_empty_and_nonpositive(tmp_path):
    from results_study import make_study

    df = trials_table(make_study(tmp_path / "none", [("FAIL", None, None, None)]))
    fig = pareto_figure(df)
    assert sum(len(t.x) for t in marker_traces(fig)) == 0
    df = trials_table(make_study(tmp_path / "zero", [("COMPLETE", 0.5, 0, 0), ("COMPLETE", 0.6, 10, 5)]))
    assert pareto_figure(df).layout.xaxis.type == "linear"  # log axis impossible with 0 flops


def test_html_is_self_contained(study, tmp_path):
    df = trials_table(study)
    fig = pareto_figure(df)
    path = write_html(fig, tmp_path / "out" / "pareto.html")
    html = path.read_text(encoding="utf-8")
    assert [p.name for p in path.parent.iterdir()] == ["pareto.html"]  # no temporary left behind
    assert len(html) > 1_000_000 and "plotly.js v" in html  # the bundle is inline
    assert re.search(r"<script[^>]*\bsrc\s*=", html) is None  # nothing fetched from outside
    # The embedded figure holds exactly the complete trials as points (customdata = trial numbers).
    call = html.rindex("Plotly.newPlot(")
    data, _ = json.JSONDecoder().raw_decode(html, html.index("[", call))
    points = [t for t in data if "markers" in t.get("mode", "")]
    assert {t["name"] for t in points} == {"trials", "Pareto front", "knee"}
    numbers = [n for t in points for n in t["customdata"]]
    assert sorted(numbers) == sorted(df.loc[df["state"] == "COMPLETE", "number"])
    assert sum(len(t["x"]) for t in points) == 7


def test_human_units():
    assert human(12_345_678, "FLOPs") == "12.3 MFLOPs"
    assert human(999, "FLOPs") == "999 FLOPs"
    assert human(2.5e9, "FLOPs") == "2.5 GFLOPs"
    assert human(45_600) == "45.6 k"
    assert human(None) == "n/a"


def test_importing_results_does_not_import_plotly():
    code = "import sys, particle_nas.results; assert 'plotly' not in sys.modules, 'plotly imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_front_is_plain_data(study):
    front = pareto_front(trials_table(study), x="flops", y="accuracy")
    assert front.x == "flops" and len(front.members) == 5
