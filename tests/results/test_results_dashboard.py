from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from browser import chromium_page
from results_study import NETWORK, PARTICLES, STANDARD, make_study
from particle_nas.results import (
    dashboard_table,
    hypervolume_history,
    param_importance,
    parallel_axes,
    pareto_front,
    pareto_members,
    searched_axes,
    study_yardstick,
    write_dashboard,
    write_run_outputs,
)
from particle_nas.search import YARDSTICK_ATTR, Yardstick
from particle_nas.space import ParticleSpec

# Reference presets added to a study the way a preset evaluation would be recorded:
# a COMPLETE trial carrying user attribute ``preset``.
PRESETS = [
    ("R(2+1)D-18", ParticleSpec(factorization="r2plus1d", wiring="residual"), 0.84, 30_000_000, 60_000),
    ("CSN-ir", ParticleSpec(factorization="csn_ir", wiring="bottleneck", expansion=0.25), 0.55, 6_000_000, 20_000),
]


def add_presets(study: optuna.Study, *, latency: bool = False) -> None:
    for label, particle, accuracy, flops, params in PRESETS:
        attrs = dict(particle=particle.to_dict(), network=NETWORK.replace(particle=particle).to_dict(), accuracy=accuracy, flops=flops, params=params, preset=label)
        if latency:
            attrs["latency_ms"] = flops / 1e6
        study.add_trial(
            create_trial(
                state=TrialState.COMPLETE,
                values=[accuracy, flops],
                params={"factorization": particle.factorization},
                distributions={"factorization": CategoricalDistribution([p.factorization for p in PARTICLES])},
                user_attrs=attrs,
            )
        )


def with_latency(source: optuna.Study, path: Path) -> optuna.Study:
    """A copy of ``source`` at ``path/study.db`` where every complete trial has latency_ms (0.5 ms per MFLOP)."""
    path.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(study_name=path.name, storage=f"sqlite:///{path}/study.db", directions=source.directions)
    for key, value in source.user_attrs.items():
        study.set_user_attr(key, value)
    for trial in source.get_trials():
        attrs = dict(trial.user_attrs)
        if trial.state == TrialState.COMPLETE:
            attrs["latency_ms"] = attrs["flops"] / 2e6
        study.add_trial(create_trial(state=trial.state, values=trial.values, params=trial.params, distributions=trial.distributions, user_attrs=attrs))
    return study


@pytest.fixture
def preset_run(tmp_path: Path) -> Path:
    path = tmp_path / "runs" / "demo"
    study = with_latency(make_study(tmp_path / "source", STANDARD), path)
    add_presets(study, latency=True)
    return path


# ---------------------------------------------------------------- computed without plotly or a browser
def test_dashboard_table_reads_presets_and_latency(preset_run):
    df = dashboard_table(optuna.load_study(study_name="demo", storage=f"sqlite:///{preset_run}/study.db"))
    assert df["preset"].dropna().tolist() == ["R(2+1)D-18", "CSN-ir"]
    assert df.loc[df["number"] == 3, "latency_ms"].item() == 2.0
    assert math.isnan(df.loc[df["number"] == 4, "latency_ms"].item())  # the failed trial


def test_hypervolume_history_standard_study(study):
    df = dashboard_table(study)
    ref = 40_000_000 * 1.1
    history = hypervolume_history(df, yardstick=Yardstick(scale="linear", low=0.0, high=ref))  # the earlier, linear yardstick
    assert history.numbers == [0, 1, 2, 3, 5, 8, 10]
    assert "accuracy 0" in history.description and "flops (linear) from 0 to 4.4e+07" in history.description
    # after trial 0 alone: accuracy 0.5 over flops [1e6, ref]
    assert history.values[0] == pytest.approx(0.5 * (ref - 1e6) / ref)
    assert all(b >= a for a, b in zip(history.values, history.values[1:]))  # never decreases
    assert history.values[1] == history.values[0]  # trial 1 is dominated
    assert history.values[-1] == history.values[-2]  # so is trial 10
    # the last value is the hypervolume of the final front, computed independently
    front = df.loc[pareto_front(df).members, ["accuracy", "flops"]].to_numpy(dtype=float)
    area = sum((b - a) * y for (a, y), (b, _) in zip(sorted(((f, acc) for acc, f in front)), [*sorted(((f, acc) for acc, f in front))[1:], (ref, 0)]))
    assert history.values[-1] == pytest.approx(area / ref)
    # without a yardstick of its space (a study the search did not open): log10 flops from the cheapest trial to 1.1 x the costliest
    logged = hypervolume_history(df)
    assert logged.yardstick.scale == "log" and logged.yardstick.low == 1e6 and logged.yardstick.high == pytest.approx(ref)
    assert logged.values[0] == pytest.approx(0.5)  # trial 0 is the cheapest: it covers the whole cost axis at accuracy 0.5
    assert "log10 flops from 1e+06 to 4.4e+07 (the cheapest trial to 1.1 x the costliest" in logged.description
    # a study opened by the search holds its space's yardstick, which the dashboard then uses
    opened = optuna.create_study(directions=["maximize", "minimize"])
    assert study_yardstick(opened) is None
    opened.set_user_attr(YARDSTICK_ATTR, Yardstick(low=5e5, high=1e8, bounds="the space's").to_dict())
    assert study_yardstick(opened) == Yardstick(low=5e5, high=1e8, bounds="the space's")
    assert study_yardstick(opened, scale="linear").low == 0.0 and study_yardstick(opened, cost="params") is None


