"""docs/i3d.md's commands: a search over residual and inception stages (examples/inception.yaml, shrunk to tiny data),
and the I3D preset in ``particle-nas presets``."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml

from particle_nas.cli import main
from particle_nas.evaluators import count_cost
from particle_nas.space import NetworkSpec, build_network, cost, presets

from cli_tools import run_cli

ROOT = Path(__file__).resolve().parents[2]


def test_search_over_residual_and_inception_reports_exact_costs(tmp_path: Path) -> None:
    doc = yaml.safe_load((ROOT / "examples" / "inception.yaml").read_text())
    assert doc["space"]["wiring"] == ["residual", "inception"] and doc["space"]["stages"] == "per_stage"
    doc["search"].update(trials=3, sampler="random")
    doc["network"].update(stem_channels=8, widths=[8, 16], depths=[1, 1], temporal_strides=[1, 1], spatial_strides=[1, 2])
    doc["data"].update(clip=[4, 16, 16], train_size=48, val_size=24)
    doc["train"].update(epochs=1)
    (tmp_path / "inception.yaml").write_text(yaml.safe_dump(doc))

    done = run_cli("search", "inception.yaml", "--no-progress", cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert "3/3 trials finished (3 complete" in done.stdout
    table = pd.read_csv(tmp_path / "runs" / "inception" / "trials.csv")
    networks = [NetworkSpec.from_dict(json.loads(row)) for row in table["network"]]
    wirings = {p.wiring for spec in networks for p in spec.stage_particles}
    assert wirings == {"residual", "inception"}  # seed 0 draws both
    for spec, flops, params in zip(networks, table["flops"], table["params"]):
        assert (flops, params) == (cost(spec).flops, cost(spec).params)
        assert count_cost(build_network(spec, seed=0), input_shape=spec.input_shape) == cost(spec)


def test_presets_lists_i3d_with_its_gap(capsys) -> None:
    assert main(["presets"]) == 0
    row = next(line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("i3d "))
    assert row[1:] == ["3x64x224x224", "12,060,000", "12,697,264", "108.000", "111.151", "5.28%", "64x224x224"]
    assert main(["presets", "--show", "i3d"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# i3d: 12,060,000 params, 108.0 GFLOPs at 64x224x224 published") and "# not reproduced" in out
    assert NetworkSpec.from_dict(yaml.safe_load(out)["network"]) == presets.get("i3d")
