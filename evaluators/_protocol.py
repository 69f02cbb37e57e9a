"""The seam between search and evaluators: every member a search engine uses of an evaluator, declared once.

An evaluator scores a network spec. ``evaluate`` is the one member each
evaluator must write; the hooks have defaults that fit an evaluator which
trains nothing (a replayed table, a cost model): no epochs, no device, the
same evaluator on every worker, nothing to warm up, one clip size only.
Search calls these members and never probes an evaluator for others.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from particle_nas.space import NetworkSpec

EpochReport = Callable[[int, float], None]  # on_epoch(epoch, validation accuracy); may raise TrialStopped


class Evaluator(ABC):
    """Anything that scores a network spec (see ``ProxyEvaluator``, ``ReplayEvaluator``).

    ``evaluate`` returns an object with ``to_dict()`` (or a dataclass, or a
    mapping) holding at least ``accuracy``, ``flops`` and ``params``, and
    whatever else it measured (``epoch_accuracy``, ``duration_s``, ...).
    """

    @abstractmethod
    def evaluate(self, spec: NetworkSpec, *, seed: int, on_epoch: EpochReport | None = None, weights_path: Path | None = None) -> Any:
        """Score ``spec`` with ``seed``; ``on_epoch`` after each epoch trained; the trained weights saved at ``weights_path`` (when given and it trains)."""

    # Hooks with defaults: an evaluator that trains nothing keeps them.
    @property
    def epochs(self) -> int | None:
        """The epoch budget a trial trains (what early stopping places its rungs in); None when it trains no epochs."""
        return None

    @property
    def device(self) -> str | None:
        """The device it asks to train on (run.json records it; workers spread over GPUs by it); None when it trains nothing."""
        return None

    @property
    def precision(self) -> str | None:
        """The precision it asks to train in (run.json records it); None when it trains nothing."""
        return None

    def on_device(self, device: str) -> Evaluator:
        """This evaluator training on ``device`` (a worker's or a Ray trial's); itself when it trains nothing."""
        return self

    def warm_up(self) -> None:
        """Pay a process's one-time costs before its first trial (so no trial's ``duration_s`` holds them)."""

    def for_clip(self, clip: tuple[int, int, int]) -> Evaluator | None:
        """This evaluator on clips of size ``clip`` (T, H, W); None when it cannot change its clip."""
        return None
