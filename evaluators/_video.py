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
length (repeated when it is shorter) and resized to ``H x W`` RGB. The clips
go into one uint8 numpy memmap in the cache folder, written once with a
progress bar; later trials and runs map it without decoding. Files that do
not decode (corrupt, no video stream, no frames) are skipped and listed in
``VideoTask.skipped`` and in the cache's index file; they never stop the run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from particle_nas.space import SpecError, check_clip, check_int, check_number

from ._data import ClipSet, TaskShape

VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".mpg", ".mpeg", ".m4v")
CACHE_VERSION = 1


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
        files = sorted(p.name for p in (root / cls).iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
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
def decode_clip(path: str | Path, clip: tuple[int, int, int]) -> np.ndarray:
    """``T`` frames sampled evenly over the video at ``path``, resized to H x W RGB: uint8 (3, T, H, W).

    Raises ValueError when the file does not decode or has no video frames.
    """
    try:
        import av
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("reading video folders needs PyAV: pip install av") from None
    frames, height, width = clip
    images = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError("no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                images.append(frame.to_ndarray(width=width, height=height, format="rgb24"))
    except ValueError:
        raise
    except Exception as err:  # av.error.*, OSError, ...: a file we cannot read
        raise ValueError(f"{type(err).__name__}: {err}".splitlines()[0]) from None
    if not images:
        raise ValueError("no decodable frames")
    index = np.linspace(0, len(images) - 1, frames).round().astype(int)
    return np.stack([images[i] for i in index]).transpose(3, 0, 1, 2).copy()  # (3, T, H, W)


def _digest(config: VideoFolderConfig, entries: list[tuple[str, int]]) -> str:
    root = Path(config.root)
    files = []
    for rel, label in entries:
        try:
            st = (root / rel).stat()
            files.append([rel, label, st.st_size, st.st_mtime_ns])
        except OSError:
            files.append([rel, label, None, None])
    text = json.dumps({"version": CACHE_VERSION, "clip": list(config.clip), "files": files}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


_MEMORY: dict[tuple[VideoFolderConfig, str | None], VideoTask] = {}


def load_video_task(config: VideoFolderConfig, *, cache_dir: str | Path | None = None, progress: bool = True) -> VideoTask:
    """Decode the videos of ``config`` once (into ``cache_dir/video-<digest>.u8`` when given) and map them.

    Calls with the same config in one process return the same task; with a
    ``cache_dir``, later processes read the memmap and decode nothing.
    """
    key = (config, None if cache_dir is None else str(cache_dir))
    if key in _MEMORY:
        return _MEMORY[key]
    train_entries, val_entries = list_videos(config)
    entries = train_entries + val_entries
    if not train_entries or not val_entries:
        raise ValueError(f"{config.root}: the split has {len(train_entries)} training and {len(val_entries)} validation videos; both must be non-empty.")
    digest = _digest(config, entries)
    shape_one = (3, *config.clip)
    index_path = data_path = None
    clips = None
    if cache_dir is not None:
        folder = Path(cache_dir)
        folder.mkdir(parents=True, exist_ok=True)
        index_path, data_path = folder / f"video-{digest}.json", folder / f"video-{digest}.u8"
        index = _read_index(index_path)
        if index is not None and data_path.is_file() and data_path.stat().st_size == len(entries) * int(np.prod(shape_one)):
            clips = np.memmap(data_path, dtype=np.uint8, mode="c", shape=(len(entries), *shape_one))
            ok = np.array(index["ok"], dtype=bool)
            skipped = tuple(index["skipped"])
    if clips is None:
        clips, ok, skipped = _decode_all(config, entries, data_path, progress=progress)
        if index_path is not None:
            tmp = index_path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"version": CACHE_VERSION, "ok": ok.tolist(), "skipped": list(skipped), "files": [e[0] for e in entries]}))
            os.replace(tmp, index_path)
    labels = torch.tensor([label for _, label in entries], dtype=torch.int64)
    data = torch.from_numpy(clips) if not isinstance(clips, torch.Tensor) else clips
    n_train = len(train_entries)
    keep_train = torch.from_numpy(np.flatnonzero(ok[:n_train]))
    keep_val = torch.from_numpy(np.flatnonzero(ok[n_train:]) + n_train)
    if keep_train.numel() == 0 or keep_val.numel() == 0:
        raise ValueError(f"{config.root}: no decodable {'training' if keep_train.numel() == 0 else 'validation'} video ({len(skipped)} skipped).")
    train = ClipSet(clips=_rows(data, keep_train), labels=labels[keep_train])
    val = ClipSet(clips=_rows(data, keep_val), labels=labels[keep_val])
    task = VideoTask(config=config, train=train, val=val, skipped=skipped)
    _MEMORY[key] = task
    return task


def _rows(data: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """The kept rows; a view (no copy) when they form one contiguous block."""
    if keep.numel() and int(keep[-1]) - int(keep[0]) + 1 == keep.numel():
        return data[int(keep[0]) : int(keep[-1]) + 1]
    return data[keep]


def _read_index(path: Path) -> dict | None:
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return index if index.get("version") == CACHE_VERSION else None


def _decode_all(config: VideoFolderConfig, entries: list[tuple[str, int]], data_path: Path | None, *, progress: bool) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    from tqdm.auto import tqdm

    shape = (len(entries), 3, *config.clip)
    if data_path is not None:
        tmp = data_path.with_suffix(".tmp")
        clips = np.memmap(tmp, dtype=np.uint8, mode="w+", shape=shape)
    else:
        tmp = None
        clips = np.zeros(shape, dtype=np.uint8)
    ok = np.zeros(len(entries), dtype=bool)
    skipped = []
    root = Path(config.root)
    for i, (rel, _) in enumerate(tqdm(entries, desc=f"decoding {root.name}", unit="video", disable=not progress, file=sys.stderr, dynamic_ncols=True)):
        try:
            clips[i] = decode_clip(root / rel, config.clip)
            ok[i] = True
        except ValueError as err:
            skipped.append(rel)
            print(f"particle-nas: skipped {rel}: {err}", file=sys.stderr)
    if tmp is not None:
        clips.flush()
        del clips
        os.replace(tmp, data_path)
        clips = np.memmap(data_path, dtype=np.uint8, mode="c", shape=shape)
    return clips, ok, tuple(skipped)
