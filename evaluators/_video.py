"""Real videos as a proxy task: a class-per-folder tree or UCF101 / HMDB51-style split files, decoded once.

Layout: ``root/<class>/<video>`` (class names are the sorted sub-folder names).
Which videos train and which validate:

- ``train_list`` / ``val_list``: UCF101-style lists (``trainlist01.txt``,
  ``testlist01.txt``), one ``<class>/<video> [label]`` per line, paths relative
  to ``root``; the label, if present, is ignored (the folder decides);
- ``hmdb_split_dir`` + ``split``: HMDB51-style ``<class>_test_split<n>.txt``
  files whose lines are ``<video> <1|2|0>`` (train / test / unused);
- neither: a seeded, per-class ``val_fraction`` of the videos validates.

Classes are the sorted sub-folder names, or, with ``class_index`` (UCF101's
``classInd.txt``: ``<1-based index> <class>`` per line), the classes that file
lists, in its order (label i is its line i).

Each video is decoded with PyAV, ``T`` frames are sampled evenly over its
length (repeated when it is shorter) and resized to ``H x W`` RGB; only those
``T`` frames are kept while decoding. Videos are decoded by several processes
(every core by default) with a progress bar, and the clips that decode go into
one uint8 numpy memmap in the cache folder (training clips, then validation
clips, so each split is a view of it). The cache is built once: a process
checks the free disk space first, takes a lock beside the cache, writes under a
unique temporary name and publishes by rename (the data, then its index); others
wait for the lock and map what it wrote; later trials and runs map the file
without decoding. Files that do not decode (corrupt, no video stream, no frames)
are skipped and listed in ``VideoTask.skipped`` and in the cache's index file;
they never stop the run.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import hashlib
import itertools
import json
import multiprocessing
import os
import secrets
import socket
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from particle_nas.space import SpecError, check_clip, check_int, check_number

from ._data import ClipSet, TaskShape

VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".mpg", ".mpeg", ".m4v")
VIDEOS_PER_DECODER = 100  # the default starts one more decoding process per this many videos, up to every core
CACHE_VERSION = 2  # 2: only the clips that decode are stored, so a split's rows stay one block


@dataclass(frozen=True)
class VideoFolderConfig:
    """Where the videos are, how they are split, and the clip size they are decoded to."""

    root: str  # one sub-folder per class
    clip: tuple[int, int, int] = (8, 32, 32)  # frames T, height H, width W sampled from every video
    train_list: str | None = None  # UCF101-style list of training videos (relative to root)
    val_list: str | None = None  # ... and of validation videos
    hmdb_split_dir: str | None = None  # HMDB51-style split files (<class>_test_split<n>.txt)
    split: int = 1  # which HMDB51 split (1, 2 or 3)
    val_fraction: float = 0.2  # without split files: share of each class that validates
    seed: int = 0  # shuffles the val_fraction split
    class_index: str | None = None  # UCF101-style classInd.txt (relative to root or absolute): the classes and their order
    class_names: tuple[str, ...] = field(init=False, default=())  # sorted sub-folder names (or class_index's), read from root

    def __post_init__(self) -> None:
        p = "VideoFolderConfig."
        if not isinstance(self.root, (str, os.PathLike)) or not Path(self.root).is_dir():
            raise SpecError(p + "root", "must be a folder with one sub-folder of videos per class", self.root)
        object.__setattr__(self, "root", str(self.root))
        object.__setattr__(self, "clip", check_clip(p + "clip", self.clip, min_frames=1))
        if (self.train_list is None) != (self.val_list is None):
            raise SpecError(p + "val_list" if self.val_list is None else p + "train_list", "must be given together with the other list", self.val_list or self.train_list)
        for name in ("train_list", "val_list"):
            value = getattr(self, name)
            if value is not None and not (Path(self.root) / value).is_file() and not Path(value).is_file():
                raise SpecError(p + name, "must be a split file (absolute, or relative to root)", value)
        if self.hmdb_split_dir is not None and not Path(self.hmdb_split_dir).is_dir() and not (Path(self.root) / self.hmdb_split_dir).is_dir():
            raise SpecError(p + "hmdb_split_dir", "must be a folder of <class>_test_split<n>.txt files", self.hmdb_split_dir)
        check_int(p + "split", self.split, low=1, high=3)
        check_number(p + "val_fraction", self.val_fraction, low=0.0, high=1.0, low_open=True, high_open=True)
        object.__setattr__(self, "val_fraction", float(self.val_fraction))
        check_int(p + "seed", self.seed, low=0, high=2**32 - 1)
        classes = tuple(sorted(d.name for d in Path(self.root).iterdir() if d.is_dir() and not d.name.startswith(".")))
        if self.class_index is not None:
            classes = _read_class_index(p + "class_index", self.root, self.class_index, folders=classes)
        if len(classes) < 2:
            raise SpecError(p + "root", "must hold at least two class sub-folders", self.root)
        object.__setattr__(self, "class_names", classes)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return 3

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (3, *self.clip)

    def to_dict(self) -> dict[str, object]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        data["clip"] = list(self.clip)
        return data


@dataclass(frozen=True, eq=False)
class VideoTask(TaskShape):
    """Train and validation clips of a video folder (the same interface as ``SyntheticTask``)."""

    config: VideoFolderConfig
    train: ClipSet
    val: ClipSet
    skipped: tuple[str, ...]  # files that could not be decoded, relative to root


def _read_class_index(field_name: str, root: str, name: str, *, folders: tuple[str, ...]) -> tuple[str, ...]:
    """The classes a UCF101-style ``classInd.txt`` lists (``<index> <class>`` per line), in index order."""
    path = Path(name) if Path(name).is_absolute() else Path(root) / name
    if not path.is_file() and Path(name).is_file():
        path = Path(name)
    if not path.is_file():
        raise SpecError(field_name, "must be a class index file such as classInd.txt (absolute, or relative to root)", name)
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[0].isdigit():
            raise SpecError(field_name, "must have lines '<index> <class>'", line.strip())
        entries.append((int(parts[0]), parts[1]))
    entries.sort()
    classes = tuple(cls for _, cls in entries)
    if len(set(classes)) != len(classes):
        raise SpecError(field_name, "must list each class once", name)
    missing = [cls for cls in classes if cls not in folders]
    if missing:
        raise SpecError(field_name, "must list only sub-folders of root", missing[0])
    return classes


# ---------------------------------------------------------------- listing and splitting
def _resolve(config: VideoFolderConfig, name: str) -> Path:
    path = Path(name)
    return path if path.is_absolute() or not (Path(config.root) / path).exists() else Path(config.root) / path


def _read_list(config: VideoFolderConfig, name: str) -> list[str]:
    lines = _resolve(config, name).read_text(encoding="utf-8").splitlines()
    return [line.split()[0].replace("\\", "/") for line in lines if line.strip()]


def is_video(path: Path) -> bool:
    """A file whose name ends in one of VIDEO_EXTENSIONS (any case)."""
    return path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS


def videos_under(root: Path) -> list[Path]:
    """Every video file in ``root`` and its sub-folders, in path order."""
    return sorted(p for p in Path(root).rglob("*") if is_video(p))


def list_videos(config: VideoFolderConfig) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(train, val): lists of (path relative to root, label), in a fixed order."""
    classes = {name: i for i, name in enumerate(config.class_names)}
    root = Path(config.root)
    if config.train_list is not None and config.val_list is not None:
        split = []
        for name in (config.train_list, config.val_list):
            entries = []
            for rel in _read_list(config, name):
                label = classes.get(rel.split("/")[0])
                if label is not None:
                    entries.append((rel, label))
            split.append(entries)
        return split[0], split[1]
    if config.hmdb_split_dir is not None:
        folder = _resolve(config, config.hmdb_split_dir)
        train, val = [], []
        for cls, label in classes.items():
            path = folder / f"{cls}_test_split{config.split}.txt"
            if not path.is_file():
                continue
            for line in path.read_text(encoding="utf-8").splitlines():
                parts = line.split()
                if len(parts) >= 2 and parts[1] in ("1", "2"):
                    (train if parts[1] == "1" else val).append((f"{cls}/{parts[0]}", label))
        return train, val
    gen = torch.Generator().manual_seed(config.seed)
    train, val = [], []
    for cls, label in classes.items():
        files = sorted(p.name for p in (root / cls).iterdir() if is_video(p))
        order = torch.randperm(len(files), generator=gen).tolist()
        n_val = max(1, round(config.val_fraction * len(files))) if len(files) > 1 else 0
        for rank, i in enumerate(order):
            (val if rank < n_val else train).append((f"{cls}/{files[i]}", label))
    return sorted(train), sorted(val)


