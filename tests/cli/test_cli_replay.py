"""A search on a ParticleBench table through the CLI: ``evaluators: {replay: TABLE}`` in the config."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from cli_tools import run_cli

from particle_nas.config import ConfigError, load_config
from particle_nas.evaluators import load_table

ROOT = Path(__file__).resolve().parents[2]


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


def test_baselines_outside_the_table_are_refused_before_the_first_trial(tiny_bench, tmp_path):
    """A hand-designed particle the table lacks would fail at its trial: the config names them and what may stay."""
    with pytest.raises(ConfigError, match=r"search.baselines must name only baselines whose particle the replayed table holds \(\['C3D', 'R\(2\+1\)D', .*\] are outside its space\): use false, or \[\]"):
        load_config(_config(tiny_bench, tmp_path, search={"baselines": True}))
    assert load_config(_config(tiny_bench, tmp_path, search={"baselines": False})).search.baseline_names == ()


def test_the_replay_example_is_the_quickstart_answered_from_the_committed_table(tmp_path):
    """examples/replay.yaml, as the docs run it from the repository: the quickstart's search, 100 trials from the table."""
    quick, replay = (yaml.safe_load((ROOT / "examples" / f"{name}.yaml").read_text()) for name in ("quickstart", "replay"))
    for section in ("space", "network", "data", "train"):
        assert replay[section] == quick[section], section  # what the table was measured with
    same = {k: v for k, v in quick["search"].items() if k not in ("trials", "baselines")}
    assert {k: replay["search"][k] for k in same} == same and replay["search"]["trials"] == 100
    command = [str(Path(sys.executable).with_name("particle-nas")), "search", "examples/replay.yaml", "--seed", "3", "--name", "replay-3", "--no-progress", "--output-dir", str(tmp_path)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    done = pd.read_csv(tmp_path / "replay-3" / "trials.csv")
    table = load_table(ROOT / "bench" / "particlebench" / "table.jsonl.gz")
    answers = {(float(r["accuracy"]), int(r["flops"])) for r in table.rows if r["seed"] == table.seeds[0]}
    assert len(done) == 100 and (done["state"] == "COMPLETE").all()
    assert all((float(a), int(f)) in answers for a, f in zip(done["accuracy"], done["flops"]))  # every answer is a row of the table
    assert 'id="replay"' in (tmp_path / "replay-3" / "dashboard.html").read_text()
