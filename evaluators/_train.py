"""Proxy training: a few seeded epochs on a synthetic task, validation top-1 after each."""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from particle_nas.space import SpecError, TemporalShift, check_choice, check_int, check_number

from ._data import ClipSet, SyntheticTask
from ._distributed import Distributed, all_mean, shard_indices
from ._device import DeviceClips, autocast, check_device, check_precision, cuda_backends, resolve_device, resolve_precision, using_device

OPTIMIZERS: tuple[str, ...] = ("sgd", "adamw")
# Layouts of weights and batches; "auto" picks per device (see memory_format_for).
MEMORY_FORMATS: dict[str, torch.memory_format | None] = {"auto": None, "contiguous": torch.contiguous_format, "channels_last_3d": torch.channels_last_3d}
SCHEDULES: tuple[str, ...] = ("cosine", "constant")
FUSED_ADAMW = False  # CUDA: torch's fused AdamW kernel instead of its default (foreach); bench/gpu.py measures both (docs/gpu.md)

EpochCallback = Callable[[int, float], None]
StepCallback = Callable[[int, int], None]  # (epoch, step within the epoch), after each optimizer step


@dataclass(frozen=True)
class TrainConfig:
    """How a proxy network is trained. Same config + same initial weights -> same accuracies (same machine, same threads)."""

    epochs: int = 5  # the proxy budget: bench/fidelity.py measured Kendall tau vs a 5x longer budget (docs/benchmarks.md: Proxy fidelity)
    batch_size: int = 16  # on CPU, clips/s barely depend on it; smaller means more steps per epoch
    optimizer: str = "adamw"  # see OPTIMIZERS
    lr: float = 3e-3  # peak learning rate
    momentum: float = 0.9  # sgd only
    weight_decay: float = 1e-4
    label_smoothing: float = 0.0
    schedule: str = "cosine"  # see SCHEDULES; cosine decays to 0 by the last step
    warmup_epochs: float = 0.5  # linear warmup from 0 over this many epochs (fractions allowed); without it AdamW's first steps at the peak lr stall some particles (docs/benchmarks.md: Accuracy of hand-designed particles)
    eval_batch_size: int = 128
    seed: int = 0  # shuffling order and dropout
    threads: int | None = None  # torch.set_num_threads during training (restored afterwards); None = leave as is
    memory_format: str = "auto"  # see MEMORY_FORMATS: layout of the model's weights and of each batch; auto = memory_format_for(device)
    finetune_epochs: int = 1  # specs with prune_ratio > 0: epochs of fine-tuning after structured pruning (0 = none)
    device: str = "auto"  # auto (CUDA when available, else cpu) | cpu | cuda | cuda:N; see resolve_device (docs/gpu.md)
    precision: str = "auto"  # auto | fp32 | bf16 | fp16; auto: fp32 on the CPU, bf16 on CUDA (fp16 + GradScaler without bf16); see precision_policy
    deterministic: bool = False  # CUDA: deterministic kernels, no cudnn autotuning (slower; bit-reproducible runs). No effect on the CPU
    init_from: str | None = None  # a .safetensors state_dict of the network's 2D form (space.as_2d), inflated to start training from; None = fresh weights

    def __post_init__(self) -> None:
        p = "TrainConfig."
        check_int(p + "epochs", self.epochs, low=1, high=10_000)
        check_int(p + "batch_size", self.batch_size, low=2, high=65_536)
        check_int(p + "eval_batch_size", self.eval_batch_size, low=1, high=65_536)
        check_choice(p + "optimizer", self.optimizer, OPTIMIZERS)
        check_choice(p + "schedule", self.schedule, SCHEDULES)
        check_number(p + "lr", self.lr, low=0.0, low_open=True)
        check_number(p + "momentum", self.momentum, low=0.0, high=1.0, high_open=True)
        check_number(p + "weight_decay", self.weight_decay, low=0.0)
        check_number(p + "label_smoothing", self.label_smoothing, low=0.0, high=1.0, high_open=True)
        check_number(p + "warmup_epochs", self.warmup_epochs, low=0.0)
        for name in ("lr", "momentum", "weight_decay", "label_smoothing", "warmup_epochs"):
            object.__setattr__(self, name, float(getattr(self, name)))
        if self.warmup_epochs >= self.epochs:
            raise SpecError(p + "warmup_epochs", f"must be < epochs ({self.epochs})", self.warmup_epochs)
        check_int(p + "seed", self.seed, low=0, high=2**63 - 1)
        check_choice(p + "memory_format", self.memory_format, tuple(MEMORY_FORMATS))
        check_int(p + "finetune_epochs", self.finetune_epochs, low=0, high=10_000)
        if self.threads is not None:
            check_int(p + "threads", self.threads, low=1, high=1024)
        check_device(p + "device", self.device)
        check_precision(p + "precision", self.precision)
        if not isinstance(self.deterministic, bool):
            raise SpecError(p + "deterministic", "must be true or false", self.deterministic)
        if self.init_from is not None:
            if not isinstance(self.init_from, (str, os.PathLike)) or not str(self.init_from).endswith(".safetensors") or not Path(self.init_from).is_file():
                raise SpecError(p + "init_from", "must name an existing .safetensors file (the trained 2D network's weights)", self.init_from)
            object.__setattr__(self, "init_from", os.fspath(self.init_from))


