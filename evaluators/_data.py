"""A synthetic video classification task whose classes can only be told apart by temporal order.

Classes come in pairs. In most pairs one class is the time reversal of the
other (moving right / left, speeding up / slowing down, spinning clockwise /
counter-clockwise, A flashes before B / B before A, growing / shrinking); in
the periodic / one-shot pair, an object oscillating back and forth over a
segment and one sweeping once over it visit the same positions. Either way
the unordered set of frames of a clip is distributed alike for both classes
of a pair: a network that never mixes frames and averages over time is at
chance within every pair (about 1/2 at best), while one that sees the order
of frames can separate them.

Nuisances make it hard without changing that symmetry: a smooth random
texture behind the objects, distractor objects drifting in random
directions, camera jitter (every frame shifted by a small random offset,
background and objects alike), lower object contrast and Gaussian pixel
noise. ``difficulty`` in [0, 1] scales all of them together.

Everything is generated in a vectorized way in torch from a seeded generator
(one loop over classes and chunks of clips, none over clips or frames);
clips are stored as uint8.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from particle_nas.space import SpecError, check_clip, check_int, check_number

from ._files import write_atomically

# Bump when the generator changes, so on-disk caches of the old data are not reused.
GENERATOR_VERSION = 2

# (class, its partner, kind, parameter). The first num_classes / 2 pairs are used.
# The partner of every kind but "periodic" is the class played backwards in time.
CLASS_PAIRS: tuple[tuple[str, str, str, tuple[float, float]], ...] = (
    ("right", "left", "move", (1.0, 0.0)),
    ("speed_up", "slow_down", "accelerate", (0.0, 0.0)),
    ("clockwise", "counterclockwise", "spin", (0.0, 0.0)),
    ("a_then_b", "b_then_a", "events", (0.0, 0.0)),
    ("periodic", "one_shot", "periodic", (0.0, 0.0)),
    ("down", "up", "move", (0.0, 1.0)),
    ("grow", "shrink", "scale", (0.0, 0.0)),
)
CLASS_NAMES: tuple[str, ...] = tuple(name for pair in CLASS_PAIRS for name in pair[:2])
TIME_REVERSED_KINDS: frozenset[str] = frozenset({"move", "accelerate", "spin", "events", "scale"})

# Ranges of the per-clip random variables, as fractions of the frame size min(H, W)
# where they are lengths. Not part of the config: the config's job is size and difficulty.
_CENTRE = (0.3, 0.7)  # object centre (mid-clip), each axis
_SIZE = (0.07, 0.12)  # blob sigma (square half-side is 1.5 sigma) at mid-clip
_PATH = (0.3, 0.5)  # distance moved over the whole clip ("move", "accelerate", "periodic"); shrinks with difficulty
_GROWTH = (math.log(2.0), math.log(3.5))  # log size ratio from first to last frame ("scale")
_SPIN = (0.5 * math.pi, 1.0 * math.pi)  # angle a bar turns over the clip ("spin")
_BAR = (0.16, 0.24)  # bar half-length ("spin"); its half-width is a quarter of it
_EVENT_GAP = (0.25, 0.45)  # time between the two flashes, as a fraction of the clip ("events")
_EVENT_WIDTH = 0.12  # std of a flash in time, as a fraction of the clip
_BACKGROUND = (0.15, 0.45)  # background level
_CONTRAST = (0.35, 0.6)  # object colour minus background, per channel, at difficulty 0 (always brighter)
_SQUARE = 0.5  # probability that an object is a soft-edged square rather than a blob
_TEXTURE_CELLS = 5  # the background texture is bilinear noise on a grid of this many cells per side
_CHUNK_VOLUME = 1 << 23  # floats of video rendered at once (bounds the working memory)


def _nuisance(difficulty: float) -> dict[str, float]:
    """How strong each nuisance is at ``difficulty`` (0 = clean shapes on flat backgrounds, 1 = hardest)."""
    d = difficulty
    return {
        "noise": 0.03 + 0.12 * d,  # pixel noise std
        "texture": 0.35 * d,  # background texture amplitude (peak)
        "distractors": round(3 * d),  # at most this many distractors per clip (uniform 0..max)
        "jitter": 0.04 * d,  # camera jitter std per frame, fraction of min(H, W)
        "contrast": 1.0 - 0.45 * d,  # object contrast factor
        "path": 1.0 - 0.35 * d,  # motion extent factor
    }


MAX_CLIPS = 1_000_000  # clips per split: more would not fit in memory as uint8 anyway


@dataclass(frozen=True)
class SyntheticConfig:
    """Size, difficulty and seed of the synthetic task. Equal configs give bit-identical data."""

    num_classes: int = 8  # even: pairs of classes told apart only by temporal order, at most len(CLASS_NAMES)
    train_size: int = 1024  # training clips, split evenly over classes
    val_size: int = 512  # validation clips, split evenly over classes
    clip: tuple[int, int, int] = (8, 32, 32)  # frames T, height H, width W
    channels: int = 3
    difficulty: float = 0.25  # 0..1: texture, distractors, camera jitter, contrast, motion extent and noise together
    noise: float | None = None  # std of the Gaussian pixel noise on the [0, 1] scale; None = set by difficulty
    seed: int = 0

    def __post_init__(self) -> None:
        p = "SyntheticConfig."
        check_int(p + "num_classes", self.num_classes, low=2, high=len(CLASS_NAMES))
        if self.num_classes % 2:
            raise SpecError(p + "num_classes", "must be even (classes come in time-reversed pairs)", self.num_classes)
        check_int(p + "train_size", self.train_size, low=self.num_classes, high=MAX_CLIPS)
        check_int(p + "val_size", self.val_size, low=self.num_classes, high=MAX_CLIPS)
        object.__setattr__(self, "clip", check_clip(p + "clip", self.clip, min_frames=2))
        check_int(p + "channels", self.channels, low=1, high=64)
        check_number(p + "difficulty", self.difficulty, low=0.0, high=1.0)
        object.__setattr__(self, "difficulty", float(self.difficulty))
        if self.noise is not None:
            check_number(p + "noise", self.noise, low=0.0, high=1.0)
            object.__setattr__(self, "noise", float(self.noise))
        check_int(p + "seed", self.seed, low=0, high=2**32 - 1)

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """(C, T, H, W) of one clip."""
        return (self.channels, *self.clip)

    @property
    def class_names(self) -> tuple[str, ...]:
        return CLASS_NAMES[: self.num_classes]

    @property
    def pixel_noise(self) -> float:
        """The noise std in effect (``noise``, or the difficulty's default)."""
        return self.noise if self.noise is not None else _nuisance(self.difficulty)["noise"]

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


class TaskShape:
    """What every task (synthetic or video) tells about its clips, read from its ``config``."""

    config: Any

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


@dataclass(frozen=True, eq=False)
class SyntheticTask(TaskShape):
    """Train and validation clips of one ``SyntheticConfig``."""

    config: SyntheticConfig
    train: ClipSet
    val: ClipSet


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


def _unit(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random directions: cos and sin of a uniform angle, each (n, 1)."""
    angle = torch.rand((n, 1), generator=gen) * (2.0 * math.pi)
    return torch.cos(angle), torch.sin(angle)


def generate_clips(config: SyntheticConfig, *, size: int, seed: int) -> ClipSet:
    """``size`` clips of ``config`` drawn from a generator seeded with ``seed``.

    Each clip: a textured background, a main object (soft blob, soft-edged
    square, or a bar for "spin"; two objects for "events") following its
    class's trajectory, distractor objects drifting at constant velocity in
    random directions, camera jitter, and Gaussian pixel noise. Objects add
    their colour difference to the background (light adds up where they
    overlap). Every per-clip variable is drawn from ``seed`` in a fixed
    order, one class and chunk at a time. Pixel noise is read from one
    seeded bank of Gaussian samples at a random offset per chunk, which
    keeps generation fast at large sizes.
    """
    gen = torch.Generator().manual_seed(seed)
    frames, height, width = config.clip
    channels, extent = config.channels, float(min(height, width))
    nuisance = _nuisance(config.difficulty)
    labels = _balanced_labels(size, config.num_classes, gen)
    # Time relative to mid-clip, scaled so that the whole clip spans [-1/2, 1/2].
    t = (torch.arange(frames, dtype=torch.float32) - (frames - 1) / 2) / (frames - 1)
    grid = (torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32))
    volume = channels * frames * height * width
    chunk = max(1, min(size, _CHUNK_VOLUME // volume))
    noise = config.pixel_noise
    bank = torch.randn(2 * chunk * volume, generator=gen).mul_(255.0 * noise) if noise > 0 else None
    clips = torch.empty((size, channels, frames, height, width), dtype=torch.uint8)
    buffer = torch.empty(chunk * volume)  # reused: fresh large allocations cost page faults on every chunk
    out = torch.empty(chunk * volume, dtype=torch.uint8)
    for label in range(config.num_classes):
        for idx in (labels == label).nonzero().squeeze(1).split(chunk):
            n = idx.numel()
            video = buffer[: n * volume].view(n, channels, frames, height, width)
            _render_chunk(video, label, t, grid, extent, nuisance, gen)  # on the 0..255 scale, + 0.5
            if bank is not None:
                offset = int(torch.randint(0, bank.numel() - n * volume + 1, (1,), generator=gen))
                video += bank[offset : offset + n * volume].view_as(video)
            video.clamp_(0.0, 255.0)
            clips[idx] = out[: n * volume].view_as(video).copy_(video)  # truncation of x + 0.5: rounding
    return ClipSet(clips=clips, labels=labels)


# A layer: (left, right, colour). Separable: left (n, T, H, k), right (n, T, k, W), coverage = left @ right;
# not separable: left is the coverage (n, T, H, W) and right is None. colour: (n, C, k) or (n, C) difference
# from the background.
Layer = tuple[torch.Tensor, "torch.Tensor | None", torch.Tensor]


def _render_chunk(
    video: torch.Tensor,
    label: int,
    t: torch.Tensor,
    grid: tuple[torch.Tensor, torch.Tensor],
    extent: float,
    nuisance: dict[str, float],
    gen: torch.Generator,
) -> None:
    """Fill ``video`` (n, C, T, H, W) with clips of class ``label`` before noise, as 255 * intensity + 0.5.

    Background texture and objects are all separable in x and y, so the whole
    clip is one batched matrix product per frame and channel, (H x K) @ (K x W),
    with K the number of texture cells per side plus the number of objects.
    """
    _, _, kind, direction = CLASS_PAIRS[label // 2]
    second = label % 2 == 1
    n, channels, frames, height, width = video.shape
    ys, xs = grid

    # Camera jitter: one offset per clip and frame, applied to the background and every object.
    jitter_x = torch.randn((n, frames), generator=gen) * (nuisance["jitter"] * extent)
    jitter_y = torch.randn((n, frames), generator=gen) * (nuisance["jitter"] * extent)

    # Background: a flat level plus smooth bilinear noise, seen through the jittered camera.
    level = _uniform(n, _BACKGROUND, gen)
    layers: list[Layer] = []
    if nuisance["texture"] > 0:
        cells = torch.rand((n, channels, _TEXTURE_CELLS, _TEXTURE_CELLS), generator=gen).mul_(2.0).sub_(1.0)
        cells = (0.6 * cells[:, :1] + 0.4 * cells).mul_(nuisance["texture"])  # mostly grey
        layers.append(_texture(cells, xs, ys, jitter_x, jitter_y, extent))

    contrast = (_CONTRAST[0] * nuisance["contrast"], _CONTRAST[1] * nuisance["contrast"])

    def colour() -> torch.Tensor:
        """Colour minus background level of one object per clip, (n, C)."""
        return (level[:, None] + _uniform(n, contrast, gen, channels)).clamp_(max=1.0).sub_(level[:, None])

    layers += _main_layers(kind, direction, second, n, t, xs, ys, extent, nuisance["path"], jitter_x, jitter_y, colour, gen)
    # Distractors: 0..max per clip, drifting in random directions (their reversal is as likely).
    most = int(nuisance["distractors"])
    count = torch.randint(0, most + 1, (n, 1), generator=gen) if most else None
    for k in range(most):
        cx = _uniform(n, (0.15, 0.85), gen, 1) * (width - 1)
        cy = _uniform(n, (0.15, 0.85), gen, 1) * (height - 1)
        ux, uy = _unit(n, gen)
        path = _uniform(n, _PATH, gen, 1) * extent * nuisance["path"]
        sigma = _uniform(n, _SIZE, gen, 1).mul_(extent * 0.8).expand(n, frames)
        square = torch.rand(n, generator=gen) < _SQUARE
        px = cx + ux * path * t - jitter_x
        py = cy + uy * path * t - jitter_y
        fy, fx = _shape(xs, ys, px, py, sigma, square)
        layers.append((fy, fx, colour() * (count > k)))

    # Sum of all separable layers: left (n, C, T, H, K) @ right (n, C, T, K, W), scaled to 0..255.
    lefts, rights = [], []
    for left, right, fg in layers:
        if right is None:
            continue
        fg = fg if fg.dim() == 3 else fg[:, :, None]  # (n, C, k) or (n, C, 1)
        if fg.shape[2] == 1:  # one colour per layer: scale the left factor per channel
            lefts.append(left[:, None] * fg[:, :, None, None, :] * 255.0)
            rights.append(right[:, None].expand(n, channels, *right.shape[1:]))
        else:  # texture: the per-channel part is already in the right factor
            lefts.append(left[:, None].expand(n, channels, *left.shape[1:]) * 255.0)
            rights.append(right)
    video.copy_((level * 255.0 + 0.5).view(n, 1, 1, 1, 1).expand_as(video))
    if lefts:
        left = torch.cat(lefts, dim=-1).reshape(n * channels * frames, height, -1)
        right = torch.cat(rights, dim=-2).reshape(n * channels * frames, -1, width)
        video.view(n * channels * frames, height, width).baddbmm_(left, right)
    for coverage, right, fg in layers:  # the rest (a turning bar) is added directly
        if right is None:
            video.addcmul_(coverage[:, None], (fg * 255.0).view(n, channels, 1, 1, 1))


def _texture(cells: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor, jx: torch.Tensor, jy: torch.Tensor, extent: float) -> Layer:
    """Bilinear interpolation of ``cells`` (n, C, g, g) over the frame, frame t shifted by (jx, jy)[:, t] pixels.

    Bilinear interpolation is separable: texture = wy (H x g) @ cells (g x g) @ wx (g x W), with hat weights.
    Returned as the layer (wy, cells @ wx, 1): left (n, T, H, g), right (n, C, T, g, W).
    """
    g = cells.shape[-1]
    height, width = ys.numel(), xs.numel()
    # Grid coordinates in [0.1, 0.9] * (g - 1) plus jitter, so the shifted view stays inside the texture.
    u = ((xs / max(width - 1, 1) * 0.8 + 0.1) * (g - 1)).view(1, 1, width) + (jx * (0.8 * (g - 1) / extent))[..., None]
    v = ((ys / max(height - 1, 1) * 0.8 + 0.1) * (g - 1)).view(1, 1, height) + (jy * (0.8 * (g - 1) / extent))[..., None]
    nodes = torch.arange(g, dtype=torch.float32)
    wx = (1.0 - (u.clamp(0, g - 1)[..., None, :] - nodes.view(1, 1, g, 1)).abs()).clamp_(min=0.0)  # (n, T, g, W)
    wy = (1.0 - (v.clamp(0, g - 1)[..., :, None] - nodes.view(1, 1, 1, g)).abs()).clamp_(min=0.0)  # (n, T, H, g)
    right = torch.einsum("ncij,ntjw->nctiw", cells, wx)  # (n, C, T, g, W)
    return wy, right, torch.ones(cells.shape[:2] + (g,))


def _shape(xs: torch.Tensor, ys: torch.Tensor, px: torch.Tensor, py: torch.Tensor, sigma: torch.Tensor, square: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Separable coverage of a Gaussian blob or soft-edged square at (px, py) (n, T) of size sigma (n, T).

    Returns (fy (n, T, H, 1), fx (n, T, 1, W)): the coverage is fy @ fx, values in [0, 1].
    """
    dx = xs.view(1, 1, -1) - px[..., None]  # (n, T, W)
    dy = ys.view(1, 1, -1) - py[..., None]  # (n, T, H)
    s = sigma[..., None]
    sq = square.view(-1, 1, 1)
    fx = torch.where(sq, torch.sigmoid((1.5 * s - dx.abs()) / 0.5), torch.exp(-0.5 * (dx / s) ** 2))
    fy = torch.where(sq, torch.sigmoid((1.5 * s - dy.abs()) / 0.5), torch.exp(-0.5 * (dy / s) ** 2))
    return fy[..., None], fx[..., None, :]


def _bar(xs: torch.Tensor, ys: torch.Tensor, px: torch.Tensor, py: torch.Tensor, angle: torch.Tensor, half: torch.Tensor) -> torch.Tensor:
    """Coverage (n, T, H, W) of a soft bar centred at (px, py), turned by ``angle`` (n, T), half-length ``half`` (n, 1)."""
    dx = xs.view(1, 1, 1, -1) - px[..., None, None]
    dy = ys.view(1, 1, -1, 1) - py[..., None, None]
    c, s = torch.cos(angle)[..., None, None], torch.sin(angle)[..., None, None]
    along = dx * c + dy * s
    across = dy * c - dx * s
    h = half.view(-1, 1, 1, 1)
    return torch.sigmoid((h - along.abs()) / 0.5) * torch.sigmoid((0.25 * h - across.abs()) / 0.5)


def _triangle(phase: torch.Tensor) -> torch.Tensor:
    """A triangle wave in [-1/2, 1/2] with period 1."""
    return (phase - torch.floor(phase) - 0.5).abs().mul_(2.0).sub_(0.5)


def _main_layers(
    kind: str,
    direction: tuple[float, float],
    second: bool,
    n: int,
    t: torch.Tensor,
    xs: torch.Tensor,
    ys: torch.Tensor,
    extent: float,
    path_factor: float,
    jitter_x: torch.Tensor,
    jitter_y: torch.Tensor,
    colour,
    gen: torch.Generator,
) -> list[Layer]:
    """The class-defining object(s) of ``n`` clips of one class."""
    height, width = ys.numel(), xs.numel()
    frames = t.shape[0]
    st = -t if second and kind in TIME_REVERSED_KINDS else t  # the partner class runs backwards in time
    cx = _uniform(n, _CENTRE, gen, 1) * (width - 1)
    cy = _uniform(n, _CENTRE, gen, 1) * (height - 1)
    sigma = (_uniform(n, _SIZE, gen, 1) * extent).expand(n, frames)
    path = _uniform(n, _PATH, gen, 1) * extent * path_factor
    square = torch.rand(n, generator=gen) < _SQUARE
    fg = colour()
    px, py = cx.expand(n, frames), cy.expand(n, frames)
    if kind == "move":
        dx, dy = direction
        px, py = cx + dx * path * st, cy + dy * path * st
    elif kind == "accelerate":  # from rest, speeding up along a random direction; reversed: slowing to a stop
        ux, uy = _unit(n, gen)
        u = (st + 0.5) ** 2 - 1.0 / 3.0
        px, py = cx + ux * path * u, cy + uy * path * u
    elif kind == "periodic":  # the same segment, swept once (random way) or back and forth twice
        ux, uy = _unit(n, gen)
        if second:
            u = st * torch.where(torch.rand((n, 1), generator=gen) < 0.5, 1.0, -1.0)
        else:
            u = _triangle(2.0 * (st + 0.5) + torch.rand((n, 1), generator=gen))
        px, py = cx + ux * path * u, cy + uy * path * u
    elif kind == "scale":
        sigma = sigma * torch.exp(_uniform(n, _GROWTH, gen, 1) * st)
    elif kind == "spin":  # increasing angle turns clockwise on screen (y points down)
        angle = _uniform(n, (0.0, math.pi), gen, 1) + _uniform(n, _SPIN, gen, 1) * st
        half = _uniform(n, _BAR, gen, 1) * extent
        return [(_bar(xs, ys, px - jitter_x, py - jitter_y, angle, half), None, fg)]
    elif kind == "events":  # object A flashes, then object B (a square, in another colour), gap apart
        gap = _uniform(n, _EVENT_GAP, gen, 1)
        bx = _uniform(n, _CENTRE, gen, 1) * (width - 1)
        by = _uniform(n, _CENTRE, gen, 1) * (height - 1)
        flash_a = torch.exp(-0.5 * ((st + gap / 2) / _EVENT_WIDTH) ** 2)
        flash_b = torch.exp(-0.5 * ((st - gap / 2) / _EVENT_WIDTH) ** 2)
        blob = torch.zeros(n, dtype=torch.bool)
        ay, ax = _shape(xs, ys, px - jitter_x, py - jitter_y, sigma, blob)
        by_, bx_ = _shape(xs, ys, bx.expand(n, frames) - jitter_x, by.expand(n, frames) - jitter_y, sigma, ~blob)
        return [(ay * flash_a[..., None, None], ax, fg), (by_ * flash_b[..., None, None], bx_, colour())]
    else:  # pragma: no cover - CLASS_PAIRS is fixed
        raise AssertionError(f"unknown trajectory kind {kind!r}")
    fy, fx = _shape(xs, ys, px - jitter_x, py - jitter_y, sigma, square)
    return [(fy, fx, fg)]


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


def check_task_fits(config: SyntheticConfig, *, free: int | None = None) -> None:
    """A one-line ValueError when ``config``'s clips (uint8, train and validation) would not fit in the free memory.

    Checked before a clip is generated, so an absurd ``data.clip`` fails at once
    instead of allocating. ``free`` defaults to what the machine has free
    (``free_memory``; no check when that cannot be read).
    """
    from ._memory import free_memory  # it imports the trainer, which imports this module
    from ._registry import human

    clips = config.train_size + config.val_size
    needed = clips * math.prod(config.input_shape)
    free = free_memory(torch.device("cpu")) if free is None else free
    if free is not None and needed > free:
        shape = "x".join(map(str, config.input_shape))
        raise ValueError(
            f"data must fit in memory, but the synthetic task's {clips} clips of {shape} take {human(needed, 'B')} and {human(free, 'B')} are free; "
            "lower data.clip, data.train_size or data.val_size."
        )


def make_synthetic_task(config: SyntheticConfig) -> SyntheticTask:
    """Train and validation clips of ``config``, generated once per process and config.

    The returned tensors are shared between callers: do not modify them.
    """
    if not isinstance(config, SyntheticConfig):
        raise TypeError(f"make_synthetic_task expects a SyntheticConfig, but got {type(config).__name__}.")
    task = _MEMORY.get(config)
    if task is None:
        check_task_fits(config)
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
    data = {
        "version": GENERATOR_VERSION,
        "config": task.config.to_dict(),
        "train_clips": task.train.clips,
        "train_labels": task.train.labels,
        "val_clips": task.val.clips,
        "val_labels": task.val.labels,
    }
    buffer = io.BytesIO()
    torch.save(data, buffer)  # in memory first: torch's own file writer reports a full disk as a RuntimeError, Python's as OSError ENOSPC
    write_atomically(path, buffer.getbuffer())