def check_video_split(config: VideoFolderConfig) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """``list_videos(config)``, or a one-line ValueError when a split is empty or a class has no video in one.

    Training a classifier needs every class on both sides: a class without a
    training video cannot be learned, one without a validation video not measured.
    """
    train, val = list_videos(config)
    if not train and not val:
        where = "its split files" if config.train_list or config.hmdb_split_dir else "its class folders"
        raise ValueError(f"{config.root} must hold videos ({', '.join(VIDEO_EXTENSIONS)}), but {where} list none.")
    for side, entries in (("training", train), ("validation", val)):
        have = {label for _, label in entries}
        for label, name in enumerate(config.class_names):
            if label not in have:
                raise ValueError(f"{config.root}: class {name!r} must have at least one {side} video, but has none ({len(entries)} {side} videos in all).")
    return train, val


# ---------------------------------------------------------------- decoding
def decode_clip(path: str | Path, clip: tuple[int, int, int], *, threads: int = 0) -> np.ndarray:
    """``T`` frames sampled evenly over the video at ``path``, resized to H x W RGB: uint8 (3, T, H, W).

    Frames are decoded in order and only the ``T`` the clip takes are converted
    and kept, so memory is bounded by the clip, not by the video's length. Which
    frames those are follows from the stream's frame count (or its duration times
    its frame rate); when the decoded count differs (no count in the container, a
    wrong one), the video is decoded a second time knowing the true count.
    ``threads``: the decoder's threads (0: FFmpeg's choice). Raises ValueError
    when the file does not decode or has no video frames.
    """
    return decode_views(path, clip, threads=threads)[0]