@dataclass(frozen=True)
class TrainResult:
    """Validation top-1 after each epoch and the mean training loss of each epoch."""

    accuracy: float  # validation top-1 after the last epoch
    epoch_accuracy: tuple[float, ...]  # validation top-1 after each epoch
    train_loss: tuple[float, ...]  # mean training loss of each epoch
    duration_s: float  # wall time of training and validation


@dataclass(frozen=True)
class TrainState:
    """Where training stands after an epoch: what ``train_proxy`` needs, besides the model's weights, to continue.

    ``train_proxy(..., on_state=f)`` hands one to ``f`` after every epoch;
    ``train_proxy(..., resume=state)`` (same config, model holding the weights
    of that moment) continues after ``state.epoch`` exactly as if it had not
    stopped. Plain tensors and dicts: it saves with ``torch.save`` and loads
    with ``torch.load(weights_only=True)`` (see ``to_dict`` / ``from_dict``).
    """

    epoch: int  # epochs done (1-based count)
    optimizer: dict  # optimizer.state_dict()
    scheduler: dict  # the learning-rate scheduler's state_dict()
    shuffle_rng: torch.Tensor  # state of the batch-order generator
    torch_rng: torch.Tensor  # torch's CPU RNG state inside training (dropout)
    cuda_rng: torch.Tensor | None  # the training device's CUDA RNG state, on a GPU
    epoch_accuracy: tuple[float, ...]  # validation top-1 after each epoch so far
    train_loss: tuple[float, ...]  # mean training loss of each epoch so far

    def to_dict(self) -> dict:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: dict) -> TrainState:
        return cls(**{**data, "epoch_accuracy": tuple(data["epoch_accuracy"]), "train_loss": tuple(data["train_loss"])})


class TrainingDiverged(ValueError):
    """The training loss stopped being finite. A ValueError, so callers may treat it as a bad configuration.

    ``epoch`` (1-based) and ``loss`` say where; the exception pickles, so it
    survives the trip back from a worker process.
    """

    def __init__(self, message: str, *, epoch: int = 0, loss: float = math.nan) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.loss = loss


class TrialStopped(Exception):
    """Raised by an ``on_epoch`` callback to stop training after ``epoch`` (early stopping: the search decides).

    Evaluators let it through and add what they know of the stopped trial to
    ``record`` (``flops``, ``params``, ``duration_s`` of the epochs trained;
    replayed: the table's seconds of those epochs). ``epoch_accuracy`` holds
    the validation accuracy after each epoch trained; ``rule`` names who
    stopped it (e.g. "MO-ASHA"). The exception pickles (worker processes).
    """

    def __init__(self, message: str = "stopped early", *, epoch: int = 0, epoch_accuracy: tuple[float, ...] = (), rule: str = "") -> None:
        super().__init__(message)
        self.epoch = epoch
        self.epoch_accuracy = tuple(epoch_accuracy)
        self.rule = rule
        self.record: dict[str, Any] = {}

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_stopped, (str(self), self.epoch, self.epoch_accuracy, self.rule, self.record))


