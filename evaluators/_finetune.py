"""Fine-tuning a network on a task: which weights train (mode), checkpoints every epoch, resume, the best epoch kept.

Modes (``FINETUNE_MODES``):

- ``full``: every parameter trains;
- ``linear``: only the head (everything under ``model.head``) trains;
- ``adapters``: a bottleneck ``Adapter`` goes after each particle
  (``space.add_adapters``); only the adapters and the head train;
- ``bitfit``: biases, the batch norms' weights and biases, and the head train.

A batch norm whose parameters are frozen is also kept in eval mode (its running
statistics do not move): the frozen part of the network is exactly the network
it was, so every frozen tensor of the state_dict is bit-identical after training.

``finetune`` trains with the project's trainer (``train_proxy``), writes
``checkpoints/last.pt`` after every epoch (weights, optimizer, schedule, RNG
states, per-epoch metrics, the best epoch so far) and ``best.safetensors``
whenever validation top-1 improves; run again with the same settings, it
continues after the last checkpoint as if it had not stopped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from particle_nas.space import ACTIVATIONS, QUANTIZE_MODES, NetworkSpec, SpecError, TrainingMemory, add_adapters, check_choice, check_int, check_number

from ._data import ClipSet
from ._device import TrialOutOfMemory, resolve_precision
from ._distributed import Distributed
from ._files import write_atomically
from ._memory import check_training_fits, optimizer_states
from ._train import TrainConfig, TrainState, epoch_steps, train_proxy

FINETUNE_MODES: tuple[str, ...] = ("full", "linear", "adapters", "bitfit")
AFTER_TRAINING: tuple[str, ...] = ("quantize", "views", "crops", "linear_probe")  # FineTuneSettings fields that act after (or beside) training: not in a run's fingerprint
CHECKPOINT_VERSION = 1
LAST_CHECKPOINT = Path("checkpoints") / "last.pt"
BEST_WEIGHTS = "best.safetensors"
INT8_MODEL = "model-int8.onnx"  # finetune.quantize int8: the best epoch's model, quantized (load_int8 reads it)


@dataclass(frozen=True)
class FineTuneSettings:
    """What trains when a network is fine-tuned."""

    mode: str = "full"  # see FINETUNE_MODES
    adapter_reduction: float = 4.0  # adapters mode: hidden channels = block channels / reduction
    adapter_activation: str = "relu"  # adapters mode: between the two projections (see space.ACTIVATIONS)
    quantize: str = "none"  # int8: after training, the best epoch's model is quantized (quantize_int8) and measured; not part of training
    views: int = 1  # the report's multi-view test: temporal clips per validation video (video folders; 1: the 1-clip protocol only)
    crops: int = 1  # ... and spatial crops per clip (1 or 3), their softmax averaged with the views'
    linear_probe: bool = False  # the report's "before": the loaded network with only a new head trained (same data, epochs), per class beside the fine-tuned "after"

    def __post_init__(self) -> None:
        p = "FineTuneSettings."
        check_choice(p + "mode", self.mode, FINETUNE_MODES)
        check_int(p + "views", self.views, low=1, high=64)
        check_choice(p + "crops", self.crops, (1, 3))
        if not isinstance(self.linear_probe, bool):
            raise SpecError(p + "linear_probe", "must be true or false", self.linear_probe)
        check_number(p + "adapter_reduction", self.adapter_reduction, low=1.0)
        object.__setattr__(self, "adapter_reduction", float(self.adapter_reduction))
        check_choice(p + "adapter_activation", self.adapter_activation, ACTIVATIONS)
        check_choice(p + "quantize", self.quantize, QUANTIZE_MODES)


class FrozenBatchNorm3d(nn.BatchNorm3d):
    """A BatchNorm3d that stays in eval mode: it normalizes with its running statistics and never updates them."""

    def train(self, mode: bool = True) -> FrozenBatchNorm3d:
        return super().train(False)

    @classmethod
    def from_module(cls, norm: nn.BatchNorm3d) -> FrozenBatchNorm3d:
        frozen = cls(norm.num_features, eps=norm.eps, momentum=norm.momentum, affine=norm.affine, track_running_stats=norm.track_running_stats)
        frozen.load_state_dict(norm.state_dict())
        frozen.to(device=norm.weight.device if norm.affine else None)
        return frozen.requires_grad_(False).eval()


def trains(name: str, module: nn.Module, mode: str) -> bool:
    """Whether parameter ``name`` (of ``module``, its owner) trains in ``mode``."""
    if mode == "full" or name.startswith("head."):
        return True
    if mode == "adapters":
        return ".adapter." in f".{name}"
    if mode == "bitfit":
        return name.endswith(".bias") or isinstance(module, nn.modules.batchnorm._NormBase)
    return False  # linear: the head only


def check_finetune_memory(network: NetworkSpec, config: TrainConfig, device: torch.device, *, free: int | None = None) -> TrainingMemory:
    """Refuse, with one ValueError line, a fine-tuning whose training would not fit in ``device``'s free memory, before ``network`` is built.

    ``check_training_fits`` at ``config.batch_size`` in its precision, as a full
    training (every parameter with gradients and optimizer state: an upper bound for the other modes).
    """
    policy = resolve_precision(config.precision, device, field="train.precision")
    try:
        return check_training_fits(network, device=device, policy=policy, batch_size=config.batch_size, optimizer_states=optimizer_states(config), free=free)
    except TrialOutOfMemory as err:
        raise ValueError(f"{err}; lower train.batch_size or the clip, or fine-tune where more memory is free") from None


def prepare_for_finetuning(
    model: nn.Module,
    settings: FineTuneSettings,
    *,
    seed: int = 0,
    weights: dict[str, torch.Tensor] | None = None,
    where: str = "weights",
    new_head: bool = False,
) -> nn.Module:
    """Set up ``model`` (a built network) for ``settings.mode``, in place: adapters, weights, requires_grad, frozen norms.

    The adapters (adapters mode) are created from ``seed`` without touching
    the caller's random state. ``weights`` (a state_dict, checked by
    ``check_weights``; ``where`` names it in errors) are loaded next; with
    ``new_head`` the head's last linear layer keeps its fresh weights (another
    number of classes). Returns ``model``.
    """
    if settings.mode == "adapters":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            add_adapters(model, reduction=settings.adapter_reduction, activation=settings.adapter_activation)
    if weights is not None:
        model.load_state_dict(check_weights(model, weights, where=where, skip=head_linear_keys(model) if new_head else ()), strict=False)
    modules = dict(model.named_modules())
    for name, param in model.named_parameters():
        owner = modules[name.rpartition(".")[0]]
        param.requires_grad_(trains(name, owner, settings.mode))
    for parent in list(model.modules()):
        for child_name, child in parent.named_children():
            if type(child) is nn.BatchNorm3d and not any(p.requires_grad for p in child.parameters()):
                setattr(parent, child_name, FrozenBatchNorm3d.from_module(child))
    return model


@dataclass(frozen=True)
class ParamCounts:
    trainable: int
    total: int

    @property
    def ratio(self) -> float:
        return self.trainable / self.total if self.total else 0.0


def param_counts(model: nn.Module) -> ParamCounts:
    """Trainable and total parameters of ``model``."""
    params = list(model.parameters())
    return ParamCounts(trainable=sum(p.numel() for p in params if p.requires_grad), total=sum(p.numel() for p in params))


def head_linear_keys(model: nn.Module) -> tuple[str, ...]:
    """The state_dict keys of the head's last linear layer (the one whose width is the number of classes)."""
    linears = [name for name, m in model.named_modules() if name.startswith("head") and isinstance(m, nn.Linear)]
    if not linears:
        return ()
    return (f"{linears[-1]}.weight", f"{linears[-1]}.bias")


