"""A run directory from someone else is data, not code: every string of a crafted study is escaped in
every page (checked in the text and in a real Chromium), and no trials.csv cell runs as a spreadsheet formula."""

from __future__ import annotations

import csv
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from browser import chromium_page
from results_study import NETWORK
from particle_nas.results import trials_table, write_finetune_report, write_run_outputs, write_trials_csv

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(2)>"
SVG = '"><svg onload=alert(3)>'
LINK = '<a href="javascript:alert(4)">here</a>'
EVIL = '<a href="https://evil.example/">log in</a><b>!</b>'  # plotly.js itself would draw this link and bold text
PAYLOADS = (SCRIPT, IMG, SVG, LINK, EVIL)
STUDY_NAME = f"crafted {SCRIPT} {EVIL}"
FORMULAS = {"=HYPERLINK(\"http://x\",\"y\")": "fail_reason", "@SUM(A1:A2)": "baseline", "+cmd|' /C calc'!A0": "device", "-2+3": "precision", "\tTAB": "latency_device"}


def crafted_study(run: Path, *, objective: str = "flops", baseline: bool = True) -> optuna.Study:
    """A study as someone else's run directory could hold it: study name, particle fields, parameter names,
    baseline and preset labels, fail reasons and the replay table are markup or formulas; with ``objective``, an objective name too."""
    run.mkdir(parents=True)
    study = optuna.create_study(study_name=STUDY_NAME, storage=f"sqlite:///{run}/study.db", directions=["maximize", "minimize"])
    study.set_user_attr("objectives", [{"name": "accuracy", "direction": "maximize"}, {"name": objective, "direction": "minimize"}])
    factorizations = ["r2plus1d", SCRIPT, IMG, LINK]
    distributions = {"factorization": CategoricalDistribution(factorizations), EVIL: FloatDistribution(0.0, 1.0)}
    base = NETWORK.particle.to_dict()
    rows = [(0.50, 1_000_000), (0.45, 3_000_000), (0.70, 2_000_000), (0.80, 4_000_000), (0.82, 40_000_000), (0.60, 8_000_000)]
    crafted = {1: (SCRIPT, SVG, LINK), 5: (IMG, EVIL, SVG)}  # two dominated trials: the front (and best.yaml) stays valid
    for number, (accuracy, flops) in enumerate(rows):
        factorization, wiring, activation = crafted.get(number, ("r2plus1d", "residual", "relu"))
        particle = {**base, "factorization": factorization, "wiring": wiring, "activation": activation}
        attrs = dict(particle=particle, network={**NETWORK.to_dict(), "particle": particle}, accuracy=accuracy, flops=flops, params=flops // 100, synflow=-0.5 - number, replay=True, replay_table=SCRIPT)
        if number == 1 and baseline:
            attrs["baseline"] = IMG  # dominated by trial 0: the summary names the member that beats it
        if number == 5:
            attrs["preset"] = EVIL
        study.add_trial(create_trial(state=TrialState.COMPLETE, values=[accuracy, flops], params={"factorization": factorization, EVIL: number / 10}, distributions=distributions, user_attrs=attrs))
    for reason in (SCRIPT, SVG):
        study.add_trial(create_trial(state=TrialState.FAIL, params={"factorization": IMG}, distributions={"factorization": distributions["factorization"]}, user_attrs=dict(particle={**base, "factorization": IMG}, fail_reason=reason)))
    formulas = {column: text for text, column in FORMULAS.items() if baseline or column != "baseline"}
    study.add_trial(create_trial(state=TrialState.FAIL, user_attrs=dict(particle={**base, "factorization": "=1+1"}, **formulas)))
    return study


@pytest.fixture(scope="module")
def crafted_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("untrusted") / "runs" / "crafted"
    write_run_outputs(crafted_study(run), run)
    return run


@pytest.fixture(scope="module")
def crafted_objective_run(tmp_path_factory) -> Path:
    """An objective named with markup (no baseline: comparing one to the members needs objectives that are columns)."""
    run = tmp_path_factory.mktemp("untrusted") / "runs" / "objective"
    write_run_outputs(crafted_study(run, objective=f"flops{IMG}", baseline=False), run)
    return run


# ---------------------------------------------------------------- trials.csv
def test_no_trials_csv_cell_runs_as_a_formula(crafted_run):
    with open(crafted_run / "trials.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for column, cell in row.items():
            if cell[:1] in ("=", "+", "-", "@", "\t", "\r"):
                float(cell)  # only a number may start so (a negative one)
    last = rows[-1]
    for text, column in FORMULAS.items():
        assert last[column] == "'" + text, column
    assert last["factorization"] == "'=1+1"
    assert [row["synflow"] for row in rows[:6]] == [f"{-0.5 - n}" for n in range(6)]  # negative numbers stay numbers


def test_trials_csv_reads_back_with_its_numbers(crafted_run, tmp_path):
    back = pd.read_csv(crafted_run / "trials.csv")
    assert back["synflow"].dtype == float and back["synflow"].iloc[0] == -0.5
    assert back["fail_reason"].iloc[-1] == "'" + '=HYPERLINK("http://x","y")'
    df = trials_table(optuna.load_study(study_name=STUDY_NAME, storage=f"sqlite:///{crafted_run}/study.db"))
    assert df["fail_reason"].iloc[-1] == '=HYPERLINK("http://x","y")'  # the table itself keeps the text as it is
    plain = pd.DataFrame({"number": [0, 1], "accuracy": [-0.25, 0.5], "note": ["ok", None]})  # nothing to guard: written as pandas writes it
    assert write_trials_csv(plain, tmp_path / "plain.csv").read_text() == plain.to_csv(index=False)


# ---------------------------------------------------------------- the pages
def test_pages_hold_no_markup_from_the_study(crafted_run, crafted_objective_run):
    for run, name in ((crafted_run, "dashboard.html"), (crafted_run, "pareto.html"), (crafted_objective_run, "dashboard.html")):
        text = (run / name).read_text(encoding="utf-8")
        for payload in PAYLOADS:
            assert payload not in text, (name, payload)
        assert "<svg onload" not in text and "<img src=x" not in text and 'href="javascript' not in text
    dashboard = (crafted_run / "dashboard.html").read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dashboard  # shown, escaped, in the failed-trials table
    assert "(accuracy, flops&lt;img src=x onerror=alert(2)&gt;)" in (crafted_objective_run / "dashboard.html").read_text(encoding="utf-8")


def test_plotly_json_cannot_close_its_script_tag():
    import plotly.graph_objects as go

    from particle_nas.results._dashboard_page import _div

    fig = go.Figure(go.Scatter(x=[1], y=[1], customdata=["</script><script>alert(5)</script>", "<!--<script>"]))  # values no helper escaped
    div = _div(fig, "probe")
    assert "</script><script>" not in div and "<!--" not in div and div.count("</script>") == 1


def _no_injection(page) -> None:
    assert page.dialogs == []
    assert page.evaluate("() => document.querySelectorAll('[onerror], [onload], img, a[href^=\"javascript\"]').length") == 0
    links = page.evaluate("() => Array.from(document.querySelectorAll('a')).map(a => a.outerHTML).filter(h => h.includes('evil.example') || h.includes('alert('))")
    assert links == []  # plotly.js draws <a href> and <b> from text it is given: none came from the study
    assert page.evaluate("() => Array.from(document.scripts).filter(s => s.textContent.trim().startsWith('alert(')).length") == 0  # the study's text is data inside plotly's JSON, never a script
    assert page.js_errors == [] and page.remote_requests == []


def _open(page, path: Path, plots: int) -> None:
    page.dialogs = []
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(path.resolve().as_uri(), wait_until="load")
    page.wait_for_function(f"() => window.Plotly && document.querySelectorAll('.js-plotly-plot').length >= {plots}")


@pytest.mark.parametrize("name,plots", [("dashboard.html", 5), ("pareto.html", 1)])
def test_no_script_from_the_study_runs_in_chromium(crafted_run, tmp_path, name, plots):
    with chromium_page(tmp_path / "profile") as page:
        _open(page, crafted_run / name, plots)
        plot = "pareto-flops" if name == "dashboard.html" else None
        selector = f"#{plot} .scatterlayer .point" if plot else ".scatterlayer .point"
        for point in page.locator(selector).all():  # every hover label drawn: particle fields, labels
            point.hover(force=True)
        labels = page.evaluate(f"() => Array.from(document.querySelectorAll('{'#' + plot if plot else ''} .textpoint text')).map(t => t.textContent)")
        assert IMG in labels and (EVIL in labels) == (plot is not None)  # the baseline's label (and the preset's on the dashboard), shown as written
        hover = page.evaluate("() => Array.from(document.querySelectorAll('.hoverlayer text')).map(t => t.textContent).join(' ')")
        assert hover  # the last point hovered has its label up
        if name == "dashboard.html":
            body = page.evaluate("() => document.body.innerText")
            assert SCRIPT in body and SVG in body  # the failed-trials table, the replay banner
            ticks = page.evaluate("() => Array.from(document.querySelectorAll('#parallel .tick text')).map(t => t.textContent)")
            assert SCRIPT in ticks and IMG in ticks
            assert page.evaluate("() => Array.from(document.getElementById('importance').data[0].y)") != []
            assert EVIL in page.evaluate("() => Array.from(document.querySelectorAll('#importance .ytick text')).map(t => t.textContent)")
        else:
            assert page.evaluate("() => document.querySelector('.gtitle').textContent").startswith(STUDY_NAME)
        _no_injection(page)


def test_an_objective_named_with_markup_runs_nothing_in_chromium(crafted_objective_run, tmp_path):
    with chromium_page(tmp_path / "profile") as page:
        _open(page, crafted_objective_run / "dashboard.html", 5)
        assert f"(accuracy, flops{IMG})" in page.evaluate("() => document.body.innerText")
        _no_injection(page)


def test_class_names_are_escaped_in_the_finetune_report(tmp_path):
    names = [SCRIPT, IMG, SVG, EVIL]
    report = {
        "name": f"ft {IMG}",
        "mode": SVG,
        "class_names": names,
        "confusion": [[2, 1, 0, 0], [0, 3, 0, 1], [1, 0, 2, 0], [0, 0, 1, 3]],
        "epochs": [{"epoch": 1, "train_loss": 1.1, "val_top1": 0.4}],
        "best_epoch": 1,
        "top1": 0.7,
        "params": {"trainable": 10, "total": 100, "ratio": 0.1},
        "data": {"train_videos": SCRIPT, "val_videos": 3},
        "weights": LINK,
    }
    _, html_path = write_finetune_report(report, tmp_path / "out")
    text = html_path.read_text(encoding="utf-8")
    for payload in PAYLOADS:
        assert payload not in text, payload
    with chromium_page(tmp_path / "profile") as page:
        _open(page, html_path, 2)
        ticks = page.evaluate("() => Array.from(document.querySelectorAll('#confusion .xtick text')).map(t => t.textContent)")
        assert ticks == names
        assert [row.split("\t")[0] for row in page.locator("#per-class tbody tr").all_inner_texts()] == names
        page.locator("#confusion .nsewdrag").first.hover()
        _no_injection(page)
