"""Shared by the CLI tests: a tiny search config and a way to run the real command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from particle_nas.space import FACTORIZATIONS

TINY = {
    "name": "tiny",
    "seed": 3,
    "search": {"sampler": "random", "trials": 3},
    "space": {"factorization": list(FACTORIZATIONS), "wiring": ["residual", "bottleneck"], "temporal_kernel": [3], "prune_ratio": [0.0, 0.5]},
    "network": {"stem_channels": 8, "widths": [8, 16], "depths": [1, 1], "temporal_strides": [1, 1], "spatial_strides": [1, 2]},
    "data": {"clip": [4, 16, 16], "train_size": 48, "val_size": 24},
    "train": {"epochs": 1, "batch_size": 16},
}


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "particle_nas", *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def search_in(folder: Path, doc: dict) -> Path:
    """Run ``particle-nas search`` on config ``doc`` (written into ``folder``) and return its run directory; fails the test if it fails."""
    config = folder / f"{doc['name']}.yaml"
    config.write_text(yaml.safe_dump(doc))
    done = run_cli("search", str(config), "--no-progress", cwd=folder)
    assert done.returncode == 0, done.stderr
    return folder / doc.get("output_dir", "runs") / doc["name"]


