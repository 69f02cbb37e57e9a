"""docs/quantization.md's commands on tiny data: a search over quantize: [none, int8] with size_bytes as objective and constraint."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from particle_nas.results import load_particle

from cli_tools import TINY, run_cli

pytest.importorskip("onnxruntime", reason="needs onnxruntime (pip install -e '.[test]')")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "quantize.yaml"


@pytest.fixture(scope="module")
def quantize_run(tmp_path_factory):
    """examples/quantize.yaml with its search and space as written, on TINY's network, data and training."""
    root = tmp_path_factory.mktemp("quantize")
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc.update(network=TINY["network"], data=TINY["data"], train=TINY["train"], seed=1)
    doc["search"].update(sampler="random")  # nsga2's first generation is random too; random needs no population
    (root / "examples").mkdir()
    (root / "examples" / "quantize.yaml").write_text(yaml.safe_dump(doc))
    done = run_cli("search", "examples/quantize.yaml", "--trials", "4", "--no-progress", cwd=root)
    assert done.returncode == 0, done.stderr
    return root


def test_search_over_quantize_reports_size_bytes(quantize_run):
    table = pd.read_csv(quantize_run / "runs" / "quantize" / "trials.csv")
    assert len(table) == 4 and set(table["state"]) == {"COMPLETE"}
    assert set(table["quantize"]) == {"none", "int8"}
    int8, none = table[table["quantize"] == "int8"], table[table["quantize"] == "none"]
    assert (none["size_bytes"] >= 4 * none["params"]).all()  # float32: 4 bytes a weight, plus batch-norm buffers
    assert (int8["size_bytes"] < 4 * int8["params"]).all()  # int8: 1 byte a weight, plus per-channel scales and int32 biases
    assert int8["accuracy_fp32"].notna().all() and none["accuracy_fp32"].isna().all()
    assert table["feasible"].tolist() == (table["size_bytes"] <= 2e5).tolist()


def test_export_picks_by_size(quantize_run):
    done = run_cli("export", "runs/quantize", "--pick", "size_bytes<=2e5", "-o", "small.yaml", cwd=quantize_run)
    assert done.returncode == 0, done.stderr
    assert load_particle(quantize_run / "small.yaml").quantize in ("none", "int8")
