"""Where and in which precision a trial runs: device and precision policy, GPU assignment, out-of-memory.

Everything here is a plain function of its arguments (CUDA availability and
device counts are read from torch only when not passed), so the policy is
tested on machines without a GPU:

- ``resolve_device("auto" | "cpu" | "cuda" | "cuda:N")``: the torch device, or
  one ``SpecError`` line when CUDA was asked for and is not there.
- ``precision_policy(device_type, requested, bf16_supported)``: the autocast
  dtype and whether a GradScaler is needed (``PrecisionPolicy``).
- ``cuda_backends(deterministic=...)``: cudnn autotuning for the fixed proxy
  shapes, or deterministic kernels, and no TF32 (``full_fp32``); restored on exit.
  ``prepare_cuda_process`` sets what CUDA reads once per process (the cuBLAS
  workspace), before CUDA starts.
- ``gpu_for_worker``, ``parse_gpus``, ``check_gpus``, ``default_workers``,
  ``trial_device``: which GPU a worker process or a Ray trial uses, and how
  many local workers a search runs by default.
- ``is_out_of_memory`` / ``TrialOutOfMemory`` / ``free_device_memory``: a CUDA
  out-of-memory becomes a failed trial whose reason starts ``TrialOutOfMemory: out of memory``.
  ``is_cuda_error``: any other CUDA error (device-side assert, illegal address),
  after which the process's CUDA context is unusable.
- ``DeviceClips``: a ClipSet's batches on a device (synthetic clips moved to
  the GPU once, video clips copied per batch through pinned memory); an
  epoch's shuffle order goes to the GPU once (``epoch_order``), pinned.
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import torch

from particle_nas.space import SpecError

from ._data import ClipSet, normalize

DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "cuda:N")  # what train.device accepts (N: a visible CUDA index)
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")
_DEVICE = re.compile(r"^(auto|cpu|cuda)$|^cuda:(0|[1-9][0-9]{0,3})$")
_DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


# ---------------------------------------------------------------- device
def check_device(field: str, value: Any) -> str:
    """``value`` if it names a device (``DEVICES``), else a SpecError for ``field``."""
    if not isinstance(value, str) or not _DEVICE.match(value):
        raise SpecError(field, "must be auto, cpu, cuda or cuda:N (N a CUDA device index)", value)
    return value


def resolve_device(
    requested: str,
    *,
    cuda_available: bool | None = None,
    device_count: int | None = None,
    field: str = "TrainConfig.device",
) -> torch.device:
    """The torch device ``requested`` stands for on this machine.

    ``auto`` is CUDA (``torch.device("cuda")``: the current device) when
    ``torch.cuda.is_available()``, else the CPU. No CUDA context is created,
    so a search's parent process may call it before starting its workers.
    ``cuda`` and ``cuda:N`` must be available: otherwise one
    SpecError line, e.g. "TrainConfig.device must be available: cuda was asked
    but torch.cuda.is_available() is False (...), but got 'cuda'."
    ``cuda_available`` and ``device_count`` default to what torch reports.
    """
    check_device(field, requested)
    if requested == "cpu":
        return torch.device("cpu")
    available = torch.cuda.is_available() if cuda_available is None else cuda_available
    if requested == "auto":
        if not available:
            return torch.device("cpu")
        requested = "cuda"
    if not available:
        raise SpecError(
            field,
            f"must be available: {requested} was asked but torch.cuda.is_available() is False "
            "(no CUDA GPU here, or a CPU-only torch build); use auto or cpu",
            requested,
        )
    if requested == "cuda":  # the current CUDA device, as torch picks it when used (nothing is initialized here)
        return torch.device("cuda")
    count = torch.cuda.device_count() if device_count is None else device_count
    index = int(requested.partition(":")[2])
    if index >= count:
        raise SpecError(field, f"must be available: {requested} was asked but torch.cuda.device_count() is {count} (cuda:0 to cuda:{count - 1})", requested)
    return torch.device("cuda", index)


def device_label(device: torch.device) -> str:
    """A device as a trial records it: "cpu", or "cuda:0 (NVIDIA H200)"."""
    if device.type != "cuda":
        return device.type
    index = torch.cuda.current_device() if device.index is None else device.index
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"


# ---------------------------------------------------------------- precision
class PrecisionPolicy(NamedTuple):
    """How a trial computes: ``name`` (fp32, bf16, fp16), the autocast ``dtype`` (None = fp32, no autocast), ``scaler`` for fp16."""

    name: str
    dtype: torch.dtype | None
    scaler: bool


def check_precision(field: str, value: Any) -> str:
    if value not in PRECISIONS:
        raise SpecError(field, f"must be one of {PRECISIONS}", value)
    return value


def precision_policy(device_type: str, requested: str, bf16_supported: bool, *, field: str = "TrainConfig.precision") -> PrecisionPolicy:
    """The precision ``requested`` stands for on a device of ``device_type`` ("cpu" or "cuda").

    ============  ==========================  ==================
    requested     cuda                        cpu
    ============  ==========================  ==================
    auto          bf16 if supported, else     fp32
                  fp16 with a GradScaler
    fp32          fp32                        fp32
    bf16          bf16 (error if unsupported) bf16 (CPU autocast)
    fp16          fp16 with a GradScaler      error
    ============  ==========================  ==================
    """
    check_precision(field, requested)
    if requested == "auto":
        requested = "fp32" if device_type != "cuda" else "bf16" if bf16_supported else "fp16"
    if requested == "bf16" and device_type == "cuda" and not bf16_supported:
        raise SpecError(field, "must be supported by the GPU: bf16 was asked but torch.cuda.is_bf16_supported() is False; use auto or fp16", requested)
    if requested == "fp16" and device_type != "cuda":
        raise SpecError(field, f"must be fp32 or bf16 on {device_type} (fp16 needs CUDA)", requested)
    return PrecisionPolicy(requested, _DTYPES[requested], requested == "fp16")


def resolve_precision(requested: str, device: torch.device, *, field: str = "TrainConfig.precision") -> PrecisionPolicy:
    """``precision_policy`` for ``device``, asking torch whether it supports bf16."""
    supported = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return precision_policy(device.type, requested, supported, field=field)


def autocast(device: torch.device, policy: PrecisionPolicy) -> contextlib.AbstractContextManager:
    """torch.autocast with the policy's dtype; nothing at all for fp32 (the fp32 path stays exactly as without it)."""
    if policy.dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=policy.dtype)


