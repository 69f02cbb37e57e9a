"""Training samples/s with 2 processes (torchrun, DDP over gloo) against 1, on the CPU, side by side.

    python bench/distributed.py                           # r2plus1d/residual, quickstart widths, 2 repeats of each
    python bench/distributed.py --particle csn_ir/bottleneck --repeats 3 --steps 40

Each setting trains the same network (``--particle`` in the quickstart's
proxy network, clip 8x32x32) on the same synthetic clips with
``train_proxy``: 1 process (``--threads`` threads), then 2 processes started
by ``python -m torch.distributed.run --standalone --nproc-per-node 2`` (each
``--threads`` threads, DistributedDataParallel over gloo, each on its
DistributedSampler shard, ``--batch-size`` clips per process and step, as
``particle-nas finetune`` trains under torchrun). Samples/s is training
clips seen by all processes per second of rank 0's training (process start-up,
data generation and the tiny validation set excluded: ``TrainResult.duration_s``
minus validation is not separable, so validation is 8 clips). Prints one
markdown table with the ratio, the machine and the load average, and the
CPU share each process got (its CPU seconds over its wall seconds: about 1.0
on an idle core, less when other work holds the cores).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

NETWORK = dict(stem_channels=16, widths=(16, 32, 64), depths=(1, 1, 1), temporal_strides=(1, 1, 1), spatial_strides=(1, 2, 2), clip=(8, 32, 32), num_classes=8)


def worker(args: argparse.Namespace) -> None:
    """One training process (torchrun's environment, or none for one process): prints one JSON line on rank 0."""
    from particle_nas.evaluators import SyntheticConfig, TrainConfig, close_distributed, gather_objects, init_distributed, make_synthetic_task, train_proxy
    from particle_nas.space import NetworkSpec, ParticleSpec, build_network

    torch.set_num_threads(args.threads)
    distributed = init_distributed(torch.device("cpu"))
    world = 1 if distributed is None else distributed.world_size
    factorization, wiring = args.particle.split("/")
    network = NetworkSpec(particle=ParticleSpec(factorization=factorization, wiring=wiring), **NETWORK)
    samples = args.steps * args.batch_size * 2  # clips per epoch over every process: the same total in both settings
    task = make_synthetic_task(SyntheticConfig(num_classes=8, clip=network.clip, train_size=samples, val_size=8, seed=0))
    model = build_network(network, seed=0)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size * 2 // world, lr=0.01, warmup_epochs=0, threads=args.threads, device="cpu")
    start, cpu = time.perf_counter(), time.process_time()
    result = train_proxy(model, task, config=config, distributed=distributed)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    share = cpu / seconds  # of one core: what this process got (about 1 on an idle core; less when others hold the cores)
    shares = [share] if distributed is None else gather_objects(share)
    if distributed is None or distributed.is_main:
        print(json.dumps({"processes": world, "samples": samples * args.epochs, "seconds": seconds, "samples_per_s": samples * args.epochs / seconds, "cpu_share": shares, "loss": result.train_loss}), flush=True)
    close_distributed()


def run(processes: int, args: argparse.Namespace) -> dict:
    me = [str(Path(__file__).resolve()), "--worker", "--particle", args.particle, "--threads", str(args.threads), "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--epochs", str(args.epochs)]
    launch = [sys.executable] if processes == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    out = subprocess.run([*launch, *me], capture_output=True, text=True, env=env, check=True).stdout
    return json.loads([line for line in out.splitlines() if line.startswith("{")][-1])


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--particle", default="r2plus1d/residual", help="factorization/wiring")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--steps", type=int, default=24, help="steps per epoch of the 2-process setting (the 1-process one takes as many clips in batches twice as big)")
    parser.add_argument("--batch-size", type=int, default=8, help="clips per process and step with 2 processes (1 process: twice that per step)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="runs of each setting, alternating")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return []
    load = lambda: " ".join(f"{x:.2f}" for x in os.getloadavg())  # noqa: E731
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; {args.particle}, {args.threads} thread(s) per process; load average before: {load()}")
    results: dict[int, list[dict]] = {1: [], 2: []}
    for _ in range(args.repeats):
        for processes in (1, 2):
            results[processes].append(run(processes, args))
    best = {p: max(r["samples_per_s"] for r in rows) for p, rows in results.items()}
    print("| processes | samples | samples/s (each run) | best samples/s | CPU share of each process (each run) | last epoch's loss |")
    print("| --- | --- | --- | --- | --- | --- |")
    for p, rows in results.items():
        each = " / ".join(f"{r['samples_per_s']:.1f}" for r in rows)
        shares = " / ".join(",".join(f"{v:.2f}" for v in r["cpu_share"]) for r in rows)
        print(f"| {p} | {rows[0]['samples']} | {each} | {best[p]:.1f} | {shares} | {rows[-1]['loss'][-1]:.3f} |")
    print(f"2 processes / 1 process: {best[2] / best[1]:.2f}x (best of {args.repeats}); load average after: {load()}")
    return [r for rows in results.values() for r in rows]


if __name__ == "__main__":
    main()
