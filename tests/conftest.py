"""Shared by tests in several rooms: a tiny ParticleBench table, trained for real by bench/particlebench.py."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
# 4 particles (2 factorizations x 2 prune ratios), 1 epoch on 4x8x8 clips: seconds to train.
TINY_BENCH = {
    "name": "tinybench",
    "seed": 0,
    "space": {"factorization": ["full", "spatial_only"], "wiring": ["plain"], "temporal_kernel": [3], "spatial_kernel": [3], "prune_ratio": [0.0, 0.5]},
    "network": {"stem_channels": 4, "widths": [4, 8], "depths": [1, 1], "temporal_strides": [1, 1], "spatial_strides": [1, 2]},
    "data": {"kind": "synthetic", "num_classes": 2, "clip": [4, 8, 8], "train_size": 16, "val_size": 8},
    "train": {"epochs": 1, "batch_size": 8},
}


def load_bench(name: str):
    """A script of bench/ as a module."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def bench_script():
    """load_bench, for tests outside this file: ``bench_script("particlebench").main([...])``."""
    return load_bench


@pytest.fixture(scope="session")
def tiny_bench(tmp_path_factory) -> tuple[Path, Path]:
    """(space file, table): every particle of TINY_BENCH with seed 0, and the first of the shuffled order also with seed 1."""
    folder = tmp_path_factory.mktemp("tinybench")
    space = folder / "space.yaml"
    space.write_text(yaml.safe_dump(TINY_BENCH, sort_keys=False))
    table = folder / "table.jsonl.gz"
    argv = ["generate", "--space", str(space), "--out", str(table), "--seeds", "0", "1", "--second-seed-subset", "1", "--threads", "1"]
    assert load_bench("particlebench").main(argv) == 0
    return space, table
