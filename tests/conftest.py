"""Shared by tests in several rooms: a tiny ParticleBench table, trained for real by bench/particlebench.py."""

from __future__ import annotations

import importlib.util
import subprocess
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


@pytest.fixture
def tmpfs():
    """``mount(path, size, *, files=None, full=False, required=True)``: a real tmpfs of ``size`` (``"64k"``) at ``path``, unmounted after the test.

    ``files`` (name -> bytes) are written first; ``full`` then fills it to its last byte with a file named ``filler``. Where a tmpfs cannot be mounted
    (no root, no mount command) the test is skipped, the full disk would not be real, or with
    ``required=False`` ``mount`` returns None and the test fakes the fault at the OS call instead.
    """
    mounted: list[Path] = []

    def mount(path: Path, size: str, *, files: dict[str, bytes] | None = None, full: bool = False, required: bool = True) -> Path | None:
        path.mkdir(parents=True, exist_ok=True)
        try:
            result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True)
            why = result.stderr.strip() if result.returncode else ""
        except OSError as err:  # no mount command
            why = str(err)
        if why:
            if required:
                pytest.skip(f"a tmpfs cannot be mounted here ({why}): the full disk would not be real")
            return None
        mounted.append(path)
        for name, data in (files or {}).items():
            (path / name).write_bytes(data)
        if full:
            with open(path / "filler", "wb", buffering=0) as handle:
                try:
                    while True:
                        handle.write(b"\0" * 512)
                except OSError:  # ENOSPC: full
                    pass
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], check=False)
