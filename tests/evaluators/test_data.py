from __future__ import annotations

import pytest
import torch

from particle_nas.evaluators import (
    CLASS_NAMES,
    CLASS_PAIRS,
    TIME_REVERSED_KINDS,
    ClipSet,
    SyntheticConfig,
    cache_path,
    clear_synthetic_cache,
    generate_clips,
    load_or_make_synthetic_task,
    make_synthetic_task,
    normalize,
)
from particle_nas.evaluators._data import _split_seed
from particle_nas.space import SpecError


def test_shapes_and_dtypes(tiny_data: SyntheticConfig) -> None:
    task = make_synthetic_task(tiny_data)
    assert task.train.clips.shape == (64, 3, 4, 8, 8)
    assert task.val.clips.shape == (32, 3, 4, 8, 8)
    assert task.train.clips.dtype == torch.uint8
    assert task.train.labels.dtype == torch.int64
    assert task.input_shape == (3, 4, 8, 8) and task.num_classes == 4
    assert task.class_names == ("right", "left", "speed_up", "slow_down")
    x, y = task.train.batch(torch.tensor([0, 5, 7]))
    assert x.shape == (3, 3, 4, 8, 8) and x.dtype == torch.float32 and y.tolist() == task.train.labels[[0, 5, 7]].tolist()
    assert -1.0 <= x.min() and x.max() <= 1.0
    assert normalize(torch.tensor([0, 255], dtype=torch.uint8)).tolist() == [-1.0, 1.0]


def test_in_process_cache_returns_the_same_task(tiny_data: SyntheticConfig) -> None:
    assert make_synthetic_task(tiny_data) is make_synthetic_task(SyntheticConfig(**tiny_data.to_dict()))


def test_same_seed_is_bit_identical_and_other_seed_differs() -> None:
    config = SyntheticConfig(num_classes=6, clip=(4, 8, 8))
    first = generate_clips(config, size=48, seed=11)
    again = generate_clips(config, size=48, seed=11)
    other = generate_clips(config, size=48, seed=12)
    assert torch.equal(first.clips, again.clips) and torch.equal(first.labels, again.labels)
    assert not torch.equal(first.clips, other.clips)


def test_config_seed_changes_data_and_splits_differ() -> None:
    a = make_synthetic_task(SyntheticConfig(train_size=24, val_size=24, clip=(4, 8, 8), seed=0))
    b = make_synthetic_task(SyntheticConfig(train_size=24, val_size=24, clip=(4, 8, 8), seed=1))
    assert not torch.equal(a.train.clips, b.train.clips)
    assert not torch.equal(a.train.clips, a.val.clips)


def test_validation_set_does_not_depend_on_train_size() -> None:
    a = make_synthetic_task(SyntheticConfig(train_size=24, val_size=12, clip=(4, 8, 8)))
    b = make_synthetic_task(SyntheticConfig(train_size=36, val_size=12, clip=(4, 8, 8)))
    assert torch.equal(a.val.clips, b.val.clips)