def check_weights(model: nn.Module, weights: dict[str, torch.Tensor], *, where: str, skip: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """The tensors of ``weights`` to load into ``model``, or a one-line ValueError when they do not fit it.

    Every tensor of the model's state_dict must be there with its shape,
    except its adapters (a file without them leaves them fresh) and ``skip``.
    """
    expected = {k: v for k, v in model.state_dict().items() if k not in skip}
    extra = sorted(set(weights) - set(expected) - set(skip))
    if extra:
        raise ValueError(f"{where}: the weights must be those of the network, but they hold {len(extra)} tensor(s) it has not, e.g. {extra[0]!r}.")
    missing = sorted(k for k in expected if k not in weights and ".adapter." not in k)
    if missing:
        raise ValueError(f"{where}: the weights must hold every tensor of the network, but {len(missing)} are missing, e.g. {missing[0]!r}.")
    head = head_linear_keys(model)
    for key, want in expected.items():  # in the network's order: the first misfit is named
        got = weights.get(key)
        if got is not None and tuple(got.shape) != tuple(want.shape):
            classes = key in head and tuple(got.shape[1:]) == tuple(want.shape[1:])
            flat = got.dim() == want.dim() == 5 and got.shape[2] == 1 < want.shape[2] and got.shape[:2] == want.shape[:2] and got.shape[3:] == want.shape[3:]
            hint = " (another number of classes: pass --new-head to train a new head)" if classes else " (these are the weights of the network's 2D form: pass --inflate)" if flat else ""
            raise ValueError(f"{where}: {key} must have shape {tuple(want.shape)} in this network, but got {tuple(got.shape)}{hint}.")
    return {k: v for k, v in weights.items() if k in expected}


@dataclass(frozen=True)
class Predictions:
    """A model's predictions on a clip set: the confusion matrix and the top-k hits."""

    confusion: tuple[tuple[int, ...], ...]  # confusion[true][predicted], counts
    top_k: int  # k of the top-k accuracy (5, or the number of classes when fewer)
    top_k_correct: int  # clips whose label is among the k highest logits
    count: int

    @property
    def top1(self) -> float:
        return sum(self.confusion[i][i] for i in range(len(self.confusion))) / self.count

    @property
    def top5(self) -> float:
        return self.top_k_correct / self.count


def predict(model: nn.Module, clips: ClipSet, *, num_classes: int, batch_size: int = 128, k: int = 5) -> Predictions:
    """Confusion matrix and top-k hits of ``model`` on ``clips`` (eval mode, no_grad; training mode restored)."""
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    k = min(k, num_classes)
    confusion = torch.zeros((num_classes, num_classes), dtype=torch.int64)
    hits = 0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(clips), batch_size):
                x, y = clips.batch(slice(start, start + batch_size))
                logits = model(x.to(device)).cpu()
                confusion += torch.bincount(y * num_classes + logits.argmax(dim=1), minlength=num_classes**2).reshape(num_classes, num_classes)
                hits += int((logits.topk(k, dim=1).indices == y[:, None]).any(dim=1).sum())
    finally:
        model.train(was_training)
    return Predictions(confusion=tuple(tuple(row) for row in confusion.tolist()), top_k=k, top_k_correct=hits, count=len(clips))


