"""A synthetic video classification task whose classes can only be told apart by temporal order.

Classes come in pairs that are time reversals of each other (moving right /
left, growing / shrinking, orbiting clockwise / counter-clockwise, ...). Each
trajectory is sampled around a random centre,

    value(t) = centre + direction * rate * (t - (T - 1) / 2),

so reversing a clip of one class in time gives a clip of its partner with the
same probability. The unordered set of frames therefore carries no
information about which class of a pair a clip belongs to: a network that
never mixes frames and averages over time is at chance within every pair,
while a network that sees the order of frames can reach near 100%.

Everything is generated in a vectorized way in torch from a seeded generator
(one loop over classes, none over clips); clips are stored as uint8.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from particle_nas.space import SpecError, check_int, check_number

# Bump when the generator changes, so on-disk caches of the old data are not reused.
GENERATOR_VERSION = 1

# (class, its time reversal, kind, parameter). The first num_classes / 2 pairs are used.
CLASS_PAIRS: tuple[tuple[str, str, str, tuple[float, float]], ...] = (
    ("right", "left", "move", (1.0, 0.0)),
    ("down", "up", "move", (0.0, 1.0)),
    ("grow", "shrink", "scale", (0.0, 0.0)),
    ("clockwise", "counterclockwise", "orbit", (0.0, 0.0)),
    ("brighten", "dim", "fade", (0.0, 0.0)),
    ("down_right", "up_left", "move", (math.sqrt(0.5), math.sqrt(0.5))),
    ("down_left", "up_right", "move", (-math.sqrt(0.5), math.sqrt(0.5))),
)
CLASS_NAMES: tuple[str, ...] = tuple(name for pair in CLASS_PAIRS for name in pair[:2])

# Ranges of the per-clip random variables, as fractions of the frame size min(H, W)
# where they are lengths. Not part of the config: the config's job is size and difficulty.
_CENTRE = (0.3, 0.7)  # object centre (mid-clip), each axis
_SIZE = (0.07, 0.12)  # blob sigma (square half-side is 1.5 sigma) at mid-clip
_PATH = (0.3, 0.5)  # distance moved over the whole clip ("move")
_GROWTH = (math.log(2.0), math.log(3.5))  # log size ratio from first to last frame ("scale")
_RADIUS = (0.15, 0.25)  # orbit radius ("orbit")
_SWEEP = (0.5 * math.pi, 1.0 * math.pi)  # angle swept over the clip ("orbit")
_FADE = (0.6, 0.9)  # object opacity change over the clip, around 0.55 ("fade")
_BACKGROUND = (0.0, 0.4)  # background level
# Object colour minus background, per channel. Always brighter: mixing in dark-on-light clips
# (inverted polarity) kept 3-epoch proxy trainings of every particle below 40%.
_CONTRAST = (0.35, 0.6)
_SQUARE = 0.5  # probability that the object is a soft-edged square rather than a blob
_CHUNK = 256  # clips rendered at once


@dataclass(frozen=True)
class SyntheticConfig:
    """Size, difficulty and seed of the synthetic task. Equal configs give bit-identical data."""

    num_classes: int = 6  # even: pairs of time-reversed classes, at most len(CLASS_NAMES)
    train_size: int = 768  # training clips, split evenly over classes
    val_size: int = 384  # validation clips, split evenly over classes
    clip: tuple[int, int, int] = (8, 32, 32)  # frames T, height H, width W
    channels: int = 3
    noise: float = 0.2  # std of the Gaussian pixel noise, on the [0, 1] intensity scale
    seed: int = 0

    def __post_init__(self) -> None:
        p = "SyntheticConfig."
        check_int(p + "num_classes", self.num_classes, low=2, high=len(CLASS_NAMES))
        if self.num_classes % 2:
            raise SpecError(p + "num_classes", "must be even (classes come in time-reversed pairs)", self.num_classes)
        check_int(p + "train_size", self.train_size, low=self.num_classes)
        check_int(p + "val_size", self.val_size, low=self.num_classes)
        clip = tuple(self.clip) if isinstance(self.clip, (tuple, list)) else self.clip
        if not isinstance(clip, tuple) or len(clip) != 3 or any(isinstance(n, bool) or not isinstance(n, int) for n in clip):
            raise SpecError(p + "clip", "must be three integers (T, H, W)", self.clip)
        object.__setattr__(self, "clip", clip)
        check_int(p + "clip[0]", clip[0], low=2, high=1024)
        check_int(p + "clip[1]", clip[1], low=8, high=1024)
        check_int(p + "clip[2]", clip[2], low=8, high=1024)
        check_int(p + "channels", self.channels, low=1, high=64)
        check_number(p + "noise", self.noise, low=0.0, high=1.0)
        object.__setattr__(self, "noise", float(self.noise))
        check_int(p + "seed", self.seed, low=0)

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """(C, T, H, W) of one clip."""
        return (self.channels, *self.clip)

    @property
    def class_names(self) -> tuple[str, ...]:
        return CLASS_NAMES[: self.num_classes]

    def to_dict(self) -> dict[str, object]:
        data = dataclasses.asdict(self)
        data["clip"] = list(self.clip)
        return data

    def digest(self) -> str:
        """A short hash of the config and the generator version, for cache file names."""
        text = json.dumps({"version": GENERATOR_VERSION, **self.to_dict()}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, eq=False)
class ClipSet:
    """Clips stored as uint8 (N, C, T, H, W) with int64 labels (N,). Treat the tensors as read-only."""

    clips: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.clips.dtype != torch.uint8 or self.clips.dim() != 5:
            raise ValueError(f"ClipSet.clips must be a uint8 tensor (N, C, T, H, W), but got {self.clips.dtype} of shape {tuple(self.clips.shape)}.")
        if self.labels.dtype != torch.int64 or self.labels.shape != self.clips.shape[:1]:
            raise ValueError(
                f"ClipSet.labels must be an int64 tensor of shape ({self.clips.shape[0]},), "
                f"but got {self.labels.dtype} of shape {tuple(self.labels.shape)}."
            )

    def __len__(self) -> int:
        return self.clips.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One normalized clip and its label (so a ClipSet serves as a map-style torch Dataset)."""
        return normalize(self.clips[i]), self.labels[i]

    def batch(self, index: torch.Tensor | slice) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalized float clips in [-1, 1] and their labels for ``index`` (indices or a slice)."""
        return normalize(self.clips[index]), self.labels[index]


def normalize(clips: torch.Tensor) -> torch.Tensor:
    """uint8 clips to float32 in [-1, 1]."""
    return clips.to(torch.float32).mul_(1.0 / 127.5).sub_(1.0)


@dataclass(frozen=True, eq=False)
class SyntheticTask:
    """Train and validation clips of one ``SyntheticConfig``."""

    config: SyntheticConfig
    train: ClipSet
    val: ClipSet

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    @property
    def clip(self) -> tuple[int, int, int]:
        return self.config.clip

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return self.config.input_shape

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.config.class_names


# ---------------------------------------------------------------- generation
def _split_seed(seed: int, split: str) -> int:
    """Independent generator seeds per split, so changing train_size leaves the validation set alone."""
    digest = hashlib.sha256(f"particle-nas-synthetic:{seed}:{split}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _uniform(n: int, bounds: tuple[float, float], gen: torch.Generator, *shape: int) -> torch.Tensor:
    low, high = bounds
    return torch.rand((n, *shape), generator=gen).mul_(high - low).add_(low)


def _balanced_labels(n: int, num_classes: int, gen: torch.Generator) -> torch.Tensor:
    """Exactly n / num_classes clips per class (the first n % num_classes classes get one more), shuffled."""
    labels = torch.arange(n, dtype=torch.int64) % num_classes
    return labels[torch.randperm(n, generator=gen)]


def generate_clips(config: SyntheticConfig, *, size: int, seed: int) -> ClipSet:
    """``size`` clips of ``config`` drawn from a generator seeded with ``seed``.

    Each clip: a soft blob or soft-edged square of a random colour, brighter
    than its random uniform background, following its class's trajectory, plus
    Gaussian pixel noise. The kind of change (move / scale / orbit / fade)
    is shared by both classes of a pair; only its direction in time differs.
    """
    gen = torch.Generator().manual_seed(seed)
    frames, height, width = config.clip
    channels, extent = config.channels, float(min(height, width))
    labels = _balanced_labels(size, config.num_classes, gen)

    # Per-clip random variables, all drawn up front in a fixed order.
    v = {
        "centre_x": _uniform(size, _CENTRE, gen) * (width - 1),
        "centre_y": _uniform(size, _CENTRE, gen) * (height - 1),
        "sigma": _uniform(size, _SIZE, gen) * extent,
        "path": _uniform(size, _PATH, gen) * extent,
        "growth": _uniform(size, _GROWTH, gen),
        "radius": _uniform(size, _RADIUS, gen) * extent,
        "phase": _uniform(size, (0.0, 2.0 * math.pi), gen),
        "sweep": _uniform(size, _SWEEP, gen),
        "fade": _uniform(size, _FADE, gen),
    }
    square = torch.rand(size, generator=gen) < _SQUARE
    background = _uniform(size, _BACKGROUND, gen)
    colour = (background[:, None] + _uniform(size, _CONTRAST, gen, channels)).clamp_(max=1.0)

    # Time relative to mid-clip, scaled so that the whole clip spans [-1/2, 1/2].
    t = (torch.arange(frames, dtype=torch.float32) - (frames - 1) / 2) / (frames - 1)
    ys = torch.arange(height, dtype=torch.float32).view(1, 1, height, 1)
    xs = torch.arange(width, dtype=torch.float32).view(1, 1, 1, width)
    clips = torch.empty((size, channels, frames, height, width), dtype=torch.uint8)

    # One class at a time, in chunks that bound the float working memory (no loop over clips).
    for label in range(config.num_classes):
        _, _, kind, direction = CLASS_PAIRS[label // 2]
        signed_t = t if label % 2 == 0 else -t  # the second class of a pair runs backwards in time
        for idx in (labels == label).nonzero().squeeze(1).split(_CHUNK):
            n = idx.numel()
            px, py, sigma, opacity = _trajectory(kind, direction, signed_t, {k: x[idx, None] for k, x in v.items()})
            alpha = opacity[..., None, None] * _render(xs, ys, px, py, sigma, square[idx])  # (n, T, H, W)
            bg = background[idx].view(n, 1, 1, 1, 1)
            fg = colour[idx].view(n, channels, 1, 1, 1)
            video = bg + (fg - bg) * alpha[:, None]
            if config.noise > 0:
                video += config.noise * torch.randn(video.shape, generator=gen)
            clips[idx] = video.clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)
    return ClipSet(clips=clips, labels=labels)


def _trajectory(
    kind: str, direction: tuple[float, float], t: torch.Tensor, v: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Object x, y, size and opacity, each (n, T), for clips of one class; ``v`` holds (n, 1) per-clip variables."""
    n, frames = v["centre_x"].shape[0], t.shape[0]
    px = v["centre_x"].expand(n, frames)
    py = v["centre_y"].expand(n, frames)
    sigma = v["sigma"].expand(n, frames)
    opacity = torch.ones((n, frames))
    if kind == "move":
        dx, dy = direction
        px = px + dx * v["path"] * t
        py = py + dy * v["path"] * t
    elif kind == "scale":
        sigma = sigma * torch.exp(v["growth"] * t)
    elif kind == "orbit":  # increasing angle is clockwise on screen (y points down)
        angle = v["phase"] + v["sweep"] * t
        px = px + v["radius"] * torch.cos(angle)
        py = py + v["radius"] * torch.sin(angle)
    elif kind == "fade":
        opacity = 0.55 + v["fade"] * t
    else:  # pragma: no cover - CLASS_PAIRS is fixed
        raise AssertionError(f"unknown trajectory kind {kind!r}")
    return px, py, sigma, opacity