def _rebuild_stopped(message: str, epoch: int, epoch_accuracy: tuple[float, ...], rule: str, record: dict[str, Any]) -> TrialStopped:
    err = TrialStopped(message, epoch=epoch, epoch_accuracy=epoch_accuracy, rule=rule)
    err.record.update(record)
    return err


@contextlib.contextmanager
def _num_threads(threads: int | None) -> Iterator[None]:
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def memory_format_for(name: str, device: torch.device, model: nn.Module | None = None) -> torch.memory_format:
    """The layout ``name`` stands for on ``device`` (for ``model``).

    "auto" is channels_last_3d on the CPU, where ``bench/trainer_speed.py --factorization all``
    measured it faster for every factorization (2.3-2.5x for the depthwise ones) but
    temporal_shift, whose channel slicing it slows (4-14%): a model with a TemporalShift stays
    contiguous. Elsewhere (not measured there) auto is contiguous. The choice depends only on the
    device and the model's layers, so a config trains the same way every time.
    """
    chosen = MEMORY_FORMATS[name]
    if chosen is not None:
        return chosen
    if device.type != "cpu" or (model is not None and any(isinstance(m, TemporalShift) for m in model.modules())):
        return torch.contiguous_format
    return torch.channels_last_3d


def _optimizer(model: nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay, nesterov=config.momentum > 0)
    fused = {"fused": True} if FUSED_ADAMW and device.type == "cuda" else {}
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, **fused)


def lr_factor(step: int, *, total_steps: int, warmup_steps: int, schedule: str) -> float:
    """Multiplier of the peak learning rate at ``step`` (0-based): linear warmup, then cosine or constant."""
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if schedule == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _device(model: nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def evaluate_accuracy(model: nn.Module, clips: ClipSet | DeviceClips, *, batch_size: int = 128) -> float:
    """Top-1 accuracy of ``model`` on ``clips``, in eval mode under no_grad (training mode restored).

    Always in fp32, whatever precision the model trained in: the argmax is taken
    of the logits ``evaluators.predict`` (the fine-tune report) and an exported
    network compute, so their top-1 agree. ``clips`` may already be a ``DeviceClips`` on the model's device.
    """
    device = _device(model)
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=device)
    try:
        with torch.no_grad():
            for start in range(0, len(clips), batch_size):
                x, y = clips.batch(slice(start, start + batch_size))
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                correct += (model(x).argmax(dim=1) == y).sum()
    finally:
        model.train(was_training)
    return correct.item() / len(clips)


def device_clips(task: SyntheticTask, split: str, device: torch.device) -> DeviceClips:
    """``task``'s ``split`` ("train" or "val") as batches on ``device``.

    The synthetic task's clips go to a GPU once per process and data config;
    other tasks' (a video folder's memory-mapped cache) are copied per batch through pinned memory.
    """
    return DeviceClips(getattr(task, split), device, resident=isinstance(task, SyntheticTask), key=(task.config, split))


