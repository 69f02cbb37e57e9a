"""Shared by the CLI tests: a tiny search config and a way to run the real command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