# ---------------------------------------------------------------- checkpoints and resume
def fingerprint_digest(fingerprint: dict) -> str:
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str).encode()).hexdigest()


def read_checkpoint(out_dir: str | os.PathLike[str], fingerprint: dict) -> dict | None:
    """The last checkpoint in ``out_dir``, or None; a ValueError when it was made with other settings.

    Only ``train.epochs`` may differ (it is not part of the fingerprint): a
    finished run continues to the new number of epochs.
    """
    path = Path(out_dir) / LAST_CHECKPOINT
    if not path.is_file():
        return None
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file
        raise ValueError(f"{path} must be a particle-nas fine-tuning checkpoint, but it does not load ({type(err).__name__}); move it away to start over.") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path} must be a particle-nas fine-tuning checkpoint (version {CHECKPOINT_VERSION}); move it away to start over.")
    if checkpoint["fingerprint"] != fingerprint_digest(fingerprint):
        old = json.loads(checkpoint["settings"])
        changed = sorted(k for k in set(old) | set(fingerprint) if json.dumps(old.get(k), sort_keys=True, default=str) != json.dumps(fingerprint.get(k), sort_keys=True, default=str))
        raise ValueError(
            f"{path.parent.parent} holds a fine-tuning run with other settings ({', '.join(changed)} differ); "
            "only --epochs may change when a run continues: pass another --name for a new run."
        )
    return checkpoint