@pytest.mark.parametrize(("num_classes", "size"), [(2, 10), (6, 60), (14, 70), (6, 63)])
def test_classes_are_balanced(num_classes: int, size: int) -> None:
    counts = generate_clips(SyntheticConfig(num_classes=num_classes, clip=(4, 8, 8)), size=size, seed=0).labels.bincount(minlength=num_classes)
    assert counts.numel() == num_classes
    if size % num_classes == 0:
        assert counts.tolist() == [size // num_classes] * num_classes
    else:
        assert counts.max() - counts.min() == 1


def _frame_features(clips: torch.Tensor) -> torch.Tensor:
    """Per clip and frame: object mass, centroid x, y, and orientation (xx - yy, 2 xy moments). (N, T, 5)

    The object is brightness above the clip's median (the background, on flat backgrounds).
    """
    gray = clips.float().mean(dim=1)  # (N, T, H, W)
    background = gray.flatten(1).median(dim=1).values.view(-1, 1, 1, 1)
    mass = (gray - background).clamp(min=0)
    total = mass.sum(dim=(2, 3)) + 1e-6  # (N, T)
    ys = torch.arange(gray.shape[2], dtype=torch.float32).view(1, 1, -1, 1)
    xs = torch.arange(gray.shape[3], dtype=torch.float32).view(1, 1, 1, -1)
    x = (mass * xs).sum(dim=(2, 3)) / total
    y = (mass * ys).sum(dim=(2, 3)) / total
    dx, dy = xs - x[..., None, None], ys - y[..., None, None]
    a = (mass * (dx * dx - dy * dy)).sum(dim=(2, 3)) / total
    b = (mass * 2 * dx * dy).sum(dim=(2, 3)) / total
    return torch.stack([total / 1000.0, x, y, a, b], dim=-1)


def _turning(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    u, v = u - u.mean(dim=1, keepdim=True), v - v.mean(dim=1, keepdim=True)
    return (u[:, :-1] * v[:, 1:] - v[:, :-1] * u[:, 1:]).sum(dim=1)  # > 0: clockwise on screen


def _time_odd(f: torch.Tensor) -> torch.Tensor:
    """Statistics that change sign when a clip is reversed: slopes of the features, turning of the centroid and the orientation."""
    t = torch.arange(f.shape[1], dtype=torch.float32)
    slopes = ((t - t.mean()).view(1, -1, 1) * f).sum(dim=1)
    return torch.cat([slopes, _turning(f[..., 1], f[..., 2])[:, None], _turning(f[..., 3], f[..., 4])[:, None]], dim=1)


def _time_even(f: torch.Tensor) -> torch.Tensor:
    """Statistics of the unordered set of frames: per-feature mean, spread and extremes over time."""
    return torch.cat([f.mean(dim=1), f.std(dim=1), f.min(dim=1).values, f.max(dim=1).values], dim=1)


def _path_length(f: torch.Tensor) -> torch.Tensor:
    """Distance the centroid travels, frame to frame (order-dependent, not a sign flip under reversal). (N, 1)"""
    return (f[:, 1:, 1:3] - f[:, :-1, 1:3]).norm(dim=-1).sum(dim=1, keepdim=True)


def _z(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Difference of the means of a and b over clips, in standard errors."""
    se = (a.var(dim=0) / a.shape[0] + b.var(dim=0) / b.shape[0]).sqrt()
    return (a.mean(dim=0) - b.mean(dim=0)) / (se + 1e-4)


@pytest.fixture(scope="module")
def pair_clips() -> ClipSet:
    """Clean clips (difficulty 0, no noise) of every class, so the statistics see the objects alone."""
    return generate_clips(SyntheticConfig(num_classes=len(CLASS_NAMES), clip=(12, 24, 24), difficulty=0.0, noise=0.0), size=300 * len(CLASS_NAMES), seed=5)


@pytest.mark.parametrize("pair", [i for i, p in enumerate(CLASS_PAIRS) if p[2] in TIME_REVERSED_KINDS], ids=lambda p: CLASS_NAMES[2 * p])
def test_classes_of_a_pair_are_time_reversals(pair_clips: ClipSet, pair: int) -> None:
    """A clip of class 2p played backwards is distributed as a clip of class 2p+1."""
    a = _frame_features(pair_clips.clips[pair_clips.labels == 2 * pair])
    b = _frame_features(pair_clips.clips[pair_clips.labels == 2 * pair + 1])
    # Reversed in time, A's per-frame statistics are B's ...
    assert _z(a.flip(1).flatten(1), b.flatten(1)).abs().max() < 5
    # ... and the unordered frame sets are alike: an order-blind model has nothing to go on.
    assert _z(_time_even(a), _time_even(b)).abs().max() < 5
    # Forwards, the order tells them apart.
    odd_a, odd_b = _time_odd(a), _time_odd(b)
    assert _z(odd_a, -odd_b).abs().max() < 5
    assert _z(odd_a, odd_b).abs().max() > 10


def test_periodic_and_one_shot_visit_the_same_places(pair_clips: ClipSet) -> None:
    pair = [p[2] for p in CLASS_PAIRS].index("periodic")
    a = _frame_features(pair_clips.clips[pair_clips.labels == 2 * pair])
    b = _frame_features(pair_clips.clips[pair_clips.labels == 2 * pair + 1])
    assert _z(_time_even(a), _time_even(b)).abs().max() < 5  # same frames, unordered ...
    assert _z(_path_length(a), _path_length(b)).item() > 10  # ... but back and forth travels farther


def test_difficulty_adds_clutter() -> None:
    """Harder settings put more structure in the background (texture, distractors) and noise."""

    def spread(difficulty: float) -> float:
        clips = generate_clips(SyntheticConfig(num_classes=4, clip=(4, 16, 16), difficulty=difficulty), size=64, seed=0).clips.float()
        return (clips - clips.flatten(1).median(dim=1).values.view(-1, 1, 1, 1, 1)).abs().mean().item()

    assert spread(0.0) < spread(0.5) < spread(1.0)


def test_class_names_are_pairs() -> None:
    assert len(CLASS_NAMES) % 2 == 0 and len(set(CLASS_NAMES)) == len(CLASS_NAMES)
    assert CLASS_NAMES[:8] == ("right", "left", "speed_up", "slow_down", "clockwise", "counterclockwise", "a_then_b", "b_then_a")


def test_disk_cache_round_trip(tmp_path, tiny_data: SyntheticConfig) -> None:
    path = cache_path(tiny_data, cache_dir=tmp_path)
    assert tiny_data.digest() in path.name
    made = load_or_make_synthetic_task(tiny_data, cache_dir=tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    clear_synthetic_cache()
    loaded = load_or_make_synthetic_task(tiny_data, cache_dir=tmp_path)
    assert loaded is not made  # read back from the file
    assert torch.equal(loaded.train.clips, made.train.clips) and torch.equal(loaded.val.labels, made.val.labels)
    assert load_or_make_synthetic_task(tiny_data, cache_dir=tmp_path) is loaded  # then kept in memory
    assert make_synthetic_task(tiny_data) is loaded


def test_disk_cache_replaces_a_bad_file(tmp_path, tiny_data: SyntheticConfig) -> None:
    path = cache_path(tiny_data, cache_dir=tmp_path)
    path.write_bytes(b"not a torch file")
    clear_synthetic_cache()
    task = load_or_make_synthetic_task(tiny_data, cache_dir=tmp_path)
    assert torch.equal(task.train.clips, generate_clips(tiny_data, size=tiny_data.train_size, seed=_split_seed(tiny_data.seed, "train")).clips)
    clear_synthetic_cache()
    assert torch.equal(load_or_make_synthetic_task(tiny_data, cache_dir=tmp_path).train.clips, task.train.clips)
    assert not list(tmp_path.glob("*.tmp"))


def test_digest_depends_on_every_field() -> None:
    base = SyntheticConfig()
    variants = [base.__class__(**{**base.to_dict(), **change}) for change in ({"seed": 1}, {"noise": 0.3}, {"clip": [8, 16, 16]}, {"train_size": 60}, {"difficulty": 0.1})]
    assert len({base.digest(), *(v.digest() for v in variants)}) == 6


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"num_classes": 5}, "SyntheticConfig.num_classes must be even (classes come in time-reversed pairs), but got 5."),
        ({"num_classes": 16}, "SyntheticConfig.num_classes must be in [2, 14], but got 16."),
        ({"num_classes": 6, "train_size": 4}, "SyntheticConfig.train_size must be in [6, 1000000], but got 4."),
        ({"clip": (1, 32, 32)}, "SyntheticConfig.clip[0] must be in [2, 1024], but got 1."),
        ({"clip": (8, 32)}, "SyntheticConfig.clip must be three integers (T, H, W), but got (8, 32)."),
        ({"noise": -0.1}, "SyntheticConfig.noise must be in [0.0, 1.0], but got -0.1."),
        ({"difficulty": 1.5}, "SyntheticConfig.difficulty must be in [0.0, 1.0], but got 1.5."),
        ({"seed": True}, "SyntheticConfig.seed must be an integer, but got True."),
    ],
)
def test_config_validation(changes: dict, message: str) -> None:
    with pytest.raises(SpecError) as info:
        SyntheticConfig(**changes)
    assert str(info.value) == message


def test_clip_list_becomes_tuple() -> None:
    assert SyntheticConfig(clip=[8, 16, 16]).clip == (8, 16, 16)