def using_device(device: torch.device) -> contextlib.AbstractContextManager:
    """Make ``device`` the current CUDA device for a while (streams, events, the caching allocator); nothing on the CPU."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


CUDNN_BENCHMARK = True  # cudnn autotuning when not deterministic; bench/gpu.py measures on against off (docs/gpu.md)
CUBLAS_WORKSPACE = ":4096:8"  # what deterministic cuBLAS needs (CUBLAS_WORKSPACE_CONFIG): 8 buffers of 4 MiB


def prepare_cuda_process() -> None:
    """Set what CUDA reads once per process, before it starts: ``CUBLAS_WORKSPACE_CONFIG`` (unless set).

    cuBLAS reads its workspace setting when the process first uses it, so a
    setting made inside a trial comes too late for every later one. A worker
    calls this first thing; the value suits deterministic and fast kernels alike.
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)


@contextlib.contextmanager
def full_fp32() -> Iterator[None]:
    """fp32 matrix products and convolutions really in fp32 on CUDA: TF32 off (cuBLAS and cuDNN), restored on exit.

    Only flags are touched (no GPU needed). bf16 and fp16 autocast are not
    affected; what autocast keeps in fp32 is then exact fp32 too.
    """
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    before = (matmul.allow_tf32, cudnn.allow_tf32)
    matmul.allow_tf32, cudnn.allow_tf32 = False, False
    try:
        yield
    finally:
        matmul.allow_tf32, cudnn.allow_tf32 = before


