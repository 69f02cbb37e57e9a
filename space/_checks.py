"""Field checks shared by every spec and config dataclass of the project.

Each raises ``SpecError(field, rule, value)``: the rule first, then the value received.
"""

from __future__ import annotations

import math
from typing import Any

from ._errors import SpecError


def check_int(name: str, value: Any, *, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(name, "must be an integer", value)
    if value < low or (high is not None and value > high):
        raise SpecError(name, f"must be >= {low}" if high is None else f"must be in [{low}, {high}]", value)


def check_number(name: str, value: Any, *, low: float, high: float = math.inf, low_open: bool = False, high_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SpecError(name, "must be a finite number", value)
    if (value <= low if low_open else value < low) or (value >= high if high_open else value > high):
        if high == math.inf:
            rule = f"must be > {low}" if low_open else f"must be >= {low}"
        else:
            rule = "must be in " + ("(" if low_open else "[") + f"{low}, {high}" + (")" if high_open else "]")
        raise SpecError(name, rule, value)


def check_choice(name: str, value: Any, choices: tuple) -> None:
    if isinstance(value, bool) or value not in choices:
        raise SpecError(name, f"must be one of {choices}", value)


def check_clip(name: str, value: Any, *, min_frames: int) -> tuple[int, int, int]:
    """A clip size (T, H, W) as a tuple of three integers: T in [min_frames, 1024], H and W in [8, 1024]."""
    clip = tuple(value) if isinstance(value, (tuple, list)) else value
    if not isinstance(clip, tuple) or len(clip) != 3 or any(isinstance(n, bool) or not isinstance(n, int) for n in clip):
        raise SpecError(name, "must be three integers (T, H, W)", value)
    check_int(f"{name}[0]", clip[0], low=min_frames, high=1024)
    check_int(f"{name}[1]", clip[1], low=8, high=1024)
    check_int(f"{name}[2]", clip[2], low=8, high=1024)
    return clip
