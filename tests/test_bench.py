from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, Path(__file__).parent.parent / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("a", "b", "tau"),
    [([1, 2, 3, 4], [10, 20, 30, 40], 1.0), ([1, 2, 3, 4], [4, 3, 2, 1], -1.0), ([1, 2, 3], [1, 3, 2], 1 / 3), ([1, 1, 2], [1, 2, 3], 2 / math.sqrt(6))],
)
def test_kendall_tau_b(a, b, tau):
    assert _load("fidelity").kendall_tau(a, b) == pytest.approx(tau)


def test_fidelity_samples_distinct_particles_reproducibly():
    fidelity = _load("fidelity")
    first = fidelity.sample_particles(20, seed=0)
    assert len(set(first)) == 20 and first == fidelity.sample_particles(20, seed=0)


def test_gpu_bench_without_cuda_exits_2_with_one_line(tmp_path, capsys):
    from unittest import mock

    with mock.patch("torch.cuda.is_available", return_value=False):
        assert _load("gpu").main(["--out", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bench/gpu.py: error: a CUDA GPU is needed, but torch.cuda.is_available() is False (")
    assert captured.out == "" and not (tmp_path / "out").exists()  # nothing run, nothing written


def test_gpu_bench_throughput_spans_the_concurrent_trainings():
    gpu = _load("gpu")
    assert gpu.throughput([(0.0, 30.0), (10.0, 60.0)], trials=4) == pytest.approx(4.0)  # 4 trials in the 60 s from first start to last end
    assert gpu.throughput([(100.0, 130.0)], trials=1) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="must be non-empty and positive"):
        gpu.throughput([], trials=1)
    table = gpu.format_table([gpu.row("latency", "r2plus1d/residual", "batch 1", 1.23456, "ms")]).splitlines()
    assert table[0].split() == ["step", "case", "metric", "value", "unit"] and table[2].split()[-2:] == ["1.2346", "ms"]