class EpochLoss:
    """An epoch's mean training loss, summed on the device (no sync per step).

    With ``skip_non_finite`` (fp16 with a GradScaler, whose overflowing steps
    are skipped) a step whose loss is inf or nan is left out of the mean and
    counted in ``skipped``; the epoch is non-finite only when every step was.
    Without it (fp32, bf16) one non-finite step makes the epoch's mean non-finite.
    """

    def __init__(self, device: torch.device, *, skip_non_finite: bool) -> None:
        self.skip_non_finite = skip_non_finite
        self.total = torch.zeros((), device=device)
        self.finite = torch.zeros((), dtype=torch.int64, device=device)
        self.steps = 0

    def add(self, loss: torch.Tensor) -> None:
        loss = loss.detach().float()
        self.steps += 1
        if not self.skip_non_finite:
            self.total += loss
            return
        ok = torch.isfinite(loss)
        self.total += torch.where(ok, loss, torch.zeros_like(loss))
        self.finite += ok

    @property
    def skipped(self) -> int:
        return 0 if not self.skip_non_finite else self.steps - int(self.finite.item())

    def mean(self) -> float:
        """The mean over the counted steps: nan when no step was finite (with ``skip_non_finite``)."""
        if not self.skip_non_finite:
            return self.total.item() / self.steps
        finite = int(self.finite.item())
        return self.total.item() / finite if finite else math.nan


def _data_parallel(model: nn.Module, device: torch.device) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def epoch_steps(clips: int, batch_size: int, distributed: Distributed | None = None) -> tuple[int, int, int]:
    """(clips each process trains on per epoch, its batch size, its optimizer steps per epoch): a trailing partial batch is dropped."""
    n = clips if distributed is None else clips // distributed.world_size
    batch = min(batch_size, n)
    return n, batch, n // batch


