"""The video cache under real faults: two processes building it at once, a lock that cannot be taken, a full disk, a killed builder's leftovers."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from particle_nas.evaluators import VideoFolderConfig, decode_clip, load_video_task
from particle_nas.evaluators import _video
from particle_nas.space import SpecError

av = pytest.importorskip("av", reason="the video cache tests need PyAV (pip install av)")

CLIP = (4, 16, 16)
BIG_CLIP = (16, 64, 64)  # 196,608 bytes a video: the 8 files need more than a 1 MiB disk


@pytest.fixture(scope="module")
def videos(tmp_path_factory, video_writer) -> Path:
    """Two classes of three videos; a corrupt file in the middle of each class."""
    root = tmp_path_factory.mktemp("videos")
    for cls, direction in (("left", -1), ("right", 1)):
        (root / cls).mkdir()
        for j in range(3):
            video_writer(root / cls / f"{cls}_{j}.mp4", direction=direction, frames=10 + 5 * j)
        (root / cls / f"{cls}_1b.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video" * 20)  # sorts between _1 and _2
    return root


@pytest.fixture(autouse=True)
def _fresh_memory():
    _video._MEMORY.clear()
    yield
    _video._MEMORY.clear()


def _config(root: Path, clip=CLIP) -> VideoFolderConfig:
    return VideoFolderConfig(root=str(root), clip=clip, val_fraction=0.4, seed=0)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.tmp"))


# ---------------------------------------------------------------- several processes at once
def _load_in_child(root: str, cache: str, out: str, barrier, no_lock: bool) -> None:
    """One process of the race: wait for the other, load the task, save its clips and whether it built the cache."""
    import fcntl

    from particle_nas.evaluators import _video as video

    if no_lock:  # a filesystem without locks (NFS mounted nolock): the OS call refuses
        def flock(fd, operation):
            raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

        fcntl.flock = flock
    builds = []
    real_build = video._build_cache
    video._build_cache = lambda *a, **k: (builds.append(1), real_build(*a, **k))[1]
    barrier.wait()
    task = video.load_video_task(_config(Path(root)), cache_dir=cache, progress=False, workers=1)
    np.savez(out, train=task.train.clips.numpy(), val=task.val.clips.numpy(), train_labels=task.train.labels.numpy(), builds=len(builds))


@pytest.mark.parametrize("no_lock", [False, True], ids=["flock", "no-lock"])
def test_two_processes_build_the_cache_at_once_and_read_identical_clips(videos: Path, tmp_path: Path, no_lock: bool) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    cache = tmp_path / "cache"
    procs = [ctx.Process(target=_load_in_child, args=(str(videos), str(cache), str(tmp_path / f"out{i}.npz"), barrier, no_lock)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
    assert [p.exitcode for p in procs] == [0, 0]
    outs = [np.load(tmp_path / f"out{i}.npz") for i in range(2)]
    reference = load_video_task(_config(videos), cache_dir=None, progress=False, workers=1)  # decoded here, in memory
    for out in outs:
        assert np.array_equal(out["train"], reference.train.clips.numpy()) and np.array_equal(out["val"], reference.val.clips.numpy())
        assert np.array_equal(out["train_labels"], reference.train.labels.numpy())
    builds = sum(int(out["builds"]) for out in outs)
    assert builds == 1 if not no_lock else builds in (1, 2)  # with the lock, the loser waited and mapped the winner's cache
    assert len(list(cache.glob("video-*.u8"))) == 1 and len(list(cache.glob("video-*.json"))) == 1 and _leftovers(cache) == []


def test_one_and_two_decoding_processes_write_the_same_cache(videos: Path, tmp_path: Path, capsys) -> None:
    one = load_video_task(_config(videos), cache_dir=tmp_path / "one", progress=False, workers=1)
    _video._MEMORY.clear()
    two = load_video_task(_config(videos), cache_dir=tmp_path / "two", progress=False, workers=2)
    assert one.skipped == two.skipped == ("left/left_1b.mp4", "right/right_1b.mp4")
    assert capsys.readouterr().err.count("skipped left/left_1b.mp4") == 2  # each build names it, whichever process decoded it
    (data_one,), (data_two,) = (tmp_path / "one").glob("*.u8"), (tmp_path / "two").glob("*.u8")
    assert data_one.name == data_two.name and data_one.read_bytes() == data_two.read_bytes()
    assert json.loads(data_one.with_suffix(".json").read_text()) == json.loads(data_two.with_suffix(".json").read_text())


def test_decoding_processes_default_to_every_core_for_a_large_folder_only() -> None:
    cores = len(os.sched_getaffinity(0))
    assert _video.default_decode_workers(8) == 1  # starting processes would cost more than it saves
    assert _video.default_decode_workers(2 * _video.VIDEOS_PER_DECODER) == min(cores, 2)
    assert _video.default_decode_workers(13_320) == cores  # UCF101


def test_decode_workers_must_be_positive(videos: Path) -> None:
    with pytest.raises(SpecError, match="load_video_task.workers must be >= 1, but got 0"):
        load_video_task(_config(videos), workers=0)


# ---------------------------------------------------------------- memory: the clip's frames, not the video's
def _every_frame(path: Path, clip: tuple[int, int, int]) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(width=clip[2], height=clip[1], format="rgb24") for f in container.decode(video=0)])


@pytest.mark.parametrize("ext", ["mp4", "mkv"])  # mp4 states its frame count; mkv does not (the count comes from the duration)
def test_a_long_video_is_decoded_holding_only_the_clips_frames(tmp_path: Path, video_writer, ext: str) -> None:
    path = tmp_path / f"long.{ext}"
    video_writer(path, frames=3000, rate=25)
    frames = _every_frame(path, CLIP)
    assert len(frames) == 3000
    tracemalloc.start()
    try:
        clip = decode_clip(path, CLIP)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    index = np.linspace(0, 2999, CLIP[0]).round().astype(int)
    assert np.array_equal(clip, frames[index].transpose(3, 0, 1, 2))  # the same frames a full decode samples
    assert peak < frames.nbytes / 20  # the whole video, resized, is 2.3 MB; the clip 3 KB


def test_a_video_shorter_than_its_stated_length_is_sampled_over_the_frames_it_has(tmp_path: Path, video_writer) -> None:
    """A file cut short between two frames: its header states 200 frames, about half decode; the clip spans those decoded."""
    whole = tmp_path / "whole.avi"
    video_writer(whole, codec="mjpeg", frames=200)
    data = whole.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: data.index(b"00dc", len(data) // 2)])  # before the header of an AVI frame chunk
    with av.open(str(cut)) as container:
        assert container.streams.video[0].frames == 200
    frames = _every_frame(cut, CLIP)
    assert 0 < len(frames) < 200
    index = np.linspace(0, len(frames) - 1, CLIP[0]).round().astype(int)
    assert np.array_equal(decode_clip(cut, CLIP), frames[index].transpose(3, 0, 1, 2))


# ---------------------------------------------------------------- a corrupt file in the middle of a split
def test_a_corrupt_video_in_the_middle_of_a_split_copies_nothing_out_of_the_memmap(videos: Path, tmp_path: Path) -> None:
    config = _config(videos)
    task = load_video_task(config, cache_dir=tmp_path, progress=False, workers=1)
    assert task.skipped == ("left/left_1b.mp4", "right/right_1b.mp4")
    (data,) = tmp_path.glob("*.u8")
    rows = len(task.train) + len(task.val)
    assert rows == 6 and data.stat().st_size == rows * 3 * int(np.prod(CLIP))  # only the clips that decode are stored
    storage = task.train.clips.untyped_storage()
    assert task.val.clips.untyped_storage().data_ptr() == storage.data_ptr() and storage.nbytes() == data.stat().st_size  # both views of one map
    train, val = _video.list_videos(config)
    kept = [(rel, label) for rel, label in train + val if not rel.endswith("_1b.mp4")]
    assert task.train.labels.tolist() + task.val.labels.tolist() == [label for _, label in kept]
    clips = torch.cat([task.train.clips, task.val.clips])
    assert all(torch.equal(clips[row], torch.from_numpy(decode_clip(videos / rel, CLIP))) for row, (rel, _) in enumerate(kept))


# ---------------------------------------------------------------- a full disk
@pytest.fixture
def small_disk(tmp_path: Path, tmpfs):
    """A real 1 MiB tmpfs (root can mount one here); None where mounting is not permitted."""
    return tmpfs(tmp_path / "disk", "1m", required=False)


def _fake_statvfs(monkeypatch, *, free_bytes: int, calls: int) -> None:
    """os.statvfs says ``free_bytes`` are free for its first ``calls`` calls, then tells the truth."""
    real = os.statvfs
    seen = []

    def statvfs(path):
        seen.append(path)
        st = real(path)
        if len(seen) > calls:
            return st
        return os.statvfs_result((4096, 4096, 1 << 20, free_bytes // 4096, free_bytes // 4096, *tuple(st)[5:]))

    monkeypatch.setattr(os, "statvfs", statvfs)


def test_free_space_is_checked_before_the_cache_is_created(videos: Path, tmp_path: Path, small_disk, monkeypatch) -> None:
    folder = small_disk
    if folder is None:  # no mount here: the pre-check's only input, the OS call, says a few blocks are free
        folder = tmp_path / "cache"
        folder.mkdir()
        _fake_statvfs(monkeypatch, free_bytes=8 * 4096, calls=10)
    needed = 8 * 3 * int(np.prod(BIG_CLIP))  # every listed file (8), corrupt ones included: what decodes is not known yet
    with pytest.raises(ValueError) as info:
        load_video_task(_config(videos, BIG_CLIP), cache_dir=folder, progress=False, workers=1)
    free = _video._free_bytes(folder)
    assert str(info.value) == f"video cache needs {needed} bytes in {folder}, but only {free} bytes are free." and free < needed
    assert not [p for p in folder.iterdir() if not p.name.endswith(".lock")]  # nothing written


def test_a_disk_that_fills_while_writing_leaves_no_temporary_file(videos: Path, tmp_path: Path, small_disk, monkeypatch) -> None:
    folder = small_disk
    if small_disk is not None:  # the pre-check is told there is room; the real 1 MiB disk fills at the write
        _fake_statvfs(monkeypatch, free_bytes=1 << 30, calls=1)
    else:  # the write's OS call fails with ENOSPC once the cache file holds two clips
        folder = tmp_path / "cache"
        folder.mkdir()
        real_write, written = os.write, []

        def write(fd, data):
            if os.readlink(f"/proc/self/fd/{fd}").endswith(".tmp") and len(written) >= 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            written.append(len(data))
            return real_write(fd, data)

        monkeypatch.setattr(os, "write", write)
    needed = 8 * 3 * int(np.prod(BIG_CLIP))
    with pytest.raises(ValueError) as info:
        load_video_task(_config(videos, BIG_CLIP), cache_dir=folder, progress=False, workers=1)
    assert str(info.value) == f"video cache needs {needed} bytes in {folder}, but only {_video._free_bytes(folder)} bytes are free."
    assert _leftovers(folder) == [] and not list(folder.glob("*.u8")) and not list(folder.glob("*.json"))


# ---------------------------------------------------------------- a killed builder's leftovers
def test_a_killed_builders_temporary_file_is_removed_by_the_next_build(videos: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(_video.socket, "gethostname", lambda: "node-1.cluster.example")  # a host name with dots and dashes
    config = _config(videos)
    digest = _video._digest(config, sum(_video.list_videos(config), []))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a process that is gone, as a SIGKILLed builder is
    stale = tmp_path / f"video-{digest}.u8.{_video.socket.gethostname()}-{dead.pid}-0badc0de.tmp"
    stale.write_bytes(b"\x00" * 1000)
    alive = tmp_path / f"video-{digest}.u8.{_video.socket.gethostname()}-{os.getpid()}-0badc0de.tmp"  # a builder still at work (this process)
    alive.write_bytes(b"\x00" * 1000)
    elsewhere = tmp_path / f"video-{digest}.json.other-node-{dead.pid}-0badc0de.tmp"  # another machine's: its pids are not ours to check
    elsewhere.write_bytes(b"{}")
    load_video_task(config, cache_dir=tmp_path, progress=False, workers=1)
    assert _leftovers(tmp_path) == sorted([alive.name, elsewhere.name])
