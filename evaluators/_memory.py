"""Will a network's training fit in its device's memory? The analytic estimate against the free memory, before anything is built.

``space.training_memory`` estimates a training step from the spec alone;
``free_memory`` reads what the device has free; ``check_training_fits`` refuses
a network that would not fit with one ``TrialOutOfMemory`` line, so a trial
fails as a CUDA out-of-memory does, but before a tensor is allocated.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from particle_nas.space import NetworkSpec, TrainingMemory, training_memory

from ._device import PrecisionPolicy, TrialOutOfMemory, device_label
from ._registry import human
from ._train import TrainConfig

ESTIMATED = "out of memory (estimated)"  # how a refusal's message (and so its trial's fail_reason) begins
_CGROUP = Path("/sys/fs/cgroup")  # cgroup v2: memory.max and memory.current of this process's group


def optimizer_states(config: TrainConfig) -> int:
    """Parameter-sized tensors ``config``'s optimizer keeps: AdamW's two moments, SGD's momentum buffer (none without momentum)."""
    if config.optimizer == "adamw":
        return 2
    return 1 if config.momentum > 0 else 0


def _meminfo_available(path: Path = Path("/proc/meminfo")) -> int | None:
    try:
        for line in path.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def _cgroup_left(root: Path = _CGROUP) -> int | None:
    try:
        limit = (root / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int((root / "memory.current").read_text()))
    except (OSError, ValueError):
        return None


def free_memory(device: torch.device) -> int | None:
    """Bytes a new trial may still take on ``device``; None when it cannot be read.

    CUDA: ``torch.cuda.mem_get_info``'s free bytes plus what this process's
    caching allocator holds unused. CPU: ``MemAvailable`` of /proc/meminfo (or
    the free physical pages), or what this process's cgroup may still take when less.
    """
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    sizes = [n for n in (_meminfo_available(), _cgroup_left()) if n is not None]
    return min(sizes) if sizes else None


def check_training_fits(
    spec: NetworkSpec, *, device: torch.device, policy: PrecisionPolicy, batch_size: int, optimizer_states: int, free: int | None = None
) -> TrainingMemory:
    """The estimate of training ``spec`` at ``batch_size`` in ``policy``'s precision; ``TrialOutOfMemory`` when it exceeds ``free``.

    ``free`` defaults to ``free_memory(device)`` (no check when that cannot be
    read). The message is one line, e.g. for the default network on a 1024^3
    clip: "out of memory (estimated) on cpu: training must fit in the free
    memory, but the network needs about 8.67 TB (activations 8.67 TB at batch
    16 in fp32; weights, gradients and optimizer state 4.52 MB) and 22.6 GB are free".
    """
    memory = training_memory(spec, batch_size=batch_size, precision=policy.name, optimizer_states=optimizer_states)
    available = free_memory(device) if free is None else free
    if available is not None and memory.total > available:
        raise TrialOutOfMemory(
            f"{ESTIMATED} on {device_label(device)}: training must fit in the free memory, but the network needs about {human(memory.total, 'B')} "
            f"(activations {human(memory.activations, 'B')} at batch {memory.batch_size} in {memory.precision}; "
            f"weights, gradients and optimizer state {human(memory.weights, 'B')}) and {human(available, 'B')} are free"
        )
    return memory
