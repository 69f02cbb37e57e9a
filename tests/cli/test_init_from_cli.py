"""docs/recurrent.md, "Start a 3D search from a 2D network": the commands it shows, on tiny data."""

from __future__ import annotations

import copy

import pandas as pd
import yaml

from cli_tools import run_cli

FLAT = {
    "name": "flat",
    "seed": 1,
    "search": {"sampler": "random", "trials": 1},
    "space": {"factorization": "full", "wiring": "residual", "temporal_kernel": 1},
    "network": {"stem_channels": 8, "widths": [8, 16], "depths": [1, 1], "temporal_strides": [1, 1], "spatial_strides": [1, 2]},
    "data": {"clip": [4, 16, 16], "train_size": 48, "val_size": 24},
    "train": {"epochs": 1, "batch_size": 16},
}


def test_a_search_starts_from_an_inflated_2d_network(tmp_path):
    deep = copy.deepcopy(FLAT)
    deep["name"] = "inflated"
    deep["space"]["temporal_kernel"] = 3
    deep["train"]["init_from"] = "flat-best.safetensors"
    (tmp_path / "flat.yaml").write_text(yaml.safe_dump(FLAT))
    (tmp_path / "inflated.yaml").write_text(yaml.safe_dump(deep))

    early = run_cli("search", "inflated.yaml", "--no-progress", cwd=tmp_path)
    assert early.returncode == 2
    assert early.stderr.strip() == (
        "particle-nas: error: inflated.yaml: train.init_from must name an existing .safetensors file (the trained 2D network's weights), but got 'flat-best.safetensors'."
    )

    for args in (("search", "flat.yaml", "--no-progress"), ("export", "runs/flat", "--pick", "max-accuracy", "--weights", "-o", "flat-best.yaml")):
        done = run_cli(*args, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    assert (tmp_path / "flat-best.safetensors").is_file()
    done = run_cli("search", "inflated.yaml", "--no-progress", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(tmp_path / "runs/inflated/trials.csv")
    assert table["temporal_kernel"].tolist() == [3] and table["state"].tolist() == ["COMPLETE"]