VIEW_CROPS: tuple[int, ...] = (1, 3)  # spatial crops per view decode_views takes
CROP_SCALE = 8 / 7  # crops > 1: the frame is resized to this many times H x W, then cropped (ImageNet's 256 / 224)


def _unreadable(err: Exception, av: Any) -> ValueError:
    """One line for a file that does not decode: our own ValueError as it is; PyAV's errors (some are ValueErrors),
    OSError and the rest as "TYPE: FFmpeg's words", without its errno and the path repeated."""
    if isinstance(err, ValueError) and not isinstance(err, av.error.FFmpegError):
        return err  # ours, already one line
    reason = getattr(err, "strerror", None) or str(err)
    return ValueError(f"{type(err).__name__}: {reason}".splitlines()[0])


def decode_views(path: str | Path, clip: tuple[int, int, int], *, views: int = 1, crops: int = 1, min_frames: int = 1, threads: int = 0) -> np.ndarray:
    """``views`` x ``crops`` clips of the video at ``path``: uint8 (views * crops, 3, T, H, W), view-major.

    Temporal views: each takes ``T`` frames spread evenly over the whole video,
    as training does (``decode_clip`` is the one view); view ``v`` of ``V`` is
    shifted by ``(v + 1/2) / V - 1/2`` of the spacing between two sampled frames,
    so the views are uniformly spaced and view 1 of 1 is the training clip.
    Spatial crops: 1 is the whole frame resized to H x W (as training);
    3 resizes the frame to ``CROP_SCALE`` x (H, W) and takes H x W at the start,
    centre and end of its longer side (X3D's and SlowFast's 3-crop test).
    One decoding pass serves every view. ValueError (one line) when the file
    does not decode or has fewer than ``min_frames`` frames.
    """
    check_int("decode_views.views", views, low=1, high=1024)
    if crops not in VIEW_CROPS:
        raise SpecError("decode_views.crops", f"must be one of {VIEW_CROPS}", crops)
    length, height, width = clip
    size = (height, width) if crops == 1 else (round(height * CROP_SCALE), round(width * CROP_SCALE))
    av = _import_av()
    try:
        frames, count = _sample_frames(av, path, length, size, None, views=views, threads=threads)
        if frames is None:  # the count the container stated was not the decoded one
            frames, again = _sample_frames(av, path, length, size, count, views=views, threads=threads)
            if frames is None:
                raise ValueError(f"decoded {count} frames, then {again}")
    except Exception as err:
        raise _unreadable(err, av) from None
    if count < min_frames:
        raise ValueError(f"too short: {count} frame{'s' * (count != 1)}, fewer than {min_frames}")
    out = frames.transpose(0, 4, 1, 2, 3)  # (views, 3, T, h, w)
    if crops == 1:
        return out.copy()
    h, w = size
    along_width = w - width >= h - height
    spare = (w - width) if along_width else (h - height)
    across = ((h - height) // 2) if along_width else ((w - width) // 2)
    cuts = []
    for start in (0, spare // 2, spare):
        y, x = (across, start) if along_width else (start, across)
        cuts.append(out[:, :, :, y : y + height, x : x + width])
    return np.stack(cuts, axis=1).reshape(views * crops, 3, length, height, width).copy()


def view_positions(count: int, length: int, views: int) -> list[list[int]]:
    """Frame numbers of each of ``views`` clips of ``length`` frames in a video of ``count`` frames (see ``decode_views``)."""
    base = np.linspace(0, count - 1, length)
    step = (count - 1) / max(length - 1, 1)
    return [np.clip(np.round(base + ((v + 0.5) / views - 0.5) * step), 0, count - 1).astype(int).tolist() for v in range(views)]


@contextmanager
def _video_stream(av, path: str | Path, *, threads: int) -> Iterator[tuple[object, object]]:
    """(the open container of ``path``, its first video stream, decoding with ``threads`` threads; 0: FFmpeg's choice)."""
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
        yield container, stream


def _sample_frames(av, path: str | Path, length: int, size: tuple[int, int], count: int | None, *, views: int, threads: int) -> tuple[np.ndarray | None, int]:
    """(views x T x h x w x 3 frames at the positions for ``count`` frames, the number decoded); None when ``count`` was not that number.

    ``count`` None: the count the container states.
    """
    height, width = size
    with _video_stream(av, path, threads=threads) as (container, stream):
        if count is None:
            count = _stated_frames(stream, container.duration)
        wanted: dict[int, list[tuple[int, int]]] = {}  # frame number -> the (view, slot)s it fills (several when the video is shorter than the clip)
        for view, positions in enumerate(view_positions(count, length, views) if count > 0 else ()):
            for slot, index in enumerate(positions):
                wanted.setdefault(index, []).append((view, slot))
        frames = np.empty((views, length, height, width, 3), dtype=np.uint8)
        decoded = 0
        for frame in container.decode(stream):
            places = wanted.get(decoded)
            if places:
                image = frame.to_ndarray(width=width, height=height, format="rgb24")
                for view, slot in places:
                    frames[view, slot] = image
            decoded += 1
    if decoded == 0:
        raise ValueError("no decodable frames")
    return (frames if decoded == count else None), decoded


def _stated_frames(stream, container_duration: int | None) -> int:
    """The frame count a stream states: its own, or its duration times its frame rate (0 when neither is known)."""
    if stream.frames > 0:
        return int(stream.frames)
    rate = stream.average_rate or stream.guessed_rate
    if stream.duration and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
    else:
        seconds = container_duration / 1_000_000 if container_duration else 0.0  # av.time_base: microseconds
    return round(seconds * float(rate)) if rate else 0


@dataclass(frozen=True)
class DecodeJob:
    """One clip to decode from the video at ``path``: ``T`` frames resized to H x W RGB.

    ``start`` None: the ``T`` frames are spread evenly over the whole video
    (``decode_clip``); a frame number: the ``T`` consecutive frames from it on
    (``decode_frames``, which seeks where the container allows).
    """

    path: str
    clip: tuple[int, int, int]
    start: int | None = None


def decode_job(job: DecodeJob, *, threads: int = 0) -> np.ndarray:
    """The uint8 (3, T, H, W) clip ``job`` asks for (ValueError when the file does not give it)."""
    if job.start is None:
        return decode_clip(job.path, job.clip, threads=threads)
    return decode_frames(job.path, job.clip, start=job.start, threads=threads)


def decode_frames(path: str | Path, clip: tuple[int, int, int], *, start: int, threads: int = 0, seek: bool = True) -> np.ndarray:
    """The ``T`` consecutive frames of the video at ``path`` from frame ``start`` (0-based), resized to H x W RGB: uint8 (3, T, H, W).

    With ``seek`` and a container that states a frame rate and timestamps, the
    decoder jumps to the last key frame at or before ``start`` instead of
    decoding from the first frame, and numbers frames by their timestamps; when
    that numbering does not land on ``start`` (no timestamps, a variable frame
    rate), the video is decoded again from its first frame, counting frames.
    Raises ValueError when the file does not decode or ends before the clip does.
    """
    av = _import_av()
    try:
        frames = _consecutive_frames(av, path, clip, start, threads=threads, seek=seek and start > 0)
        if frames is None:
            frames = _consecutive_frames(av, path, clip, start, threads=threads, seek=False)
    except Exception as err:
        raise _unreadable(err, av) from None
    return frames.transpose(3, 0, 1, 2).copy()


def _consecutive_frames(av, path: str | Path, clip: tuple[int, int, int], start: int, *, threads: int, seek: bool) -> np.ndarray | None:
    """T x H x W x 3 frames start .. start + T - 1; None when a seek's timestamps do not number them (decode from the start instead)."""
    length, height, width = clip
    frames = np.empty((length, height, width, 3), dtype=np.uint8)
    got = 0
    with _video_stream(av, path, threads=threads) as (container, stream):
        rate, origin = stream.average_rate or stream.guessed_rate, stream.start_time or 0
        if seek and not (rate and stream.time_base):
            return None
        if seek:
            container.seek(origin + int(Fraction(start) / (Fraction(rate) * stream.time_base)), stream=stream, backward=True, any_frame=False)
        for count, frame in enumerate(container.decode(stream)):
            if seek:
                if frame.pts is None:
                    return None
                index = round(float((frame.pts - origin) * stream.time_base * rate))
            else:
                index = count
            if index < start:
                continue
            if index != start + got:  # (only when seeking: counted frames number themselves) the timestamps do not number the frames
                return None
            frames[got] = frame.to_ndarray(width=width, height=height, format="rgb24")
            got += 1
            if got == length:
                return frames
    raise ValueError(f"it ends after frame {start + got - 1 if got else 'none'}, before frame {start + length - 1} of the clip")


def video_frames(path: str | Path) -> int:
    """The frame count the container of ``path`` states (0 when it states none; ValueError when it does not open)."""
    av = _import_av()
    try:
        with _video_stream(av, path, threads=0) as (container, stream):
            return _stated_frames(stream, container.duration)
    except Exception as err:
        raise _unreadable(err, av) from None


def _import_av():
    try:
        import av
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("reading videos needs PyAV: pip install av") from None
    return av


def _decode_or_reason(job: DecodeJob, threads: int) -> np.ndarray | str:
    """``decode_job``, or why the file does not give the clip (what a decoding process sends back)."""
    try:
        return decode_job(job, threads=threads)
    except ValueError as err:
        return str(err)


def default_decode_workers(videos: int) -> int:
    """Decoding processes by default: every core this process may run on, each with at least ``VIDEOS_PER_DECODER`` videos.

    Starting them costs seconds (their fork server imports this package once;
    measured in docs/benchmarks.md), so a small folder is decoded in this process.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, videos // VIDEOS_PER_DECODER))


def _decoder_context() -> multiprocessing.context.BaseContext:
    """Processes forked from a fork server that imported this module once: they import nothing themselves, share its pages,
    and inherit no thread or lock of the caller (a search worker, a Ray actor), as a plain fork would."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def _decoded(jobs: list[DecodeJob], *, workers: int, progress: bool, desc: str) -> Iterator[np.ndarray | str]:
    """``_decode_or_reason`` of every job, in order, by ``workers`` processes, with a progress bar.

    At most a few clips per process wait to be taken, whatever the number of videos.
    """
    from tqdm.auto import tqdm

    workers = min(workers, len(jobs))
    bar = tqdm(total=len(jobs), desc=desc, unit="clip", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    try:
        if workers <= 1 or multiprocessing.current_process().daemon:  # a daemonic process may not start others
            for job in jobs:
                yield _decode_or_reason(job, 0)
                bar.update()
            return
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=_decoder_context())
        try:
            todo = iter(jobs)
            pending = deque(pool.submit(_decode_or_reason, job, 1) for job in itertools.islice(todo, 4 * workers))
            while pending:
                result = pending.popleft().result()
                for job in itertools.islice(todo, 1):
                    pending.append(pool.submit(_decode_or_reason, job, 1))
                yield result
                bar.update()
        except BrokenProcessPool as err:
            raise ValueError(f"a video decoding process died ({err}); decode with workers=1 to find the file") from None
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    finally:
        bar.close()


def _kept_clips(jobs: list[DecodeJob], names: list[str], ok: np.ndarray, skipped: list[str], *, workers: int, progress: bool, desc: str) -> Iterator[np.ndarray]:
    """The clips of the jobs that decode, in order; sets ``ok`` and names each skipped one (in ``skipped`` and on stderr)."""
    for i, result in enumerate(_decoded(jobs, workers=workers, progress=progress, desc=desc)):
        if isinstance(result, str):
            skipped.append(names[i])
            print(f"particle-nas: skipped {names[i]}: {result}", file=sys.stderr)
        else:
            ok[i] = True
            yield result


def file_stats(root: str | Path, rels: Iterable[str]) -> list[list[object]]:
    """[path, size, mtime_ns] of each file (None, None when it cannot be read): what a cache digest depends on."""
    stats: list[list[object]] = []
    for rel in rels:
        try:
            st = (Path(root) / rel).stat()
            stats.append([rel, st.st_size, st.st_mtime_ns])
        except OSError:
            stats.append([rel, None, None])
    return stats


def cache_digest(**content: object) -> str:
    """A short hash of what a cache holds (the cache's version, the clip, the files and how they are cut)."""
    text = json.dumps({"version": CACHE_VERSION, **content}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _digest(config: VideoFolderConfig, entries: list[tuple[str, int]]) -> str:
    files = [[*stat[:1], label, *stat[1:]] for stat, (_, label) in zip(file_stats(config.root, [rel for rel, _ in entries]), entries)]
    return cache_digest(clip=list(config.clip), files=files)


# ---------------------------------------------------------------- the cache on disk
# video-<digest>.u8    the clips that decode, in the split's order (training, then validation), uint8 (3, T, H, W) each
# video-<digest>.json  which files decoded; published after the data, so its presence means the data is whole
# video-<digest>.lock  held (flock) by the process that builds the cache; the others wait, then map it


def _open_cache(index_path: Path, data_path: Path, n_entries: int, shape_one: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]] | None:
    """(clips, ok, skipped) of a finished cache, mapped copy-on-write; None when there is none (or it is not whole)."""
    index = _read_index(index_path)
    if index is None or len(index.get("ok", ())) != n_entries:
        return None
    ok = np.array(index["ok"], dtype=bool)
    shape = (int(ok.sum()), *shape_one)
    try:
        if data_path.stat().st_size != int(np.prod(shape)):
            return None
    except OSError:
        return None
    clips = np.memmap(data_path, dtype=np.uint8, mode="c", shape=shape) if shape[0] else np.zeros(shape, dtype=np.uint8)
    return clips, ok, tuple(index["skipped"])


def _read_index(path: Path) -> dict | None:
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return index if isinstance(index, dict) and index.get("version") == CACHE_VERSION else None


@contextmanager
def _build_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (waiting for the process that holds it), released on leaving.

    On NFS, Linux emulates flock with POSIX byte-range locks, so the lock holds
    across machines too. Where no lock can be taken (a filesystem mounted without
    locking), the cache is built anyway: unique temporary names and the order of
    publication keep it correct, at the cost of decoding more than once.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                print(f"particle-nas: waiting for another process to finish the video cache ({path.name})", file=sys.stderr)
                fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as err:
            print(f"particle-nas: cannot lock {path} ({err.strerror or err}); building the video cache without a lock", file=sys.stderr)
        yield
    finally:
        os.close(fd)  # releases the lock


def _free_bytes(folder: Path) -> int:
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def _space_message(needed: int, folder: Path) -> str:
    return f"video cache needs {needed} bytes in {folder}, but only {_free_bytes(folder)} bytes are free."


def _tmp_name(target: Path) -> Path:
    """A temporary name beside ``target`` that no other process (on this machine or another) uses."""
    return target.with_name(f"{target.name}.{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}.tmp")


def _remove_dead_tmp(folder: Path, digest: str) -> None:
    """Remove the temporary files of builders on this machine that died (a kill leaves them)."""
    host = socket.gethostname()
    for path in folder.glob(f"video-{digest}.*.tmp"):
        owner = path.name.removesuffix(".tmp").split(".", 2)[-1].rsplit("-", 2)  # video-<digest>.<u8|json>.<host>-<pid>-<random>.tmp
        if len(owner) != 3 or owner[0] != host or not owner[1].isdigit():
            continue
        try:
            os.kill(int(owner[1]), 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
        except OSError:
            pass  # alive (another user's)


def _publish(target: Path, chunks: Iterable[bytes | np.ndarray]) -> None:
    """Write ``chunks`` to a unique temporary file beside ``target``, then rename it onto ``target``; on any failure, remove it."""
    tmp = _tmp_name(target)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        try:
            for chunk in chunks:
                view = memoryview(chunk).cast("B")
                while view:
                    view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _build_cache(jobs: list[DecodeJob], names: list[str], index_path: Path, data_path: Path, *, workers: int, progress: bool, desc: str) -> None:
    """Decode the jobs into ``data_path``, then write ``index_path``: each published whole, by rename, the data first."""
    folder = data_path.parent
    needed = len(jobs) * int(np.prod((3, *jobs[0].clip)))
    if _free_bytes(folder) < needed:
        raise ValueError(_space_message(needed, folder))
    ok = np.zeros(len(jobs), dtype=bool)
    skipped: list[str] = []
    try:
        _publish(data_path, _kept_clips(jobs, names, ok, skipped, workers=workers, progress=progress, desc=desc))
        index = {"version": CACHE_VERSION, "ok": ok.tolist(), "skipped": skipped, "files": names}
        _publish(index_path, [json.dumps(index).encode()])
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise ValueError(_space_message(needed, folder)) from None


def _decode_in_memory(jobs: list[DecodeJob], names: list[str], *, workers: int, progress: bool, desc: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    ok = np.zeros(len(jobs), dtype=bool)
    skipped: list[str] = []
    clips = np.zeros((len(jobs), 3, *jobs[0].clip), dtype=np.uint8)
    rows = 0
    for rows, clip in enumerate(_kept_clips(jobs, names, ok, skipped, workers=workers, progress=progress, desc=desc), start=1):
        clips[rows - 1] = clip
    return clips[:rows], ok, tuple(skipped)


def cached_clips(jobs: list[DecodeJob], names: list[str], *, digest: str, cache_dir: str | Path | None, workers: int, progress: bool, desc: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """(clips of the jobs that decode, which did, the names of those that did not), decoded once into ``cache_dir``.

    Every job has the same clip size. With ``cache_dir``, ``video-<digest>.u8`` is
    built once under the folder's lock by ``workers`` processes and mapped
    copy-on-write (later calls and processes decode nothing); without, the
    clips are decoded into memory.
    """
    check_int("cached_clips.workers", workers, low=1)
    if cache_dir is None:
        return _decode_in_memory(jobs, names, workers=workers, progress=progress, desc=desc)
    shape_one = (3, *jobs[0].clip)
    folder = Path(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    index_path, data_path = folder / f"video-{digest}.json", folder / f"video-{digest}.u8"
    cached = _open_cache(index_path, data_path, len(jobs), shape_one)
    if cached is None:
        with _build_lock(folder / f"video-{digest}.lock"):
            cached = _open_cache(index_path, data_path, len(jobs), shape_one)  # built while this process waited
            if cached is None:
                _remove_dead_tmp(folder, digest)
                _build_cache(jobs, names, index_path, data_path, workers=workers, progress=progress, desc=desc)
                cached = _open_cache(index_path, data_path, len(jobs), shape_one)
        if cached is None:
            raise ValueError(f"{data_path} must hold the video cache just written, but it does not (was it removed?).")
    return cached


_MEMORY: dict[tuple[VideoFolderConfig, str | None], VideoTask] = {}


def load_video_task(config: VideoFolderConfig, *, cache_dir: str | Path | None = None, progress: bool = True, workers: int | None = None) -> VideoTask:
    """Decode the videos of ``config`` once (into ``cache_dir/video-<digest>.u8`` when given) and map them.

    Calls with the same config in one process return the same task; with a
    ``cache_dir``, later processes read the memmap and decode nothing. Processes
    that ask at once (local workers, Ray actors, machines sharing the folder)
    build it once: one holds the folder's lock and decodes, the others wait and
    map what it wrote. ``workers``: decoding processes (default:
    ``default_decode_workers``, every core for a large folder); the cache is
    the same whatever their number.
    """
    key = (config, None if cache_dir is None else str(cache_dir))
    if key in _MEMORY:
        return _MEMORY[key]
    train_entries, val_entries = list_videos(config)
    entries = train_entries + val_entries
    if not train_entries or not val_entries:
        raise ValueError(f"{config.root}: the split has {len(train_entries)} training and {len(val_entries)} validation videos; both must be non-empty.")
    if workers is None:
        workers = default_decode_workers(len(entries))
    check_int("load_video_task.workers", workers, low=1)
    root = Path(config.root)
    jobs = [DecodeJob(str(root / rel), config.clip) for rel, _ in entries]
    digest = _digest(config, entries) if cache_dir is not None else ""
    clips, ok, skipped = cached_clips(jobs, [rel for rel, _ in entries], digest=digest, cache_dir=cache_dir, workers=workers, progress=progress, desc=f"decoding {root.name}")
    labels = torch.tensor([label for _, label in entries], dtype=torch.int64)
    data = torch.from_numpy(clips)
    n_train = len(train_entries)
    train_rows = int(ok[:n_train].sum())  # the rows hold the clips that decoded: training ones, then validation ones
    if train_rows == 0 or train_rows == len(data):
        raise ValueError(f"{config.root}: no decodable {'training' if train_rows == 0 else 'validation'} video ({len(skipped)} skipped).")
    kept = torch.from_numpy(np.flatnonzero(ok))
    train = ClipSet(clips=data[:train_rows], labels=labels[kept[:train_rows]])  # views of the memmap: nothing is copied
    val = ClipSet(clips=data[train_rows:], labels=labels[kept[train_rows:]])
    task = VideoTask(config=config, train=train, val=val, skipped=skipped)
    _MEMORY[key] = task
    return task
