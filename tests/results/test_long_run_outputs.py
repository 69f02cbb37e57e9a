"""What a run of thousands of trials writes: the same hover labels, every complete trial drawn once (by WebGL), the report whole."""

from __future__ import annotations

import random

import optuna
import pytest
from optuna.trial import create_trial

from results_study import NETWORK, PARTICLES
from particle_nas.results import hover_text, pareto_figure, trials_table, write_run_outputs
from particle_nas.results._plots import WEBGL_ABOVE

pytest.importorskip("plotly")


def long_study(n: int, *, seed: int = 0) -> optuna.Study:
    """An in-memory study of ``n`` complete trials over a few particles, most of them repeats (as a long search on a small space)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = random.Random(seed)
    study = optuna.create_study(study_name="long", directions=["maximize", "minimize"])
    study.set_user_attr("objectives", [{"name": "accuracy", "direction": "maximize"}, {"name": "flops", "direction": "minimize"}])
    trials = []
    for number in range(n):
        particle = rng.choice(PARTICLES)
        accuracy, flops = round(rng.random(), 3), rng.randrange(1, 50) * 1_000_000
        attrs = dict(particle=particle.to_dict(), network=NETWORK.replace(particle=particle).to_dict(), accuracy=accuracy, flops=flops, params=flops // 100)
        if number % 3 == 2:
            attrs["duplicate_of"] = number - 1
        trials.append(create_trial(values=[accuracy, flops], user_attrs=attrs))
    study.add_trials(trials)
    return study


def test_hover_labels_read_from_records_are_those_of_each_row(study):
    df = trials_table(study)
    rows = df[df["state"] == "COMPLETE"]
    assert [hover_text(r) for r in rows.to_dict("records")] == [hover_text(row) for _, row in rows.iterrows()]


def test_a_long_study_draws_every_complete_trial_once_with_webgl_for_the_many():
    df = trials_table(long_study(WEBGL_ABOVE + 300))
    fig = pareto_figure(df)
    markers = [t for t in fig.data if "markers" in (t.mode or "")]
    assert sorted(n for t in markers for n in t.customdata) == sorted(df["number"])
    kinds = {t.name: t.type for t in markers}
    assert kinds["trials"] == "scattergl" and kinds["Pareto front"] == "scatter" and kinds["knee"] == "scatter"
    dominated = next(t for t in markers if t.name == "trials")
    labelled = df.set_index("number").loc[list(dominated.customdata[:50])].reset_index()
    assert list(dominated.text[:50]) == [hover_text(row) for row in labelled.to_dict("records")]


def test_report_of_a_long_study_writes_every_output(tmp_path):
    study = long_study(WEBGL_ABOVE + 100, seed=1)
    outputs = write_run_outputs(study, tmp_path / "long")
    assert outputs.n_trials == outputs.n_complete == WEBGL_ABOVE + 100
    assert outputs.n_pareto == int(trials_table(study)["pareto"].sum()) > 0
    for path in (outputs.trials_csv, outputs.pareto_html, outputs.dashboard_html, outputs.best_yaml):
        assert path.is_file() and path.stat().st_size > 0
    assert '"type":"scattergl"' in outputs.dashboard_html.read_text().replace(" ", "")