def train_proxy(
    model: nn.Module,
    task: SyntheticTask,
    *,
    config: TrainConfig,
    on_epoch: EpochCallback | None = None,
    on_state: Callable[[TrainState], None] | None = None,
    on_step: StepCallback | None = None,
    resume: TrainState | None = None,
    distributed: Distributed | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``task.train``; validate on ``task.val`` after every epoch.

    The model is moved to ``resolve_device(config.device)`` (``auto``: CUDA when
    available) and runs there in ``config.precision`` (autocast on CUDA; the CPU
    default, fp32, runs without autocast, exactly as before devices existed).

    Epochs are numbered from 1: ``on_epoch(epoch, val_accuracy)`` is called
    after each, and may raise (e.g. to prune a trial) to stop training; then
    ``on_state(TrainState)`` (to checkpoint it). ``on_step(epoch, step)``
    follows every optimizer step (a progress bar). ``resume``, a state from
    ``on_state`` with the model holding that epoch's weights, continues after
    its epoch: optimizer, schedule, batch order and RNG pick up where they were.
    Only the frozen parameters (``requires_grad`` False) are left alone.
    Each epoch visits ``len(train) // batch_size`` batches of a fresh
    shuffle (a trailing partial batch is dropped; a set smaller than one batch
    is one batch). Shuffling uses a generator seeded with ``config.seed``;
    dropout and other global-RNG draws run inside a forked, seeded RNG state,
    so the caller's random state is untouched.

    Validation runs in fp32 (``evaluate_accuracy``). Raises ``TrainingDiverged`` (a ValueError)
    when an epoch's mean loss is nan or inf; with fp16, whose GradScaler skips
    the steps that overflow, only when every step of the epoch did (``EpochLoss``).

    ``distributed`` (one of several processes torchrun started, ``evaluators/_distributed.py``):
    the model trains wrapped in DistributedDataParallel, each epoch on this process's
    shard (``shard_indices``: DistributedSampler, seeded by ``config.seed`` and the epoch),
    ``config.batch_size`` clips per process and step; the epoch's loss is the mean over
    the processes, and every process validates on every validation clip (the same weights: the same accuracy).
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"train_proxy expects config to be a TrainConfig, but got {type(config).__name__}.")
    device = resolve_device(config.device)
    policy = resolve_precision(config.precision, device)
    model.to(device)
    train, val = device_clips(task, "train", device), device_clips(task, "val", device)
    n, batch_size, steps_per_epoch = epoch_steps(len(train), config.batch_size, distributed)
    total_steps = steps_per_epoch * config.epochs
    warmup_steps = round(config.warmup_epochs * steps_per_epoch)

    start_time = time.perf_counter()
    epoch_accuracy: list[float] = [] if resume is None else list(resume.epoch_accuracy)
    train_loss: list[float] = [] if resume is None else list(resume.train_loss)
    rng_devices = [device] if device.type == "cuda" else []
    with _num_threads(config.threads), torch.random.fork_rng(devices=rng_devices), using_device(device), cuda_backends(device, deterministic=config.deterministic):
        torch.manual_seed(config.seed)
        shuffle = torch.Generator().manual_seed(config.seed)
        memory_format = memory_format_for(config.memory_format, device, model)
        if memory_format != torch.contiguous_format:
            model.to(memory_format=memory_format)
        optimizer = _optimizer(model, config, device)
        net = model if distributed is None else _data_parallel(model, device)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: lr_factor(step, total_steps=total_steps, warmup_steps=warmup_steps, schedule=config.schedule),
        )
        scaler = torch.amp.GradScaler(device.type) if policy.scaler else None
        if resume is not None:
            optimizer.load_state_dict(resume.optimizer)
            scheduler.load_state_dict(resume.scheduler)
            shuffle.set_state(resume.shuffle_rng)
            torch.set_rng_state(resume.torch_rng)
            if rng_devices and resume.cuda_rng is not None:
                torch.cuda.set_rng_state(resume.cuda_rng, device)
        smoothing = config.label_smoothing
        for epoch in range(1 if resume is None else resume.epoch + 1, config.epochs + 1):
            model.train()
            if distributed is None:
                order = train.epoch_order(torch.randperm(n, generator=shuffle))  # on the GPU once per epoch, not per step
            else:
                order = train.epoch_order(shard_indices(len(train), rank=distributed.rank, world_size=distributed.world_size, seed=config.seed, epoch=epoch))
            epoch_loss = EpochLoss(device, skip_non_finite=scaler is not None)
            for step in range(steps_per_epoch):
                x, y = train.batch(order[step * batch_size : (step + 1) * batch_size])
                x, y = x.to(device, non_blocking=True, memory_format=memory_format), y.to(device, non_blocking=True)
                with autocast(device, policy):
                    loss = F.cross_entropy(net(x), y, label_smoothing=smoothing)
                optimizer.zero_grad(set_to_none=True)
                if scaler is None:
                    loss.backward()
                    optimizer.step()
                else:  # fp16: scaled gradients; steps with inf/nan gradients are skipped and the scale lowered
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                scheduler.step()
                epoch_loss.add(loss)
                if on_step is not None:
                    on_step(epoch, step)
            mean_loss = epoch_loss.mean() if distributed is None else all_mean(epoch_loss.mean(), device)
            if not math.isfinite(mean_loss):
                every = " in every step" if epoch_loss.skip_non_finite else ""
                raise TrainingDiverged(
                    f"training diverged: loss is {mean_loss}{every} at epoch {epoch} "
                    f"(optimizer={config.optimizer!r}, lr={config.lr:g}); try a lower TrainConfig.lr.",
                    epoch=epoch,
                    loss=mean_loss,
                )
            train_loss.append(mean_loss)
            accuracy = evaluate_accuracy(model, val, batch_size=config.eval_batch_size)
            epoch_accuracy.append(accuracy)
            if on_epoch is not None:
                on_epoch(epoch, accuracy)
            if on_state is not None:
                on_state(
                    TrainState(
                        epoch=epoch,
                        optimizer=optimizer.state_dict(),
                        scheduler=scheduler.state_dict(),
                        shuffle_rng=shuffle.get_state(),
                        torch_rng=torch.get_rng_state(),
                        cuda_rng=torch.cuda.get_rng_state(device) if rng_devices else None,
                        epoch_accuracy=tuple(epoch_accuracy),
                        train_loss=tuple(train_loss),
                    )
                )
    return TrainResult(
        accuracy=epoch_accuracy[-1],
        epoch_accuracy=tuple(epoch_accuracy),
        train_loss=tuple(train_loss),
        duration_s=time.perf_counter() - start_time,
    )