def test_hypervolume_refuses_a_column_to_maximize(study):
    with pytest.raises(ValueError, match="cost must be a column to minimize"):
        hypervolume_history(dashboard_table(study), cost="accuracy")


def test_importance_needs_enough_trials(tmp_path):
    study = make_study(tmp_path / "tiny", STANDARD[:2])
    result = param_importance(study)
    assert result.values == {} and "at least 4 complete trials" in result.reason and "has 2" in result.reason


def test_importance_single_valued_axis_is_left_out(tmp_path):
    rows = [("COMPLETE", 0.1 * i, 1_000 * i, 10 * i) for i in range(1, 7)]
    study = make_study(tmp_path / "same", rows)
    # every trial's param is its PARTICLES entry; six rows visit six factorizations, so force one value:
    fixed = make_study(tmp_path / "fixed", [("COMPLETE", 0.5, 1000, 10)] * 1)
    assert param_importance(fixed).values == {}
    result = param_importance(study)
    assert list(result.values) == ["factorization"] and result.values["factorization"] == pytest.approx(1.0)


def test_importance_ranks_the_axis_that_decides_accuracy(tmp_path):
    # accuracy depends on the categorical "wiring" only; "noise" is an unrelated categorical axis
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/s.db", directions=["maximize", "minimize"])
    rng = np.random.default_rng(0)
    dists = {"wiring": CategoricalDistribution(["plain", "residual"]), "noise": CategoricalDistribution(["a", "b", "c"])}
    for _ in range(24):
        params = {"wiring": str(rng.choice(["plain", "residual"])), "noise": str(rng.choice(["a", "b", "c"]))}
        acc = (0.8 if params["wiring"] == "residual" else 0.3) + float(rng.normal(0, 0.01))
        study.add_trial(create_trial(state=TrialState.COMPLETE, values=[acc, 1.0], params=params, distributions=dists, user_attrs={"accuracy": acc}))
    result = param_importance(study)
    assert result.reason == ""
    assert list(result.values)[0] == "wiring" and result.values["wiring"] > result.values.get("noise", 0.0)
    assert sum(result.values.values()) == pytest.approx(1.0)


def test_parallel_axes_encode_categories(study):
    df = dashboard_table(study)
    axes = searched_axes(study, df)
    assert axes == ["factorization"]
    drawn, accuracy, numbers = parallel_axes(df, ["factorization", "temporal_kernel", "expansion"])
    assert numbers == [0, 1, 2, 3, 5, 8, 10]
    assert accuracy == [0.5, 0.45, 0.7, 0.8, 0.82, 0.8, 0.6]
    fact = drawn[0]
    assert fact.ticktext == sorted({p.factorization for p in PARTICLES})
    for value, number in zip(fact.values, numbers):
        assert fact.ticktext[int(value)] == PARTICLES[number % len(PARTICLES)].factorization
    assert drawn[1].ticktext == ["1", "3", "5"]  # numeric with few values: categories in numeric order


def test_pareto_members_carry_their_yaml(study):
    df = dashboard_table(study)
    members = pareto_members(df, run="runs/demo")
    assert [m["number"] for m in members] == [5, 3, 8, 2, 0]  # best accuracy first, then trial number
    assert members[2]["duplicate_of"] == 3
    doc = yaml.safe_load(members[0]["yaml"])
    assert doc["source"]["trial"] == 5 and doc["particle"] == PARTICLES[5].to_dict()
    assert doc["network"]["widths"] == list(NETWORK.widths)


# ---------------------------------------------------------------- the page in a real browser
def _load(page, path: Path) -> None:
    page.goto(path.resolve().as_uri(), wait_until="load")
    page.wait_for_function("() => window.Plotly && document.querySelectorAll('.js-plotly-plot').length >= 4")