@contextlib.contextmanager
def cuda_backends(device: torch.device, *, deterministic: bool, benchmark: bool | None = None) -> Iterator[None]:
    """On CUDA: no TF32 (``full_fp32``), and cudnn autotuning for the proxy's fixed shapes or (``deterministic``) deterministic kernels only.

    ``benchmark`` (default ``CUDNN_BENCHMARK`` unless deterministic) turns
    cudnn autotuning on or off. Deterministic mode sets ``cudnn.deterministic``,
    turns autotuning off and asks torch for deterministic algorithms
    (``warn_only``: an op without a deterministic CUDA kernel warns instead of
    failing), with the cuBLAS workspace setting that needs (``prepare_cuda_process``;
    a worker sets it at its start). Everything is restored on exit. No effect on the CPU.
    """
    if device.type != "cuda":
        yield
        return
    cudnn = torch.backends.cudnn
    before = (cudnn.benchmark, cudnn.deterministic, torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    cudnn.benchmark = (CUDNN_BENCHMARK if benchmark is None else benchmark) and not deterministic
    cudnn.deterministic = deterministic
    if deterministic:
        prepare_cuda_process()
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        with full_fp32():
            yield
    finally:
        cudnn.benchmark, cudnn.deterministic = before[0], before[1]
        torch.use_deterministic_algorithms(before[2], warn_only=before[3])


# ---------------------------------------------------------------- out of memory
class TrialOutOfMemory(MemoryError):
    """A trial ran out of (GPU) memory; the message starts "out of memory". Pickles (a single message argument)."""


def is_out_of_memory(err: BaseException) -> bool:
    """A CUDA out-of-memory: torch.cuda.OutOfMemoryError, or a RuntimeError saying "out of memory" (cuDNN, cuBLAS)."""
    if isinstance(err, TrialOutOfMemory):
        return False  # already translated
    return isinstance(err, torch.cuda.OutOfMemoryError) or (isinstance(err, RuntimeError) and "out of memory" in str(err).lower())


_CUDA_ERROR = re.compile(r"CUDA error|CUDNN_STATUS_|CUBLAS_STATUS_|device-side assert|illegal memory access|unspecified launch failure")


def is_cuda_error(err: BaseException) -> bool:
    """A CUDA error other than out of memory (device-side assert, illegal address, launch failure).

    After one the process's CUDA context is broken: every later kernel fails
    too, so the process must stop (its trial is interrupted, not failed).
    ``torch.AcceleratorError`` (torch >= 2.8), or a RuntimeError whose message names a CUDA error.
    """
    if is_out_of_memory(err) or isinstance(err, TrialOutOfMemory):
        return False
    accelerator = getattr(torch, "AcceleratorError", None)
    if accelerator is not None and isinstance(err, accelerator):
        return True
    return isinstance(err, RuntimeError) and bool(_CUDA_ERROR.search(str(err)))


def out_of_memory_message(err: BaseException, device: torch.device) -> str:
    """One line: "out of memory on cuda:0 (NVIDIA H200): CUDA out of memory. Tried to allocate ..."."""
    where = device_label(device) if device.type != "cuda" or torch.cuda.is_available() else str(device)
    first = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return f"out of memory on {where}: {first}"[:400]


def free_device_memory() -> None:
    """Collect garbage and hand cached CUDA blocks back (a no-op without CUDA)."""
    gc.collect()
    torch.cuda.empty_cache()


# ---------------------------------------------------------------- GPUs for workers and trials
def parse_gpus(text: str | Sequence[int] | None, *, device_count: int | None = None, field: str = "--gpus") -> tuple[int, ...] | None:
    """``--gpus 0,1,3`` as (0, 1, 3); None or "" (or "all") is None: every visible GPU.

    Indices are distinct, >= 0 and, when ``device_count`` is given, below it
    (they count the GPUs this process sees, i.e. after CUDA_VISIBLE_DEVICES).
    """
    if text is None or (isinstance(text, str) and text.strip() in ("", "all")):
        return None
    items: Sequence[Any] = [t.strip() for t in text.split(",")] if isinstance(text, str) else text
    gpus: list[int] = []
    for item in items:
        if isinstance(item, bool) or not (isinstance(item, int) or (isinstance(item, str) and item.isdigit())):
            raise SpecError(field, "must be GPU indices separated by commas, e.g. 0,1,3", text)
        gpus.append(int(item))
    if len(set(gpus)) != len(gpus):
        raise SpecError(field, "must not repeat a GPU", text)
    if device_count is not None and any(g >= device_count for g in gpus):
        raise SpecError(field, f"must name GPUs this machine has (torch.cuda.device_count() is {device_count})", text)
    return tuple(gpus)


def gpu_for_worker(worker: int, *, gpus: Sequence[int] | None, device_count: int) -> int | None:
    """The GPU index worker ``worker`` (0-based) trains on: ``gpus[worker % len(gpus)]``, or ``worker % device_count``.

    None when there is no GPU (``device_count`` 0 and no ``gpus``). Several
    workers per GPU (workers > GPUs) share them round-robin.
    """
    if isinstance(worker, bool) or not isinstance(worker, int) or worker < 0:
        raise SpecError("worker", "must be an integer >= 0", worker)
    if gpus:
        return int(gpus[worker % len(gpus)])
    if device_count <= 0:
        return None
    return worker % device_count


def check_gpus(
    text: str | Sequence[int] | None,
    requested: str,
    *,
    cuda_available: bool | None = None,
    device_count: int | None = None,
    field: str = "--gpus",
) -> tuple[int, ...] | None:
    """``--gpus`` for a search whose ``train.device`` is ``requested``: the GPU indices, or None when not given.

    One SpecError line when GPUs are named on a machine without CUDA, for a
    ``train.device`` that is not auto or cuda (cpu, or one GPU: cuda:N), or
    beyond ``device_count`` (see ``parse_gpus``).
    """
    if text is None or (isinstance(text, str) and text.strip() in ("", "all")):
        return None
    shown = text if isinstance(text, str) else ",".join(str(g) for g in text)
    available = torch.cuda.is_available() if cuda_available is None else cuda_available
    if not available:
        raise SpecError(field, "must be left out on a machine without CUDA (torch.cuda.is_available() is False: no GPU, or a CPU-only torch build)", shown)
    if requested not in ("auto", "cuda"):
        raise SpecError(field, f"must be left out when train.device is {requested} (it names the device already; use auto or cuda to spread workers over GPUs)", shown)
    count = torch.cuda.device_count() if device_count is None else device_count
    return parse_gpus(text, device_count=count, field=field)


def default_workers(
    requested: str,
    *,
    gpus: Sequence[int] | None,
    trials_per_gpu: int,
    cuda_available: bool | None = None,
    device_count: int | None = None,
) -> int:
    """How many local worker processes a search runs when ``--workers`` is not given.

    ``trials_per_gpu`` per GPU the workers train on: ``len(gpus)`` GPUs, else
    every visible one for ``train.device`` auto or cuda, one for cuda:N. One
    worker on the CPU (no CUDA, or ``train.device`` cpu): the CPU path is unchanged.
    """
    if requested == "cpu" or not (torch.cuda.is_available() if cuda_available is None else cuda_available):
        return 1
    if gpus:
        count = len(gpus)
    elif requested.startswith("cuda:"):
        count = 1
    else:
        count = torch.cuda.device_count() if device_count is None else device_count
    return max(1, count * trials_per_gpu)


def ray_gpu_ids() -> list[Any]:
    """``ray.get_gpu_ids()`` inside a Ray worker; [] outside Ray (or without it)."""
    try:
        import ray
    except ImportError:
        return []
    return list(ray.get_gpu_ids()) if ray.is_initialized() else []


def trial_device(
    requested: str = "auto",
    *,
    worker: int | None = None,
    gpus: Sequence[int] | None = None,
    ray_gpu_ids: Sequence[Any] | None = None,
    cuda_available: bool | None = None,
    device_count: int | None = None,
) -> str:
    """The ``train.device`` a process should use: "cpu", "cuda:N", or ``requested`` as it is.

    - ``requested`` "cpu" or "cuda:N" (explicit) is kept.
    - In a Ray trial (``ray_gpu_ids`` non-empty: ``ray.get_gpu_ids()``), Ray has set
      CUDA_VISIBLE_DEVICES to the trial's GPU(s), so the trial's GPU is cuda:0
      (several trials may share it: ``resources_per_trial: {gpu: 0.25}``).
    - A local worker ``worker`` gets ``cuda:{gpu_for_worker(worker, gpus, device_count)}``,
      indices counting the GPUs this process sees (after CUDA_VISIBLE_DEVICES).
    - Otherwise "auto" stays "auto" (resolved by ``resolve_device``), and "cuda" stays "cuda".
    """
    check_device("TrainConfig.device", requested)
    if requested == "cpu" or requested.startswith("cuda:"):
        return requested
    available = torch.cuda.is_available() if cuda_available is None else cuda_available
    if ray_gpu_ids:
        return "cuda:0"
    if not available:
        return "cpu" if requested == "auto" else requested  # "cuda" fails in resolve_device with its one line
    if worker is not None:
        count = torch.cuda.device_count() if device_count is None else device_count
        index = gpu_for_worker(worker, gpus=gpus, device_count=count)
        if index is not None:
            return f"cuda:{index}"
    return requested


# ---------------------------------------------------------------- clips on a device
_RESIDENT: OrderedDict[tuple[Any, str, str], ClipSet] = OrderedDict()  # (data config, split, device) -> clips on that device
_RESIDENT_SIZE = 4  # two tasks' train and val


def resident_clips(clips: ClipSet, device: torch.device, *, key: tuple[Any, str] | None) -> ClipSet:
    """``clips`` copied to ``device`` once per process and ``key`` (data config, split); later calls reuse the copy.

    Without a ``key`` the clips are copied and not kept.
    """
    if key is None:
        return ClipSet(clips=clips.clips.to(device), labels=clips.labels.to(device))
    full = (*key, str(device))
    moved = _RESIDENT.get(full)
    if moved is None or moved.clips.shape != clips.clips.shape:
        moved = ClipSet(clips=clips.clips.to(device), labels=clips.labels.to(device))
    _RESIDENT.pop(full, None)
    _RESIDENT[full] = moved
    while len(_RESIDENT) > _RESIDENT_SIZE:
        _RESIDENT.popitem(last=False)
    return moved


def clear_resident_clips() -> None:
    """Forget the clips kept on devices (and let CUDA reuse their memory)."""
    _RESIDENT.clear()


class DeviceClips:
    """The batches of a ClipSet on ``device``: ``batch(index)`` -> (normalized clips, labels) there.

    On the CPU this is ``ClipSet.batch`` itself. On CUDA, ``resident`` clips
    (the synthetic task: small, generated in memory) are moved to the GPU once
    per process and data config (``key``) and indexed and normalized there;
    other clips (a video folder's memory-mapped uint8 cache) are gathered on
    the CPU, pinned, copied with ``non_blocking`` and normalized on the GPU.
    """

    def __init__(self, clips: ClipSet, device: torch.device, *, resident: bool, key: tuple[Any, str] | None = None) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self.resident = self.cuda and resident
        self.clips = resident_clips(clips, device, key=key) if self.resident else clips

    def __len__(self) -> int:
        return len(self.clips)

    def epoch_order(self, order: torch.Tensor) -> torch.Tensor:
        """An epoch's shuffle order (a CPU permutation) where ``batch`` indexes with it: copied once per epoch, pinned, to the device the clips live on.

        The order is drawn on the CPU (the same batches on every device); resident
        clips then take their per-step indices from a slice already on the GPU.
        """
        if not self.resident:
            return order
        return order.pin_memory().to(self.device, non_blocking=True)

    def batch(self, index: torch.Tensor | slice) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.cuda:
            return self.clips.batch(index)
        if self.resident:
            if isinstance(index, torch.Tensor):
                index = index.to(self.device, non_blocking=True)
            return normalize(self.clips.clips[index]), self.clips.labels[index]
        x = self.clips.clips[index].pin_memory().to(self.device, non_blocking=True)
        y = self.clips.labels[index].pin_memory().to(self.device, non_blocking=True)
        return normalize(x), y
