"""Predictor and ``particle-nas predict`` on real encoded videos (PyAV), real fine-tune folders and real exported files."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from particle_nas.cli import main
from particle_nas.evaluators import FineTuneSettings, decode_clip, decode_views, normalize, prepare_for_finetuning, quantize_int8, save_int8, view_positions
from particle_nas.results import Predictor, PredictSettings, read_class_names, video_paths
from particle_nas.results._deploy import export_network
from particle_nas.space import NetworkSpec, ParticleSpec, build_network, particle_to_record

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples" / "finetune"))
from make_ucf_demo import make_ucf_tree, write_video  # noqa: E402

pytest.importorskip("av", reason="predict needs PyAV (pip install av)")

NETWORK = NetworkSpec(
    particle=ParticleSpec(factorization="csn_ir", wiring="residual", temporal_kernel=3),
    stem_channels=8, widths=(8, 16), depths=(1, 1), temporal_strides=(1, 1), spatial_strides=(1, 2), clip=(4, 16, 16), num_classes=3,
)
CLASSES = ("MoveDown", "MoveLeft", "MoveRight")


@pytest.fixture(scope="module")
def ucf(tmp_path_factory) -> Path:
    return make_ucf_tree(tmp_path_factory.mktemp("ucf"), groups=2)


def finetune_folder(folder: Path, *, mode: str = "adapters") -> torch.nn.Module:
    """A fine-tune output as finetune writes it (report.json with the network, classes and settings; best.safetensors)."""
    model = prepare_for_finetuning(build_network(NETWORK, seed=3), FineTuneSettings(mode=mode), seed=3).eval()
    folder.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "best.safetensors"))
    report = {"network": NETWORK.to_dict(), "class_names": list(CLASSES), "settings": {"mode": mode, "adapter_reduction": 4.0, "adapter_activation": "relu", "quantize": "none"}}
    (folder / "report.json").write_text(json.dumps(report))
    return model


def test_views_are_uniformly_spaced_one_view_is_the_training_clip_and_crops_cut_the_scaled_frame(ucf: Path) -> None:
    video = next((ucf / "UCF-101" / "MoveLeft").glob("*.avi"))
    one = decode_views(video, (4, 16, 16))
    assert np.array_equal(one[0], decode_clip(video, (4, 16, 16)))
    assert view_positions(8, 4, 1) == [np.linspace(0, 7, 4).round().astype(int).tolist()]
    positions = view_positions(8, 4, 3)
    assert positions[0] != positions[2] and all(a <= b for a, b in zip(positions[0], positions[2]))
    three = decode_views(video, (4, 16, 16), views=3)
    assert three.shape == (3, 3, 4, 16, 16) and not np.array_equal(three[0], three[2])
    crops = decode_views(video, (4, 16, 16), views=2, crops=3)
    assert crops.shape == (6, 3, 4, 16, 16)
    assert not np.array_equal(crops[0], crops[2])  # start and end of the longer side differ


def test_predictor_averages_the_softmax_of_its_views_and_every_runtime_agrees(ucf: Path, tmp_path: Path) -> None:
    model = finetune_folder(tmp_path / "run" / "finetune")
    settings = PredictSettings(views=2, crops=3, top_k=2)
    video = next((ucf / "UCF-101" / "MoveDown").glob("*.avi"))
    torch_predictor = Predictor.load(tmp_path / "run", settings=settings)
    clips = torch.from_numpy(decode_views(video, NETWORK.clip, views=2, crops=3))
    with torch.no_grad():
        expected = torch.softmax(model(normalize(clips)), dim=1).mean(0)
    got = torch_predictor.predict_video(video)
    assert got.clips == 6 and got.labels[0] == CLASSES[int(expected.argmax())] and got.probabilities[0] == pytest.approx(float(expected.max()), abs=1e-5)
    onnx = Predictor.load(tmp_path / "run" / "finetune", runtime="onnx", settings=settings).predict_video(video)
    assert onnx.labels == got.labels and onnx.probabilities == pytest.approx(got.probabilities, abs=1e-4)
    with pytest.raises(ValueError, match="--quantize int8"):
        Predictor.load(tmp_path / "run", runtime="int8")
    calibration = [normalize(torch.from_numpy(decode_views(v, NETWORK.clip))) for v in sorted((ucf / "UCF-101").rglob("*.avi"))[:4]]
    save_int8(quantize_int8(model, calibration), tmp_path / "run" / "finetune" / "model-int8.onnx")
    int8 = Predictor.load(tmp_path / "run", runtime="int8", settings=settings).predict_video(video)
    assert set(int8.labels) <= set(CLASSES) and sum(int8.probabilities) <= 1.0 + 1e-5


def test_exported_files_predict_as_the_network_they_hold(ucf: Path, tmp_path: Path) -> None:
    model = build_network(NETWORK, seed=4).eval()
    out = tmp_path / "export.yaml"
    import yaml

    out.write_text(yaml.safe_dump({"particle": particle_to_record(NETWORK.particle), "network": {k: v for k, v in NETWORK.to_dict().items() if k != "particle"}}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out.with_suffix(".safetensors")))
    for fmt in ("onnx", "torchscript"):
        export_network(model, NETWORK, out.with_suffix(".onnx" if fmt == "onnx" else ".pt"), format=fmt)
    video = next((ucf / "UCF-101" / "MoveRight").glob("*.avi"))
    results = [Predictor.load(out.with_suffix(suffix), settings=PredictSettings(top_k=3)).predict_video(video) for suffix in (".safetensors", ".pt", ".onnx")]
    assert {r.labels for r in results} == {results[0].labels} and results[0].labels[0] == "class" + str(int(model(normalize(torch.from_numpy(decode_clip(video, NETWORK.clip))[None])).argmax()))
    for r in results[1:]:
        assert r.probabilities == pytest.approx(results[0].probabilities, abs=1e-4)
    index = tmp_path / "classInd.txt"
    index.write_text("2 B\n1 A\n3 C\n")
    assert read_class_names(index) == ("A", "B", "C")
    assert set(Predictor.load(out.with_suffix(".onnx"), classes=index).predict_video(video).labels) <= {"A", "B", "C"}
    (tmp_path / "lonely.pt").write_bytes(out.with_suffix(".pt").read_bytes())
    with pytest.raises(ValueError, match="lonely.yaml"):
        Predictor.load(tmp_path / "lonely.pt")
    onnx = Predictor.load(out.with_suffix(".safetensors"), runtime="onnx", settings=PredictSettings(top_k=3)).predict_video(video)
    assert onnx.labels == results[0].labels and onnx.probabilities == pytest.approx(results[0].probabilities, abs=1e-4)
    with pytest.raises(ValueError, match=r"^runtime must be torch or onnx for a \.safetensors file, but got 'int8' \("):
        Predictor.load(out.with_suffix(".safetensors"), runtime="int8")  # fp32 weights: never run as if quantized


def test_a_frame_stream_gets_a_prediction_per_window(tmp_path: Path) -> None:
    finetune_folder(tmp_path / "ft")
    predictor = Predictor.load(tmp_path / "ft")
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, size=(24, 32, 3), dtype=np.uint8) for _ in range(20)]
    windows = list(predictor.stream(frames, window=8, hop=4))
    assert [w.video for w in windows] == ["frames 0-7", "frames 4-11", "frames 8-15", "frames 12-19"]
    assert [w.video for w in predictor.stream(frames, window=5, hop=10)] == ["frames 0-4", "frames 10-14"]
    assert windows[0] == predictor.predict_frames(frames[:8], name="frames 0-7")


def test_predict_cli_skips_bad_and_short_videos_lists_them_and_writes_csv_and_json(ucf: Path, tmp_path: Path, capsys) -> None:
    finetune_folder(tmp_path / "run" / "finetune")
    (tmp_path / "broken.avi").write_bytes(b"not a video at all")
    write_video(tmp_path / "short.avi", direction=(1, 0), start=(2, 2), frames=2)
    listing = tmp_path / "more.txt"
    listing.write_text("short.avi\nmissing.mp4\n")
    argv = ["predict", str(tmp_path / "run"), "--videos", str(ucf / "UCF-101"), str(tmp_path / "broken.avi"), str(listing), "--views", "2", "--crops", "3", "--top-k", "2", "--min-frames", "4"]
    argv += ["--csv", str(tmp_path / "p.csv"), "--json", str(tmp_path / "p.json"), "--no-progress"]
    assert main(argv) == 3
    out, err = capsys.readouterr()
    assert "6 videos predicted" in out and "videos/s" in out and "clips/s" in out and "3 skipped" in out
    for name, why in (("broken.avi", ""), ("short.avi", "too short: 2 frames, fewer than 4"), ("missing.mp4", "No such file")):
        assert sum(name in line and why in line for line in err.splitlines() if line.startswith("particle-nas: skipped")) == 1
    document = json.loads((tmp_path / "p.json").read_text())
    assert len(document["predictions"]) == 6 and {Path(s["video"]).name for s in document["skipped"]} == {"broken.avi", "short.avi", "missing.mp4"}
    assert document["views"] == 2 and document["crops"] == 3 and document["videos_per_s"] > 0
    rows = list(csv.DictReader((tmp_path / "p.csv").open()))
    assert len(rows) == 6 and rows[0].keys() == {"video", "label_1", "probability_1", "label_2", "probability_2", "clips"} and rows[0]["clips"] == "6"
    assert float(rows[0]["probability_1"]) >= float(rows[0]["probability_2"])
    assert main(["predict", str(tmp_path / "run"), "--videos", str(tmp_path / "broken.avi"), "--no-progress"]) == 1
    assert main(["predict", str(tmp_path), "--videos", str(ucf)]) == 2
    assert "holds no report.json" in capsys.readouterr().err


def test_video_paths_reads_files_folders_and_lists(ucf: Path, tmp_path: Path) -> None:
    listing = tmp_path / "l.txt"
    listing.write_text(f"{ucf / 'UCF-101' / 'MoveDown' / 'v_MoveDown_g01_c01.avi'} 1\n\nrel.avi\n")
    paths = video_paths([ucf / "UCF-101" / "MoveLeft", listing])
    assert [p.name for p in paths] == ["v_MoveLeft_g01_c01.avi", "v_MoveLeft_g02_c01.avi", "v_MoveDown_g01_c01.avi", "rel.avi"] and paths[-1].parent == tmp_path


@pytest.mark.parametrize("runtime", ["onnx", "int8"])
def test_onnx_runtimes_without_onnxruntime_are_one_line_with_the_install_hint(runtime: str, tmp_path: Path, monkeypatch, capsys) -> None:
    model = finetune_folder(tmp_path / "ft")
    save_int8(quantize_int8(model, [torch.rand(2, *NETWORK.input_shape) * 2 - 1]), tmp_path / "ft" / "model-int8.onnx")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime raises ImportError
    assert main(["predict", str(tmp_path / "ft"), "--runtime", runtime, "--videos", str(tmp_path)]) == 2
    assert capsys.readouterr().err == 'particle-nas: error: the onnx and int8 runtimes need onnx and onnxruntime, which are not installed: pip install -e ".[export]"\n'