def _render(xs: torch.Tensor, ys: torch.Tensor, px: torch.Tensor, py: torch.Tensor, sigma: torch.Tensor, square: torch.Tensor) -> torch.Tensor:
    """Coverage in [0, 1], shape (n, T, H, W), of a Gaussian blob or a soft-edged square at (px, py) of size sigma."""
    ddx = xs - px[..., None, None]
    ddy = ys - py[..., None, None]
    s = sigma[..., None, None]
    blob = torch.exp(-(ddx * ddx + ddy * ddy) / (2.0 * s * s))
    half = 1.5 * s
    box = torch.sigmoid((half - ddx.abs()) / 0.5) * torch.sigmoid((half - ddy.abs()) / 0.5)
    return torch.where(square.view(-1, 1, 1, 1), box, blob)


# ---------------------------------------------------------------- caching
_MEMORY: dict[SyntheticConfig, SyntheticTask] = {}  # in-process cache, oldest entry dropped first
_MEMORY_SIZE = 8


def _remember(task: SyntheticTask) -> SyntheticTask:
    _MEMORY.pop(task.config, None)
    _MEMORY[task.config] = task
    while len(_MEMORY) > _MEMORY_SIZE:
        del _MEMORY[next(iter(_MEMORY))]
    return task


def clear_synthetic_cache() -> None:
    """Forget the tasks kept in memory (the next request regenerates or reloads them)."""
    _MEMORY.clear()


