"""One call from a NetworkSpec to its proxy accuracy and cost."""

from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from particle_nas.space import NetworkSpec, SpecError, build_network

from ._cost import network_cost
from ._data import SyntheticConfig, SyntheticTask, load_or_make_synthetic_task
from ._prune import prune_network, prunes, unpruned_spec
from ._train import EpochCallback, TrainConfig, evaluate_accuracy, train_proxy


@dataclass(frozen=True)
class Evaluation:
    """What a proxy evaluation of one spec measured."""

    accuracy: float  # validation top-1 after the last epoch
    epoch_accuracy: tuple[float, ...]  # validation top-1 after each epoch
    train_loss: tuple[float, ...]  # mean training loss of each epoch
    flops: int  # conv + linear multiply-adds of one clip
    params: int  # trainable parameters
    duration_s: float  # wall time of training and validation (and pruning and fine-tuning)
    accuracy_before_prune: float | None = None  # specs that prune: validation top-1 of the unpruned network before pruning; else None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["epoch_accuracy"] = list(self.epoch_accuracy)
        data["train_loss"] = list(self.train_loss)
        return data


def training_seed(*, base: int, seed: int) -> int:
    """Training seed of an evaluation: a hash of the config's seed and the evaluation's seed."""
    digest = hashlib.sha256(f"particle-nas-train:{base}:{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


@dataclass(frozen=True)
class ProxyEvaluator:
    """Train a spec's proxy network on the synthetic task and count its cost.

    ``evaluate(spec, seed=s)`` initializes the network with seed ``s`` and
    trains with a seed derived from ``train.seed`` and ``s``: equal seeds give
    equal results, and different architectures evaluated with the same seed
    see the same batches in the same order.
    """

    data: SyntheticConfig = field(default_factory=SyntheticConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    cache_dir: Path | None = None  # where the synthetic task is kept on disk; None = memory only

    def __post_init__(self) -> None:
        if not isinstance(self.data, SyntheticConfig):
            raise SpecError("ProxyEvaluator.data", "must be a SyntheticConfig", self.data)
        if not isinstance(self.train, TrainConfig):
            raise SpecError("ProxyEvaluator.train", "must be a TrainConfig", self.train)
        if self.cache_dir is not None:
            object.__setattr__(self, "cache_dir", Path(self.cache_dir))

    def task(self) -> SyntheticTask:
        """The synthetic task (generated once per process, or loaded from ``cache_dir``)."""
        return load_or_make_synthetic_task(self.data, cache_dir=self.cache_dir)

    def network_spec(self, **changes: Any) -> NetworkSpec:
        """A NetworkSpec matching this evaluator's clip, channels and classes, with ``changes`` applied."""
        return NetworkSpec(**{"clip": self.data.clip, "in_channels": self.data.channels, "num_classes": self.data.num_classes, **changes})

    def check_spec(self, spec: NetworkSpec) -> None:
        """Raise ValueError if ``spec``'s input or classes do not match the task's."""
        if not isinstance(spec, NetworkSpec):
            raise TypeError(f"ProxyEvaluator.evaluate expects a NetworkSpec, but got {type(spec).__name__}.")
        pairs = (
            ("clip", tuple(spec.clip), self.data.clip),
            ("in_channels", spec.in_channels, self.data.channels),
            ("num_classes", spec.num_classes, self.data.num_classes),
        )
        for name, got, want in pairs:
            if got != want:
                raise SpecError(f"NetworkSpec.{name}", f"must match the synthetic task's {want!r} (SyntheticConfig)", got)

    def evaluate(self, spec: NetworkSpec, *, seed: int, on_epoch: EpochCallback | None = None) -> Evaluation:
        """Count ``spec``'s cost, build it with ``seed`` and train it; see ``train_proxy`` for ``on_epoch``.

        When ``spec`` prunes (``prune_ratio`` > 0), the unpruned network is
        trained (``on_epoch`` sees those epochs), its accuracy kept as
        ``accuracy_before_prune``, its lowest-L1 inner channels removed by
        ``prune_network`` and the result fine-tuned for ``train.finetune_epochs``;
        ``accuracy``, ``epoch_accuracy`` and ``train_loss`` then end with the
        fine-tuning epochs (or the pruned network's accuracy, without them).
        """
        self.check_spec(spec)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise SpecError("ProxyEvaluator.evaluate.seed", "must be an integer >= 0", seed)
        cost = network_cost(spec)
        task = self.task()
        config = dataclasses.replace(self.train, seed=training_seed(base=self.train.seed, seed=seed))
        if not prunes(spec):
            model = build_network(spec, seed=seed)
            result = train_proxy(model, task, config=config, on_epoch=on_epoch)
            return Evaluation(
                accuracy=result.accuracy,
                epoch_accuracy=result.epoch_accuracy,
                train_loss=result.train_loss,
                flops=cost.flops,
                params=cost.params,
                duration_s=result.duration_s,
            )
        start = time.perf_counter()
        dense = build_network(unpruned_spec(spec), seed=seed)
        result = train_proxy(dense, task, config=config, on_epoch=on_epoch)
        model = prune_network(dense, spec)
        epoch_accuracy, train_loss = result.epoch_accuracy, result.train_loss
        if config.finetune_epochs:
            finetune = dataclasses.replace(config, epochs=config.finetune_epochs, warmup_epochs=0.0)
            tuned = train_proxy(model, task, config=finetune)
            accuracy, epoch_accuracy, train_loss = tuned.accuracy, epoch_accuracy + tuned.epoch_accuracy, train_loss + tuned.train_loss
        else:
            accuracy = evaluate_accuracy(model, task.val, batch_size=config.eval_batch_size)
        return Evaluation(
            accuracy=accuracy,
            epoch_accuracy=epoch_accuracy,
            train_loss=train_loss,
            flops=cost.flops,
            params=cost.params,
            duration_s=time.perf_counter() - start,
            accuracy_before_prune=result.accuracy,
        )
