"""One call from a NetworkSpec to its proxy accuracy and cost."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from particle_nas.space import NetworkSpec, SpecError, TrainingMemory, build_network, check_int, inflate_state_dict

from ._cost import network_cost
from ._data import SyntheticConfig, SyntheticTask, load_or_make_synthetic_task
from ._device import (
    PrecisionPolicy,
    TrialOutOfMemory,
    autocast,
    check_device,
    cuda_backends,
    device_label,
    free_device_memory,
    is_out_of_memory,
    out_of_memory_message,
    resolve_device,
    resolve_precision,
    using_device,
)
from ._files import write_atomically
from ._memory import check_training_fits, optimizer_states
from ._metrics import ZERO_COST, Latency, make_metric
from ._protocol import Evaluator
from ._prune import prune_network, prunes, unpruned_spec
from ._quantize import quantize_int8, size_bytes
from ._train import EpochCallback, TrainConfig, TrialStopped, _num_threads, device_clips, evaluate_accuracy, train_proxy
from ._pretext import PretextTask, VideoPretextConfig, load_pretext_task
from ._video import VideoFolderConfig, VideoTask, load_video_task

_TRAIN_OUTPUTS = ("accuracy", "epoch_accuracy", "train_loss", "duration_s")


@dataclass(frozen=True)
class EvaluatorSettings:
    """Which evaluators score each candidate (a search config's ``evaluators:`` section).

    FLOPs, parameters and size_bytes are always counted. Outputs: ``train`` gives accuracy,
    epoch_accuracy, train_loss, duration_s; ``latency`` gives latency_ms; each
    name in ``zero_cost`` gives a score of that name.
    """

    train: bool = True  # proxy training on the task
    latency: bool = False  # median batch-1 forward time on the training device (and, on CUDA, at the training batch: latency_batch_ms)
    zero_cost: tuple[str, ...] = ()  # any of ZERO_COST: synflow, grad_norm, snip, naswot
    zero_cost_batch: int = 32  # training clips the zero-cost proxies see (one seeded batch)
    latency_warmup: int = 3  # untimed forward passes first
    latency_repeats: int = 15  # timed passes; the median is reported
    replay: str | None = None  # a ParticleBench table file: answer every trial from it instead of training (docs/particlebench.md)

    def __post_init__(self) -> None:
        p = "EvaluatorSettings."
        for name in ("train", "latency"):
            if not isinstance(getattr(self, name), bool):
                raise SpecError(p + name, "must be true or false", getattr(self, name))
        names = self.zero_cost
        if isinstance(names, str):
            names = (names,)
        if not isinstance(names, (list, tuple)) or any(n not in ZERO_COST for n in names) or len(set(names)) != len(names):
            raise SpecError(p + "zero_cost", f"must be a list of distinct names from {list(ZERO_COST)}", self.zero_cost)
        object.__setattr__(self, "zero_cost", tuple(names))
        check_int(p + "zero_cost_batch", self.zero_cost_batch, low=2, high=4096)
        check_int(p + "latency_warmup", self.latency_warmup, low=0, high=10_000)
        check_int(p + "latency_repeats", self.latency_repeats, low=1, high=10_000)
        if self.replay is not None:
            if not isinstance(self.replay, str) or not self.replay.strip():
                raise SpecError(p + "replay", "must be the path of a table file (bench/particlebench.py generate writes one)", self.replay)
            if self.zero_cost:
                raise SpecError(p + "zero_cost", "must be empty with replay (a table holds no zero-cost scores)", list(self.zero_cost))

    @property
    def outputs(self) -> tuple[str, ...]:
        """Names of the numbers an evaluation reports with these settings."""
        names = ["flops", "params"]
        if self.replay is not None:  # a table holds everything training and latency report
            return (*names, *_TRAIN_OUTPUTS, "latency_ms")
        names.append("size_bytes")
        if self.train:
            names += _TRAIN_OUTPUTS
        if self.latency:
            names.append("latency_ms")
        return (*names, *self.zero_cost)


@dataclass(frozen=True)
class Evaluation:
    """What a proxy evaluation of one spec measured (training fields are None when training is off)."""

    accuracy: float | None  # validation top-1 after the last epoch
    epoch_accuracy: tuple[float, ...] | None  # validation top-1 after each epoch
    train_loss: tuple[float, ...] | None  # mean training loss of each epoch
    flops: int  # conv + linear multiply-adds of one clip
    params: int  # trainable parameters
    duration_s: float | None  # wall time of training and validation
    metrics: Mapping[str, float] = field(default_factory=dict)  # latency_ms and zero-cost scores, by name
    accuracy_before_prune: float | None = None  # specs that prune: validation top-1 of the unpruned network before pruning
    accuracy_fp32: float | None = None  # specs that quantize (int8): validation top-1 of the float network; accuracy is the int8 one's
    device: str | None = None  # where it ran: "cpu", "cuda:0 (NVIDIA H200)"
    precision: str | None = None  # the resolved train.precision: fp32, bf16 or fp16
    latency_device: str | None = None  # where latency_ms was measured (the training device)
    weights_error: str | None = None  # why the trained weights could not be saved ("not saved: No space left on device")

    def to_dict(self) -> dict[str, Any]:
        """Flat: every measured number by name (fields that were not measured are left out)."""
        data: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "metrics" or value is None:
                continue
            data[f.name] = list(value) if isinstance(value, tuple) else value
        data.update(self.metrics)
        return data


CALIBRATION_CLIPS = 64  # training clips (a seeded draw) that calibrate int8 quantization's activation ranges


def quantized_stages(spec: NetworkSpec) -> tuple[bool, ...]:
    """Which stages of ``spec`` run in int8 (their particle's ``quantize`` is "int8")."""
    return tuple(p.quantize == "int8" for p in spec.stage_particles)


def quantize_network(model: torch.nn.Module, spec: NetworkSpec, task: SyntheticTask | VideoTask, *, seed: int, batch_size: int = 16) -> torch.nn.Module:
    """``model`` as ``spec``'s particles store it: int8 (``quantize_int8``) when a stage's particle says int8, else ``model`` itself.

    Calibrated on ``CALIBRATION_CLIPS`` training clips drawn with ``seed``. With
    per-stage particles, stages whose particle says "none" stay float; the stem and
    head are quantized whenever any stage is.
    """
    stages = quantized_stages(spec)
    if not any(stages):
        return model
    calibration = calibration_batches(task, seed=seed, batch_size=batch_size)
    return quantize_int8(model, calibration, keep_float=[f"stages.{i}" for i, q in enumerate(stages) if not q], threads=torch.get_num_threads())


def calibration_batches(task: SyntheticTask | VideoTask, *, seed: int, batch_size: int = 16, count: int = CALIBRATION_CLIPS) -> list[torch.Tensor]:
    """Batches of ``count`` training clips of ``task`` (a seeded draw; all of them when fewer) to calibrate ``quantize_int8`` on."""
    order = torch.randperm(len(task.train), generator=torch.Generator().manual_seed(seed))[:count]
    return [task.train.batch(order[i : i + batch_size])[0] for i in range(0, len(order), batch_size)]


def training_seed(*, base: int, seed: int) -> int:
    """Training seed of an evaluation: a hash of the config's seed and the evaluation's seed."""
    digest = hashlib.sha256(f"particle-nas-train:{base}:{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def save_weights(model: Any, path: str | Path) -> Path:
    """Save ``model.state_dict()`` as safetensors at ``path`` (folders created; written whole, synced, then moved).

    A write that fails (a full disk) raises the OSError and leaves no file
    behind: neither ``path`` nor the temporary file it is written through.
    """
    from safetensors.torch import save

    return write_atomically(path, save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}))


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The ``state_dict`` that ``save_weights`` wrote at ``path``, on the CPU."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise SpecError("TrainConfig.init_from", f"must be a safetensors file of a network's state_dict ({err})", str(path)) from None


def load_task(data: SyntheticConfig | VideoFolderConfig | VideoPretextConfig, *, cache_dir: Path | None = None, progress: bool = True) -> SyntheticTask | VideoTask | PretextTask:
    """The task of a data config, whatever its kind: generated, or decoded once (into ``cache_dir`` when given)."""
    if isinstance(data, VideoFolderConfig):
        return load_video_task(data, cache_dir=cache_dir, progress=progress)
    if isinstance(data, VideoPretextConfig):
        return load_pretext_task(data, cache_dir=cache_dir, progress=progress)
    return load_or_make_synthetic_task(data, cache_dir=cache_dir)


@dataclass(frozen=True)
class ProxyEvaluator(Evaluator):
    """Train a spec's proxy network on the synthetic task and count its cost.

    ``evaluate(spec, seed=s)`` initializes the network with seed ``s`` and
    trains with a seed derived from ``train.seed`` and ``s``: equal seeds give
    equal results, and different architectures evaluated with the same seed
    see the same batches in the same order.
    """

    data: SyntheticConfig | VideoFolderConfig | VideoPretextConfig = field(default_factory=SyntheticConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    cache_dir: Path | None = None  # where the task's clips are kept on disk; None = memory only
    evaluators: EvaluatorSettings = field(default_factory=EvaluatorSettings)
    progress: bool = field(default=True, compare=False)  # the bar of decoding a video folder into its cache (the CLI's --no-progress)

    def __post_init__(self) -> None:
        if not isinstance(self.data, (SyntheticConfig, VideoFolderConfig, VideoPretextConfig)):
            raise SpecError("ProxyEvaluator.data", "must be a SyntheticConfig, a VideoFolderConfig or a VideoPretextConfig", self.data)
        if not isinstance(self.train, TrainConfig):
            raise SpecError("ProxyEvaluator.train", "must be a TrainConfig", self.train)
        if not isinstance(self.evaluators, EvaluatorSettings):
            raise SpecError("ProxyEvaluator.evaluators", "must be an EvaluatorSettings", self.evaluators)
        if self.cache_dir is not None:
            object.__setattr__(self, "cache_dir", Path(self.cache_dir))

    def task(self) -> SyntheticTask | VideoTask | PretextTask:
        """The task (generated or decoded once per process, or loaded from ``cache_dir``)."""
        return load_task(self.data, cache_dir=self.cache_dir, progress=self.progress)

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

    def evaluate(self, spec: NetworkSpec, *, seed: int, on_epoch: EpochCallback | None = None, weights_path: Path | None = None) -> Evaluation:
        """Count ``spec``'s cost, build it with ``seed`` and train it; see ``train_proxy`` for ``on_epoch``.

        A spec whose training would not fit in the device's free memory is refused
        first, from the analytic estimate (``check_memory``): ``TrialOutOfMemory``
        "out of memory (estimated) ...", before the task is loaded or a tensor allocated.

        When ``spec`` prunes (``prune_ratio`` > 0), the unpruned network is
        trained (``on_epoch`` sees those epochs), its accuracy kept as
        ``accuracy_before_prune``, its lowest-L1 inner channels removed by
        ``prune_network`` and the result fine-tuned for ``train.finetune_epochs``;
        ``accuracy``, ``epoch_accuracy`` and ``train_loss`` then end with the
        fine-tuning epochs (or the pruned network's accuracy, without them).
        Latency and zero-cost scores are measured on the (pruned) architecture
        of ``spec`` before training, with fresh weights. Training starts from
        ``initial_network`` (fresh, or inflated from ``train.init_from``). With
        ``weights_path``, the final trained ``state_dict`` is saved there (safetensors).

        When a particle of ``spec`` says ``quantize: int8``, the final network is
        quantized (``quantize_network``, calibrated on training clips): ``accuracy``
        is the int8 network's, ``accuracy_fp32`` the float one's, and
        ``latency_ms`` is measured on the int8 network. ``size_bytes`` is always
        reported: ``size_bytes`` of the network as stored (int8 or float32).
        """
        self.check_spec(spec)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise SpecError("ProxyEvaluator.evaluate.seed", "must be an integer >= 0", seed)
        device = resolve_device(self.train.device, field="train.device")
        policy = resolve_precision(self.train.precision, device, field="train.precision")
        self.check_memory(spec, device=device, policy=policy)
        try:
            with using_device(device), cuda_backends(device, deterministic=self.train.deterministic):
                return self._evaluate(spec, seed=seed, device=device, policy=policy, on_epoch=on_epoch, weights_path=weights_path)
        except Exception as err:
            if not is_out_of_memory(err):
                raise
            reason = out_of_memory_message(err, device)
        # Out of the except block, the failed trial's frames (and the tensors they hold) are gone: give their memory back.
        free_device_memory()
        raise TrialOutOfMemory(reason)

    def check_memory(self, spec: NetworkSpec, *, device: torch.device, policy: PrecisionPolicy, free: int | None = None) -> TrainingMemory:
        """Refuse ``spec`` (``TrialOutOfMemory``, "out of memory (estimated) ...") when its training would not fit in ``device``'s free memory.

        Checked before the task is loaded or anything is built (``check_training_fits``),
        for the largest network that gets gradients: the unpruned one when ``spec``
        prunes, at ``train.batch_size`` with the optimizer's state; without training,
        ``spec`` itself at ``zero_cost_batch`` in fp32 for the zero-cost proxies, or one clip.
        """
        if self.evaluators.train:
            trained = unpruned_spec(spec) if prunes(spec) else spec
            return check_training_fits(trained, device=device, policy=policy, batch_size=self.train.batch_size, optimizer_states=optimizer_states(self.train), free=free)
        if self.evaluators.zero_cost:
            fp32 = PrecisionPolicy("fp32", None, False)
            return check_training_fits(spec, device=device, policy=fp32, batch_size=self.evaluators.zero_cost_batch, optimizer_states=0, free=free)
        return check_training_fits(spec, device=device, policy=policy, batch_size=1, optimizer_states=0, free=free)

    def warm_up(self) -> None:
        """Pay a process's one-time costs before its first trial, so that no trial's ``duration_s`` holds them.

        The task (generated, decoded or loaded once per process) and torch's
        lazy import of ``torch._dynamo``, which the first optimizer triggers
        (about 2 s of CPU on an idle core, far more under load).
        """
        self.task()
        import torch._dynamo  # noqa: F401

    @property
    def epochs(self) -> int:
        """``train.epochs``: the budget early stopping places its rungs in."""
        return self.train.epochs

    @property
    def device(self) -> str:
        return self.train.device

    @property
    def precision(self) -> str:
        return self.train.precision

    def on_device(self, device: str) -> ProxyEvaluator:
        """This evaluator with ``train.device`` set to ``device`` (e.g. a worker's ``trial_device(...)``)."""
        check_device("train.device", device)
        return dataclasses.replace(self, train=dataclasses.replace(self.train, device=device))

    def for_clip(self, clip: tuple[int, int, int]) -> ProxyEvaluator:
        """This evaluator with ``data.clip`` set to ``clip`` (itself when it is already that size)."""
        if tuple(self.data.clip) == tuple(clip):
            return self
        return dataclasses.replace(self, data=dataclasses.replace(self.data, clip=tuple(clip)))

    def _evaluate(
        self, spec: NetworkSpec, *, seed: int, device: torch.device, policy: PrecisionPolicy, on_epoch: EpochCallback | None, weights_path: Path | None
    ) -> Evaluation:
        cost = network_cost(spec)
        task = self.task()
        config = dataclasses.replace(self.train, seed=training_seed(base=self.train.seed, seed=seed))
        pruning = prunes(spec)
        model = build_network(spec, seed=seed).to(device)
        metrics = self.measure(model, task, seed=config.seed, precision=policy)
        where = {"device": device_label(device), "precision": policy.name}
        if self.evaluators.latency:
            where["latency_device"] = where["device"]
        if not self.evaluators.train:
            self.quantize(model, spec, task, seed=config.seed, metrics=metrics, where=where)
            return Evaluation(accuracy=None, epoch_accuracy=None, train_loss=None, flops=cost.flops, params=cost.params, duration_s=None, metrics=metrics, **where)
        start = time.perf_counter()
        if pruning or self.train.init_from is not None:
            model = self.initial_network(unpruned_spec(spec), seed=seed).to(device)
        try:
            result = train_proxy(model, task, config=config, on_epoch=on_epoch)
        except TrialStopped as stop:  # early stopping: what the stopped trial cost, for its record
            stop.record.update(metrics, flops=cost.flops, params=cost.params, duration_s=time.perf_counter() - start, **where)
            raise
        accuracy, epoch_accuracy, train_loss, before = result.accuracy, result.epoch_accuracy, result.train_loss, None
        if pruning:
            before = result.accuracy
            model = prune_network(model, spec)
            if config.finetune_epochs:
                finetune = dataclasses.replace(config, epochs=config.finetune_epochs, warmup_epochs=0.0)
                tuned = train_proxy(model, task, config=finetune)
                accuracy, epoch_accuracy, train_loss = tuned.accuracy, epoch_accuracy + tuned.epoch_accuracy, train_loss + tuned.train_loss
            else:
                accuracy = evaluate_accuracy(model, device_clips(task, "val", device), batch_size=config.eval_batch_size)
        weights_error = None
        if weights_path is not None:
            try:
                save_weights(model, weights_path)
            except OSError as err:  # a full disk: the trial keeps what it measured, and says its weights are missing
                weights_error = f"not saved: {err.strerror or err}"
        stored = self.quantize(model, spec, task, seed=config.seed, metrics=metrics, where=where)
        accuracy_fp32 = None
        if stored is not model:
            accuracy_fp32, accuracy = accuracy, evaluate_accuracy(stored, task.val, batch_size=config.eval_batch_size)
        return Evaluation(
            accuracy=accuracy,
            epoch_accuracy=epoch_accuracy,
            train_loss=train_loss,
            flops=cost.flops,
            params=cost.params,
            duration_s=time.perf_counter() - start if pruning else result.duration_s,
            metrics=metrics,
            accuracy_before_prune=before,
            accuracy_fp32=accuracy_fp32,
            weights_error=weights_error,
            **where,
        )

    def quantize(
        self, model: torch.nn.Module, spec: NetworkSpec, task: SyntheticTask | VideoTask, *, seed: int, metrics: dict[str, float], where: dict[str, str] | None = None
    ) -> torch.nn.Module:
        """The network as ``spec`` stores it (``quantize_network``); sets ``metrics["size_bytes"]``, and latency_ms of an int8 network.

        An int8 network runs in ONNX Runtime on the CPU, so its ``latency_ms`` is a CPU time:
        ``where["latency_device"]`` says cpu, and the float network's ``latency_batch_ms`` is dropped.
        """
        with _num_threads(self.train.threads):
            stored = quantize_network(model, spec, task, seed=seed)
            metrics["size_bytes"] = size_bytes(stored)
            if stored is not model and self.evaluators.latency:
                clip = task.train.batch(slice(0, 1))
                metrics["latency_ms"] = Latency(warmup=self.evaluators.latency_warmup, repeats=self.evaluators.latency_repeats).measure(stored, clip)
                metrics.pop("latency_batch_ms", None)
                if where is not None:
                    where["latency_device"] = device_label(torch.device("cpu"))
        return stored

    def initial_network(self, spec: NetworkSpec, *, seed: int) -> torch.nn.Module:
        """The network that training starts from: ``build_network(spec, seed=seed)``, holding with ``train.init_from``
        the weights of that file inflated by I3D's rule (``space.inflate_state_dict``: the file holds the network's
        2D form, ``space.as_2d(spec)``, or the network itself, whose tensors are copied)."""
        model = build_network(spec, seed=seed)
        path = self.train.init_from
        if path is not None:
            try:
                state = inflate_state_dict(load_weights(path), model)
            except SpecError as err:
                if err.field == "TrainConfig.init_from":
                    raise
                raise SpecError("TrainConfig.init_from", f"must hold the weights of the network or of its 2D form, space.as_2d ({err})", path) from None
            model.load_state_dict(state)
        return model

    def measure(self, model: torch.nn.Module, task: SyntheticTask | VideoTask, *, seed: int, precision: PrecisionPolicy | None = None) -> dict[str, float]:
        """Latency and zero-cost scores of an untrained ``model`` (left unchanged), as enabled in ``evaluators``.

        The zero-cost proxies all see the same batch of training clips, drawn with ``seed``,
        and run inside a forked RNG state seeded with it, in fp32; threads follow ``train.threads``.
        Latency runs on the model's device in ``precision`` (default fp32): ``latency_ms`` at
        batch 1, and on CUDA also ``latency_batch_ms`` at ``train.batch_size``.
        """
        settings = self.evaluators
        if not settings.zero_cost and not settings.latency:
            return {}
        device = next(model.parameters()).device
        order = torch.randperm(len(task.train), generator=torch.Generator().manual_seed(seed))
        x, y = device_clips(task, "train", device).batch(order[: settings.zero_cost_batch])
        batch = (x.to(device), y.to(device))
        metrics: dict[str, float] = {}
        with _num_threads(self.train.threads):
            for name in settings.zero_cost:
                with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                    torch.manual_seed(seed)
                    metrics[name] = make_metric(name).measure(model, batch)
            if settings.latency:
                sizes = {"latency_ms": 1, **({"latency_batch_ms": self.train.batch_size} if device.type == "cuda" else {})}
                with autocast(device, precision) if precision is not None else contextlib.nullcontext():
                    for name, size in sizes.items():
                        metrics[name] = Latency(warmup=settings.latency_warmup, repeats=settings.latency_repeats, batch_size=size).measure(model, batch)
        return metrics
