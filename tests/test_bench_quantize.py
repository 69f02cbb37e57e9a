"""bench/quantize.py, run as docs/quantization.md shows its quick look (one particle, tiny task)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime", reason="needs onnxruntime (pip install -e '.[test]')")


def test_quick_look_compares_fp32_and_int8(capsys):
    path = Path(__file__).parent.parent / "bench" / "quantize.py"
    spec = importlib.util.spec_from_file_location("bench_quantize", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # docs/quantization.md: python bench/quantize.py --particles full/residual --epochs 1 --train-size 64 --val-size 32
    rows = module.main(["--particles", "full/residual", "--epochs", "1", "--train-size", "64", "--val-size", "32", "--repeats", "2"])
    (row,) = rows
    assert row["particle"] == "full/residual" and row["backend"] == "onnxruntime"
    assert row["size_bytes_int8"] < row["size_bytes_fp32"]
    assert 0.0 <= row["top1_int8"] <= 1.0 and row["top1_agreement"] >= 0.5
    assert "| full/residual |" in capsys.readouterr().out
