"""search.baselines from the command line: the baselines run first, are labelled in trials.csv and on both fronts,
the summary says which searched Pareto members dominate them, and a resumed run never queues them again."""

from __future__ import annotations

import json
import re

import pandas as pd
import yaml

from particle_nas.results import baseline_lines, open_run, trials_table

from cli_tools import TINY, run_cli

NAMES = ["C3D", "R(2+1)D", "X3D"]


def drawn_baselines(page: str) -> list[list[str]]:
    """The labels of every "baselines" trace in a page's plotly figures."""
    return [json.loads(found) for found in re.findall(r'"name":"baselines","text":(\[[^\]]*\])', page)]


def test_a_search_runs_labels_draws_and_summarizes_its_baselines(tmp_path):
    doc = {**TINY, "search": {"sampler": "nsga2", "population": 2, "trials": 4, "baselines": NAMES}}
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(doc))
    done = run_cli("search", str(config), "--no-progress", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    run = tmp_path / "runs" / "tiny"
    csv = pd.read_csv(run / "trials.csv")
    assert csv["baseline"].tolist()[:3] == NAMES and csv["baseline"].iloc[3:].isna().all()
    assert csv["factorization"].tolist()[:3] == ["full", "r2plus1d", "csn_ir"]
    lines = baseline_lines(trials_table(open_run(run)))
    assert len(lines) == 3
    assert "baselines: 3 baselines + 1 searched\n" + "".join(f"  {line}\n" for line in lines) in done.stdout
    complete = [n for n, s in zip(csv["baseline"], csv["state"]) if isinstance(n, str) and s == "COMPLETE"]
    assert drawn_baselines((run / "pareto.html").read_text()) == [complete]
    dashboard = (run / "dashboard.html").read_text()
    assert drawn_baselines(dashboard) == [complete, complete]  # the FLOPs and params fronts
    assert '<ul id="baselines">' in dashboard and "3 baselines + 1 searched" in dashboard

    done = run_cli("search", str(config), "--no-progress", "--trials", "5", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    csv = pd.read_csv(run / "trials.csv")
    assert len(csv) == 5 and csv["baseline"].dropna().tolist() == NAMES
    assert "baselines: 3 baselines + 2 searched" in done.stdout


def test_baselines_are_fingerprinted_only_when_set(tmp_path):
    """Turning baselines on (or off) is refused on resume; configs that never set them keep their old fingerprint."""
    from pathlib import Path

    from particle_nas.config import load_config, parse_config
    from particle_nas.space import BASELINES

    quickstart = load_config(Path(__file__).resolve().parents[2] / "examples" / "quickstart.yaml")
    assert quickstart.search.baselines is True and quickstart.search.baseline_names == tuple(BASELINES)
    assert quickstart.fingerprint()["search"]["baselines"] is True
    assert "baselines" not in parse_config(TINY).fingerprint()["search"]
    listed = parse_config({**TINY, "search": {**TINY["search"], "baselines": NAMES}})
    assert listed.search.baselines == tuple(NAMES) and listed.fingerprint()["search"]["baselines"] == NAMES


def test_an_unknown_baseline_is_one_clear_line(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({**TINY, "search": {**TINY["search"], "baselines": ["C3D", "ResNet"]}}))
    done = run_cli("search", str(config), "--no-progress", cwd=tmp_path)
    assert done.returncode == 2 and not (tmp_path / "runs").exists()
    assert done.stderr.strip().splitlines()[-1] == (
        f"particle-nas: error: {config}: search.baselines must list distinct names from "
        "['C3D', 'R(2+1)D', 'ip-CSN', 'ir-CSN', 'X3D', 'TSM'], but got ['C3D', 'ResNet']."
    )