def make_synthetic_task(config: SyntheticConfig) -> SyntheticTask:
    """Train and validation clips of ``config``, generated once per process and config.

    The returned tensors are shared between callers: do not modify them.
    """
    if not isinstance(config, SyntheticConfig):
        raise TypeError(f"make_synthetic_task expects a SyntheticConfig, but got {type(config).__name__}.")
    task = _MEMORY.get(config)
    if task is None:
        train = generate_clips(config, size=config.train_size, seed=_split_seed(config.seed, "train"))
        val = generate_clips(config, size=config.val_size, seed=_split_seed(config.seed, "val"))
        task = _remember(SyntheticTask(config=config, train=train, val=val))
    return task


def cache_path(config: SyntheticConfig, *, cache_dir: Path) -> Path:
    """Where ``load_or_make_synthetic_task`` keeps the task of ``config`` under ``cache_dir``."""
    return Path(cache_dir) / f"synthetic-{config.digest()}.pt"


def load_or_make_synthetic_task(config: SyntheticConfig, *, cache_dir: Path | None = None) -> SyntheticTask:
    """``make_synthetic_task``, backed by a file under ``cache_dir`` when given.

    Looks in memory, then in the file, then generates (and writes the file).
    The file name carries a hash of the config and generator version; a file
    that cannot be read or does not match the config is regenerated. Writes
    are atomic, so concurrent workers at worst generate the same data twice.
    """
    if cache_dir is None:
        return make_synthetic_task(config)
    if not isinstance(config, SyntheticConfig):
        raise TypeError(f"load_or_make_synthetic_task expects a SyntheticConfig, but got {type(config).__name__}.")
    path = cache_path(config, cache_dir=cache_dir)
    task = _MEMORY.get(config)
    if task is None:
        task = _load(path, config)
        if task is not None:
            return _remember(task)
        task = make_synthetic_task(config)
        _save(path, task)
    elif not path.is_file():
        _save(path, task)
    return task


def _load(path: Path, config: SyntheticConfig) -> SyntheticTask | None:
    if not path.is_file():
        return None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
        if data.get("version") != GENERATOR_VERSION or data.get("config") != config.to_dict():
            return None
        train = ClipSet(clips=data["train_clips"], labels=data["train_labels"])
        val = ClipSet(clips=data["val_clips"], labels=data["val_labels"])
    except Exception:  # a truncated, foreign or stale file: regenerate it
        return None
    return SyntheticTask(config=config, train=train, val=val)


def _save(path: Path, task: SyntheticTask) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "version": GENERATOR_VERSION,
        "config": task.config.to_dict(),
        "train_clips": task.train.clips,
        "train_labels": task.train.labels,
        "val_clips": task.val.clips,
        "val_labels": task.val.labels,
    }
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(data, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
