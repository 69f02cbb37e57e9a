"""A search on a ParticleBench table through the CLI: ``evaluators: {replay: TABLE}`` in the config."""

from __future__ import annotations

import time

import pandas as pd
import pytest
import yaml
from cli_tools import run_cli

from particle_nas.config import ConfigError, load_config
from particle_nas.evaluators import load_table


def _config(tiny_bench, tmp_path, **changes):
    space_file, table = tiny_bench
    doc = yaml.safe_load(space_file.read_text())
    doc.update(name="replayed", output_dir=str(tmp_path / "runs"), search={"sampler": "nsga2", "population": 2, "trials": 6}, evaluators={"replay": str(table)})
    for section, values in changes.items():
        doc[section] = {**doc.get(section, {}), **values}
    path = tmp_path / "replay.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def check_answers(tmp_path, tiny_bench, *, trials: int, fields: dict[str, str]) -> None:
    """Every trial of the replayed run completed with its particle's row of the table: trials.csv column -> row field."""
    done = pd.read_csv(tmp_path / "runs" / "replayed" / "trials.csv")
    table = load_table(tiny_bench[1])
    by_particle = {(r["particle"]["factorization"], r["particle"]["prune_ratio"]): r for r in table.rows if r["seed"] == 0}
    assert len(done) == trials and (done["state"] == "COMPLETE").all()
    for _, trial in done.iterrows():
        row = by_particle[(trial["factorization"], trial["prune_ratio"])]
        assert [trial[column] for column in fields] == [row[field] for field in fields.values()]


def test_search_on_the_table_runs_in_seconds_and_the_dashboard_says_replay(tiny_bench, tmp_path):
    config = _config(tiny_bench, tmp_path)
    start = time.perf_counter()
    result = run_cli("search", str(config), "--no-progress", "--seed", "4", cwd=tmp_path)  # another seed: it seeds the sampler only
    elapsed = time.perf_counter() - start
    assert result.returncode == 0, result.stderr
    assert elapsed < 120  # no training: the time is the interpreter, Optuna and the report (a few seconds when the machine is idle)
    run = tmp_path / "runs" / "replayed"
    check_answers(tmp_path, tiny_bench, trials=6, fields={"accuracy": "accuracy", "flops": "flops", "duration_s": "wall_s"})
    dashboard = (run / "dashboard.html").read_text()
    assert 'id="replay"' in dashboard and f"looked up in {tiny_bench[1]}" in dashboard


@pytest.mark.parametrize("engine", [pytest.param(["--workers", "2"], id="workers"), pytest.param(["--backend", "ray"], id="ray", marks=pytest.mark.slow)])
def test_parallel_engines_replay_the_same_answers(tiny_bench, tmp_path, engine):
    config = _config(tiny_bench, tmp_path, search={"trials": 5, "early_stopping": "none"})
    result = run_cli("search", str(config), "--no-progress", *engine, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    check_answers(tmp_path, tiny_bench, trials=5, fields={"accuracy": "accuracy", "flops": "flops", "params": "params"})


def test_a_config_unlike_the_table_is_refused(tiny_bench, tmp_path):
    result = run_cli("search", str(_config(tiny_bench, tmp_path, space={"prune_ratio": [0.0]})), "--no-progress", cwd=tmp_path)
    assert result.returncode == 2 and "evaluators.replay must name a table of the config's space" in result.stderr
    assert "the replay answers only the table's space" in result.stderr
    with pytest.raises(ConfigError, match="train.epochs: table 1 vs config 2"):
        load_config(_config(tiny_bench, tmp_path, train={"epochs": 2}))
    with pytest.raises(ConfigError, match="no such table"):
        load_config(_config(tiny_bench, tmp_path, evaluators={"replay": "nowhere.jsonl.gz"}))
    with pytest.raises(ConfigError, match="evaluators.zero_cost must be empty with replay"):
        load_config(_config(tiny_bench, tmp_path, evaluators={"zero_cost": ["synflow"]}))
