"""Which searched Pareto members dominate which baselines: on a hand-made table, in the figures and on the dashboard."""

from __future__ import annotations

import html

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.trial import create_trial

from particle_nas.results import BaselineResult, baseline_lines, baseline_results, dashboard_html, dashboard_table, pareto_figure, pareto_mask
from particle_nas.results._dashboard_page import dashboard_pareto_figure

from results_study import STANDARD, make_study

# number, baseline, state, accuracy, flops, params, factorization/wiring
ROWS = [
    (0, "C3D", "COMPLETE", 0.50, 4_000_000, 10_000, "full/single"),
    (1, "R(2+1)D", "COMPLETE", 0.70, 2_000_000, 20_000, "r2plus1d/residual"),
    (2, "X3D", "PRUNED", None, None, None, "csn_ir/bottleneck"),
    (3, None, "COMPLETE", 0.72, 1_000_000, 30_000, "csn_ip/bottleneck"),  # dominates C3D and R(2+1)D on (accuracy, flops)
    (4, None, "COMPLETE", 0.60, 500_000, 5_000, "csn_ir/residual"),  # dominates C3D only
    (5, None, "COMPLETE", 0.80, 8_000_000, 40_000, "full/residual"),  # as costly as TSM: dominates nothing
    (6, None, "COMPLETE", 0.55, 3_000_000, 9_000, "full/plain"),  # beats C3D but is off the front (3 dominates it)
    (7, "TSM", "COMPLETE", 0.80, 8_000_000, 40_000, "temporal_shift/residual"),  # ties 5: on the front, undominated
]


def table(objectives=("accuracy", "flops")) -> pd.DataFrame:
    df = pd.DataFrame(
        {
            "number": [r[0] for r in ROWS],
            "state": [r[2] for r in ROWS],
            "factorization": [r[6].split("/")[0] for r in ROWS],
            "wiring": [r[6].split("/")[1] for r in ROWS],
            "temporal_kernel": [3] * len(ROWS),
            "accuracy": pd.Series([r[3] for r in ROWS], dtype="float64"),
            "flops": pd.Series([r[4] for r in ROWS], dtype="Int64"),
            "params": pd.Series([r[5] for r in ROWS], dtype="Int64"),
            "fail_reason": [None, None, "over budget: flops 9,000,000 > search.max_flops 8,000,000", None, None, None, None, None],
            "duplicate_of": pd.Series([None] * len(ROWS), dtype="Int64"),
            "baseline": pd.Series([r[1] for r in ROWS], dtype=object),
            "feasible": [True] * len(ROWS),
        }
    )
    directions = ["maximize"] + ["minimize"] * (len(objectives) - 1)
    complete = df["state"] == "COMPLETE"
    df["pareto"] = False
    df.loc[complete, "pareto"] = pareto_mask(df.loc[complete, list(objectives)].astype(float), directions)
    df.attrs.update(objectives=list(objectives), directions=directions)
    return df


def test_members_dominating_each_baseline_on_a_hand_made_table():
    df = table()
    assert df.loc[df["pareto"], "number"].tolist() == [3, 4, 5, 7]
    assert baseline_results(df) == [
        BaselineResult("C3D", 0, "COMPLETE", False, [3, 4]),  # most accurate dominator first; 6 is no Pareto member
        BaselineResult("R(2+1)D", 1, "COMPLETE", False, [3]),
        BaselineResult("X3D", 2, "PRUNED", False, []),
        BaselineResult("TSM", 7, "COMPLETE", True, []),
    ]
    assert baseline_lines(df) == [
        "trial 3 (csn_ip/bottleneck kt3) dominates C3D: +0.220 accuracy at 0.25x FLOPs (and 1 more Pareto member)",
        "trial 3 (csn_ip/bottleneck kt3) dominates R(2+1)D: +0.020 accuracy at 0.50x FLOPs",
        "X3D (trial 2) did not complete (PRUNED: over budget: flops 9,000,000 > search.max_flops 8,000,000)",
        "no searched Pareto member dominates TSM (trial 7, on the front)",
    ]


def test_dominance_counts_every_objective_of_the_study():
    df = table(("accuracy", "flops", "params"))  # trial 3 has more parameters than C3D and R(2+1)D
    assert df.loc[df["pareto"], "number"].tolist() == [1, 3, 4, 5, 7]  # 6 is dominated by 4; R(2+1)D has fewer params than 3
    assert {r.name: r.dominated_by for r in baseline_results(df)} == {"C3D": [4], "R(2+1)D": [], "X3D": [], "TSM": []}
    assert baseline_lines(df)[0] == "trial 4 (csn_ir/residual kt3) dominates C3D: +0.100 accuracy at 0.12x FLOPs, 0.50x params"


def test_a_table_without_baselines_has_no_lines():
    df = table()
    df["baseline"] = None
    assert baseline_results(df) == [] and baseline_lines(df) == []
    assert baseline_lines(df.drop(columns="baseline")) == []


def test_the_front_draws_the_baselines_as_labelled_markers():
    pytest.importorskip("plotly")
    df = table()
    traces = {t.name: t for t in pareto_figure(df).data}
    drawn = traces["baselines"]
    assert list(drawn.text) == ["C3D", "R(2+1)D", "TSM"]  # the complete ones
    assert list(drawn.customdata) == [0, 1, 7] and list(drawn.x) == [4e6, 2e6, 8e6] and drawn.mode == "markers+text"
    df["baseline"] = None
    assert "baselines" not in {t.name for t in pareto_figure(df).data}


@pytest.fixture
def baseline_study(tmp_path) -> optuna.Study:
    """The standard study with trials 0 (on the front) and 1 (dominated by 0 and 2) labelled as baselines."""
    source = make_study(tmp_path / "source", STANDARD)
    study = optuna.create_study(study_name="demo", storage=f"sqlite:///{tmp_path}/demo.db", directions=source.directions)
    for key, value in source.user_attrs.items():
        study.set_user_attr(key, value)
    labels = {0: "C3D", 1: "X3D"}
    for t in source.get_trials():
        attrs = {**t.user_attrs, **({"baseline": labels[t.number]} if t.number in labels else {})}
        study.add_trial(create_trial(state=t.state, values=t.values, params=t.params, distributions=t.distributions, user_attrs=attrs))
    return study


def test_the_dashboard_lists_and_draws_the_baselines(baseline_study):
    pytest.importorskip("plotly")
    df = dashboard_table(baseline_study)
    lines = baseline_lines(df)
    assert lines == [
        "no searched Pareto member dominates C3D (trial 0, on the front)",
        "trial 2 (csn_ir/inverted kt3) dominates X3D: +0.250 accuracy at 0.67x FLOPs",
    ]
    page = dashboard_html(baseline_study, run="demo")
    items = page.split('<ul id="baselines">')[1].split("</ul>")[0]
    assert items == "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    assert "2 baselines + 9 searched" in page and '"baselines": 2' in page
    traces = {t.name: t for t in dashboard_pareto_figure(df, x="flops").data}
    assert list(traces["baselines"].text) == ["C3D", "X3D"] and np.allclose(traces["baselines"].y, [0.50, 0.45])