def cpu_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state_dict as contiguous CPU tensors (as safetensors wants them)."""
    return {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}


def save_best(model: nn.Module, path: Path, *, epoch: int, val_top1: float) -> None:
    from safetensors.torch import save

    state = cpu_state_dict(model)
    write_atomically(path, save(state, metadata={"epoch": str(epoch), "val_top1": repr(val_top1)}))


@dataclass(frozen=True)
class FineTuneResult:
    """Per-epoch metrics of the whole run (resumed epochs included) and where the best epoch is."""

    val_top1: tuple[float, ...]  # validation top-1 after each epoch
    train_loss: tuple[float, ...]  # mean training loss of each epoch
    best_epoch: int  # 1-based
    best_val_top1: float
    resumed_from: int  # epochs done before this call (0: started fresh)
    best_path: Path


@contextlib.contextmanager
def _progress_bar(total: int, initial: int, *, enabled: bool, desc: str) -> Iterator[object]:
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=initial, desc=desc, unit="step", disable=not enabled, file=sys.stderr, dynamic_ncols=True)
    try:
        yield bar
    finally:
        bar.close()


def finetune(
    model: nn.Module,
    task,
    *,
    config: TrainConfig,
    out_dir: str | os.PathLike[str],
    fingerprint: dict,
    checkpoint: dict | None = None,
    progress: bool = True,
    on_epoch: Callable[[int, float], None] | None = None,
    distributed: Distributed | None = None,
) -> FineTuneResult:
    """Train ``model`` (prepared with ``prepare_for_finetuning``, on its device) on ``task``, checkpointing in ``out_dir``.

    ``checkpoint`` (from ``read_checkpoint(out_dir, fingerprint)``) continues
    that run: its weights are loaded into ``model`` and training goes on after
    its epoch. After every epoch: ``checkpoints/last.pt`` and, when validation
    top-1 beats every earlier epoch, ``best.safetensors``. ``on_epoch(epoch,
    val_top1)`` runs after the checkpoint is written (a KeyboardInterrupt
    raised there, or anywhere, leaves the last checkpoint to resume from).
    ``distributed``: one of several processes (``train_proxy``); only rank 0
    writes the checkpoint and the best weights and shows the progress bar.
    """
    out = Path(out_dir)
    best_path = out / BEST_WEIGHTS
    resume = None
    best = {"epoch": 0, "val_top1": -1.0}
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        resume = TrainState.from_dict(checkpoint["train_state"])
        best = dict(checkpoint["best"])
    done = 0 if resume is None else resume.epoch
    digest = fingerprint_digest(fingerprint)
    settings = json.dumps(fingerprint, sort_keys=True, default=str)

    main = distributed is None or distributed.is_main

    def on_state(state: TrainState) -> None:
        accuracy = state.epoch_accuracy[-1]
        if accuracy > best["val_top1"]:
            if main:  # the same weights and accuracy on every process: rank 0 writes them
                save_best(model, best_path, epoch=state.epoch, val_top1=accuracy)
            best.update(epoch=state.epoch, val_top1=accuracy)
        if not main:
            return
        record = {
            "version": CHECKPOINT_VERSION,
            "fingerprint": digest,
            "settings": settings,
            "epoch": state.epoch,
            "model": cpu_state_dict(model),
            "train_state": state.to_dict(),
            "metrics": {"val_top1": list(state.epoch_accuracy), "train_loss": list(state.train_loss)},
            "best": dict(best),
        }
        write_atomically(out / LAST_CHECKPOINT, lambda handle: torch.save(record, handle))
        bar.set_postfix(loss=f"{state.train_loss[-1]:.4f}", val_top1=f"{accuracy:.4f}", best=f"{best['val_top1']:.4f}@{best['epoch']}")
        if on_epoch is not None:
            on_epoch(state.epoch, accuracy)

    steps = epoch_steps(len(task.train), config.batch_size, distributed)[2]  # the bar counts train_proxy's steps
    with _progress_bar(steps * config.epochs, steps * min(done, config.epochs), enabled=progress and main, desc="fine-tuning") as bar:
        if done < config.epochs:
            result = train_proxy(model, task, config=config, on_state=on_state, on_step=lambda epoch, step: bar.update(1), resume=resume, distributed=distributed)
            val_top1, train_loss = result.epoch_accuracy, result.train_loss
        else:  # already trained this far: nothing to do but report
            val_top1, train_loss = tuple(checkpoint["metrics"]["val_top1"]), tuple(checkpoint["metrics"]["train_loss"])
    return FineTuneResult(
        val_top1=tuple(val_top1),
        train_loss=tuple(train_loss),
        best_epoch=int(best["epoch"]),
        best_val_top1=float(best["val_top1"]),
        resumed_from=done,
        best_path=best_path,
    )


def load_best(model: nn.Module, path: str | os.PathLike[str]) -> nn.Module:
    """Load the weights ``finetune`` kept for its best epoch into ``model`` (prepared the same way), in place."""
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(path)))
    return model

