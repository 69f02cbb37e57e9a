"""Training as N processes with torch.distributed: which process this is, the process group, the data shard of each.

The processes are started by ``torchrun`` (``python -m torch.distributed.run``,
which ships with torch): one machine (``--nproc-per-node N``) or several
(``--nnodes M --rdzv-backend c10d --rdzv-endpoint HOST:PORT``). It sets
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address in each
process's environment; ``from_environment`` reads them (a plain
``particle-nas finetune`` has none, or ``WORLD_SIZE=1``: one process, as before).

The process group uses gloo on the CPU and NCCL on CUDA (one GPU per process:
``cuda:LOCAL_RANK``). The model trains wrapped in ``DistributedDataParallel``
(gradients averaged over the processes at every step); each process takes its
shard of every epoch from ``torch.utils.data.DistributedSampler`` (shuffled
with the run's seed and the epoch, ``drop_last``: the shards never overlap).
``train.batch_size`` is per process, as in DDP: a step sees ``N x batch_size`` clips.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Distributed:
    """This process's place among the training processes torchrun started."""

    rank: int  # 0 .. world_size - 1 over every machine; rank 0 writes checkpoints, the progress bar and the report
    world_size: int
    local_rank: int  # on this machine: the GPU this process uses
    backend: str  # gloo (CPU) or nccl (CUDA)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_environment(environ: dict[str, str] | None = None) -> tuple[int, int, int] | None:
    """(rank, world_size, local_rank) that torchrun set, or None for one process (no WORLD_SIZE, or 1)."""
    env = os.environ if environ is None else environ
    world = int(env.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return None
    rank = int(env["RANK"])
    return rank, world, int(env.get("LOCAL_RANK", rank))


def init_distributed(device: torch.device) -> Distributed | None:
    """Join the process group torchrun set up (gloo on the CPU, NCCL on CUDA); None when this is the only process."""
    found = from_environment()
    if found is None:
        return None
    import torch.distributed as dist

    rank, world, local = found
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(local)  # NCCL's communicators and all_gather_object use the current device: this process's GPU
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return Distributed(rank=rank, world_size=world, local_rank=local, backend=backend)


def close_distributed() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def shard_indices(n: int, *, rank: int, world_size: int, seed: int, epoch: int) -> torch.Tensor:
    """The training clips process ``rank`` takes in ``epoch`` (1-based): DistributedSampler's shard, shuffled, without overlap."""
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(range(n), num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True)
    sampler.set_epoch(epoch)
    return torch.tensor(list(sampler), dtype=torch.int64)


def all_mean(value: float, device: torch.device) -> float:
    """The mean of ``value`` over the processes."""
    import torch.distributed as dist

    tensor = torch.tensor([float(value)], dtype=torch.float64 if device.type == "cpu" else torch.float32, device=device)
    dist.all_reduce(tensor)
    return tensor.item() / dist.get_world_size()


def gather_objects(value: object) -> list[object]:
    """``value`` of every process, in rank order (on every process)."""
    import torch.distributed as dist

    out: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out