def test_dashboard_in_headless_chromium(preset_run, tmp_path):
    study = optuna.load_study(study_name="demo", storage=f"sqlite:///{preset_run}/study.db")
    outputs = write_run_outputs(study, preset_run)
    page_path = outputs.dashboard_html
    assert page_path == preset_run / "dashboard.html" and (preset_run / "pareto.html").is_file()
    text = page_path.read_text(encoding="utf-8")
    assert "cdn.plot.ly" not in text.split("</head>")[1]  # figures do not fetch plotly.js
    df = dashboard_table(study)
    n_complete = int((df["state"] == "COMPLETE").sum())
    assert n_complete == 9

    with chromium_page(tmp_path / "profile") as page:
        _load(page, page_path)
        assert page.js_errors == []
        assert page.remote_requests == []  # works offline
        for cost in ("flops", "params", "latency_ms"):
            traces = page.evaluate(f"() => document.getElementById('pareto-{cost}').data.map(t => [t.name, t.x.length, t.text ? Array.from(t.text) : []])")
            counts = {name: n for name, n, _ in traces}
            assert counts["trials"] + counts["Pareto front"] + counts["knee"] == n_complete
            assert counts["Pareto front"] + counts["knee"] == len(pareto_front(df, x=cost).members)
            labels = {name: text for name, _, text in traces}["reference presets"]
            assert sorted(labels) == ["CSN-ir", "R(2+1)D-18"]
            # drawn, not only declared: one SVG point per marker (the step line has none)
            rendered = page.evaluate(f"() => document.querySelectorAll('#pareto-{cost} .scatterlayer .point').length")
            assert rendered == n_complete + len(PRESETS)
        assert page.evaluate("() => document.getElementById('pareto-flops').data[3].marker.symbol") == "star"
        hv = page.evaluate("() => Array.from(document.getElementById('hypervolume').data[0].y)")
        assert hv == pytest.approx(hypervolume_history(df).values)
        parallel = page.evaluate("() => document.getElementById('parallel').data[0].dimensions.map(d => d.label)")
        assert parallel == ["factorization", "accuracy"]
        assert page.evaluate("() => document.getElementById('importance').data[0].y.length") == 1

        # the members table sorts when a header is clicked
        members = pareto_members(df, run=str(preset_run))
        rows = lambda: page.evaluate("() => Array.from(document.querySelectorAll('#members tbody tr')).map(r => +r.dataset.trial)")
        assert rows() == [m["number"] for m in members]
        page.click("#members th:has-text('flops')")
        flops_order = sorted(members, key=lambda m: (m["flops"], members.index(m)))
        assert [df.loc[df["number"] == n, "flops"].item() for n in rows()] == [m["flops"] for m in flops_order]
        page.click("#members th:has-text('flops')")
        assert [df.loc[df["number"] == n, "flops"].item() for n in rows()] == [m["flops"] for m in flops_order][::-1]
        first_yaml = page.evaluate("() => document.querySelector('#members tbody tr pre').textContent")
        assert yaml.safe_load(first_yaml)["source"]["trial"] == rows()[0]
        data = json.loads(page.evaluate("() => document.getElementById('dashboard-data').textContent"))
        assert data == {"complete": n_complete, "front_flops": len(pareto_front(df).members), "presets": 2, "baselines": 0, "replay": False, "task": "synthetic"}
        assert page.js_errors == []


def test_dashboard_without_latency_or_importance(tmp_path):
    path = tmp_path / "runs" / "small"
    study = make_study(path, STANDARD[:3])  # three complete trials: no importance, no latency
    write_dashboard(study, path / "dashboard.html")
    text = (path / "dashboard.html").read_text(encoding="utf-8")
    assert 'id="pareto-flops"' in text and 'id="pareto-params"' in text and 'id="pareto-latency_ms"' not in text
    assert "Not available: needs at least 4 complete trials" in text
    with chromium_page(tmp_path / "profile") as page:
        page.goto((path / "dashboard.html").resolve().as_uri(), wait_until="load")
        page.wait_for_function("() => window.Plotly && document.getElementById('pareto-flops').data")
        assert page.evaluate("() => document.querySelectorAll('#pareto-flops .scatterlayer .point').length") == 3
        assert page.js_errors == []


def test_replay_note_names_the_table_only_when_trials_were_replayed():
    from particle_nas.results._dashboard import replay_note

    study = optuna.create_study(directions=["maximize", "minimize"])
    study.add_trial(create_trial(values=[0.5, 10.0], user_attrs={"accuracy": 0.5, "flops": 10}))
    assert replay_note(study) is None
    study.add_trial(create_trial(values=[0.6, 12.0], user_attrs={"accuracy": 0.6, "flops": 12, "replay": True, "replay_table": "bench/t.jsonl.gz"}))
    assert "looked up in bench/t.jsonl.gz, not measured by this run" in replay_note(study)
