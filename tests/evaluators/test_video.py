from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from particle_nas.evaluators import (
    ProxyEvaluator,
    TrainConfig,
    VideoFolderConfig,
    decode_clip,
    list_videos,
    load_video_task,
)
from particle_nas.evaluators import _video
from particle_nas.space import SpecError

av = pytest.importorskip("av", reason="the video folder tests need PyAV (pip install av)")

FRAMES = 12


@pytest.fixture(scope="module")
def video_root(tmp_path_factory, video_writer) -> Path:
    """Two classes of three real encoded videos each (mp4 with mpeg4 and h264, avi with mjpeg), plus a corrupt file."""
    root = tmp_path_factory.mktemp("videos")
    for cls, direction in (("left", -1), ("right", 1)):
        (root / cls).mkdir()
        for j, (codec, ext) in enumerate((("mpeg4", "mp4"), ("libx264", "mp4"), ("mjpeg", "avi"))):
            video_writer(root / cls / f"{cls}_{j}.{ext}", direction=direction, codec=codec, frames=FRAMES + 3 * j)
    (root / "right" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 20)
    (root / "notes.txt").write_text("files at the top level are ignored")
    return root


def test_decode_samples_t_frames_resized(video_root: Path) -> None:
    clip = decode_clip(video_root / "right" / "right_0.mp4", (4, 16, 16))
    assert clip.shape == (3, 4, 16, 16) and clip.dtype == np.uint8
    # The square moves right: the bright mass's centroid x grows from frame to frame.
    mass = clip.astype(float).mean(axis=0)
    centroid = (mass * np.arange(16)).sum(axis=(1, 2)) / mass.sum(axis=(1, 2))
    assert np.all(np.diff(centroid) > 0)
    short = decode_clip(video_root / "left" / "left_0.mp4", (FRAMES * 2, 8, 8))  # more frames than the video: repeated
    assert short.shape[1] == FRAMES * 2
    with pytest.raises(ValueError):
        decode_clip(video_root / "right" / "broken.mp4", (4, 16, 16))


def test_folder_is_decoded_once_into_a_memmap_and_corrupt_files_are_listed(video_root: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    config = VideoFolderConfig(root=str(video_root), clip=(4, 16, 16), val_fraction=0.34, seed=0)
    assert config.class_names == ("left", "right") and config.num_classes == 2
    task = load_video_task(config, cache_dir=tmp_path)
    assert task.skipped == ("right/broken.mp4",)
    assert "skipped right/broken.mp4" in capsys.readouterr().err
    assert len(task.train) + len(task.val) == 6 and len(task.val) == 2  # one per class validates
    assert task.train.clips.shape[1:] == (3, 4, 16, 16) and task.train.clips.dtype == torch.uint8
    assert sorted(task.val.labels.tolist()) == [0, 1]
    assert len(list(tmp_path.glob("video-*.u8"))) == 1 and len(list(tmp_path.glob("video-*.json"))) == 1

    # A new process (memory cache cleared) maps the file and decodes nothing.
    _video._MEMORY.clear()
    monkeypatch.setattr(_video, "decode_clip", lambda *a, **k: pytest.fail("decoded again instead of reading the cache"))
    again = load_video_task(config, cache_dir=tmp_path)
    assert again is not task and again.skipped == task.skipped
    assert torch.equal(again.train.clips, task.train.clips) and torch.equal(again.val.labels, task.val.labels)
    assert load_video_task(config, cache_dir=tmp_path) is again


def test_ucf_style_split_lists(video_root: Path, tmp_path: Path) -> None:
    (tmp_path / "trainlist01.txt").write_text("left/left_0.mp4 1\nleft/left_1.mp4 1\nright/right_0.mp4 2\nright/broken.mp4 2\n")
    (tmp_path / "testlist01.txt").write_text("left/left_2.avi\nright/right_2.avi\n")
    config = VideoFolderConfig(root=str(video_root), clip=(4, 16, 16), train_list=str(tmp_path / "trainlist01.txt"), val_list=str(tmp_path / "testlist01.txt"))
    train, val = list_videos(config)
    assert train == [("left/left_0.mp4", 0), ("left/left_1.mp4", 0), ("right/right_0.mp4", 1), ("right/broken.mp4", 1)]
    assert val == [("left/left_2.avi", 0), ("right/right_2.avi", 1)]
    task = load_video_task(config, cache_dir=None, progress=False)
    assert task.train.labels.tolist() == [0, 0, 1] and task.val.labels.tolist() == [0, 1]


def test_hmdb_style_split_files(video_root: Path, tmp_path: Path) -> None:
    (tmp_path / "left_test_split1.txt").write_text("left_0.mp4 1\nleft_1.mp4 0\nleft_2.avi 2\n")
    (tmp_path / "right_test_split1.txt").write_text("right_0.mp4 1\nright_1.mp4 1\nright_2.avi 2\n")
    train, val = list_videos(VideoFolderConfig(root=str(video_root), hmdb_split_dir=str(tmp_path), split=1))
    assert train == [("left/left_0.mp4", 0), ("right/right_0.mp4", 1), ("right/right_1.mp4", 1)]
    assert val == [("left/left_2.avi", 0), ("right/right_2.avi", 1)]


@pytest.mark.parametrize("progress", [True, False])
def test_the_evaluator_shows_the_decoding_bar_unless_progress_is_off(video_root: Path, tmp_path: Path, capfd, progress: bool) -> None:
    config = VideoFolderConfig(root=str(video_root), clip=(2, 8, 12), val_fraction=0.34)  # a clip no other test decodes: not in this process's memory
    ProxyEvaluator(data=config, cache_dir=tmp_path / str(progress), progress=progress).task()
    err = capfd.readouterr().err
    assert ("decoding " + video_root.name in err) is progress
    assert "broken.mp4" in err  # what could not be decoded is said either way


def test_proxy_evaluator_trains_on_videos(video_root: Path, tmp_path: Path, tiny_spec) -> None:
    config = VideoFolderConfig(root=str(video_root), clip=(4, 8, 8), val_fraction=0.34)
    evaluator = ProxyEvaluator(data=config, train=TrainConfig(epochs=1, batch_size=2, threads=1), cache_dir=tmp_path)
    result = evaluator.evaluate(tiny_spec(num_classes=2), seed=0)
    assert 0.0 <= result.accuracy <= 1.0 and len(result.epoch_accuracy) == 1


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"root": "/nonexistent/videos"}, "VideoFolderConfig.root must be a folder with one sub-folder of videos per class, but got '/nonexistent/videos'."),
        ({"train_list": "trainlist01.txt"}, "VideoFolderConfig.val_list must be given together with the other list"),
        ({"clip": (4, 16)}, "VideoFolderConfig.clip must be three integers (T, H, W), but got (4, 16)."),
        ({"val_fraction": 1.0}, "VideoFolderConfig.val_fraction must be in"),
    ],
)
def test_config_validation(video_root: Path, changes: dict, message: str) -> None:
    with pytest.raises(SpecError) as info:
        VideoFolderConfig(**{"root": str(video_root), **changes})
    assert str(info.value).startswith(message)
