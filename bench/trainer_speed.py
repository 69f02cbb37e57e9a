"""Proxy trainer vs a bare hand-written PyTorch loop, side by side in one run.

    python bench/trainer_speed.py                      # quickstart network, default task, 1 epoch, 3 rounds
    python bench/trainer_speed.py --threads 1 --rounds 5 --memory-format channels_last_3d
    python bench/trainer_speed.py --threads 1 --factorization all       # every factorization, a summary table at the end

Both train the same network (same initial weights) on the same clips in the
same order with the same optimizer and schedule; only the training code
differs. Runs alternate (bare, trainer, bare, trainer, ...) so drifting load
hits both; the median time of each is reported, with the ratio. The
trainer's time includes its per-epoch validation, so the bare loop runs the
same validation pass. Also compares contiguous and channels_last_3d layouts
inside the trainer.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import time

import torch
from torch.nn import functional as F

from particle_nas.evaluators import SyntheticConfig, TrainConfig, evaluate_accuracy, make_synthetic_task, train_proxy
from particle_nas.evaluators._train import memory_format_for
from particle_nas.space import FACTORIZATIONS, NetworkSpec, ParticleSpec, build_network

NETWORK = dict(stem_channels=16, widths=(16, 32, 64), depths=(1, 1, 1), temporal_strides=(1, 1, 1), spatial_strides=(1, 2, 2))


def bare_loop(model, task, *, epochs: int, batch_size: int, lr: float, weight_decay: float, warmup_epochs: float, seed: int, memory_format) -> float:
    """The shortest honest training loop: AdamW, linear warmup then cosine per step, seeded shuffles, validation after each epoch."""
    start = time.perf_counter()
    model.to(memory_format=memory_format)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    n = len(task.train)
    steps = n // batch_size
    total = steps * epochs
    warm = round(warmup_epochs * steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / (warm + 1) if s < warm else 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warm) / max(1, total - warm))))
    )
    shuffle = torch.Generator().manual_seed(seed)
    clips = task.train.clips
    for _ in range(epochs):
        model.train()
        order = torch.randperm(n, generator=shuffle)
        for step in range(steps):
            idx = order[step * batch_size : (step + 1) * batch_size]
            x = clips[idx].float().mul_(1 / 127.5).sub_(1.0).contiguous(memory_format=memory_format)
            loss = F.cross_entropy(model(x), task.train.labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        evaluate_accuracy(model, task.val)
    return time.perf_counter() - start


def compare(factorization: str, task, data: SyntheticConfig, args: argparse.Namespace) -> dict[str, float]:
    """Median seconds of the bare loop and of the trainer in both layouts, for one factorization."""
    particle = ParticleSpec(factorization=factorization, temporal_kernel=1 if factorization == "spatial_only" else 3)
    spec = NetworkSpec(particle=particle, clip=data.clip, num_classes=data.num_classes, **NETWORK)
    config = TrainConfig(epochs=args.epochs, seed=0, threads=args.threads, memory_format=args.memory_format)
    other = "channels_last_3d" if args.memory_format == "contiguous" else "contiguous"
    times: dict[str, list[float]] = {"bare loop": [], "train_proxy": [], f"train_proxy ({other})": []}
    print(f"{spec.particle.factorization}/{spec.particle.wiring}, {len(task.train)} clips of {data.clip}, {args.epochs} epoch(s), "
          f"batch {config.batch_size}, {torch.get_num_threads()} threads, layout {args.memory_format}")
    for r in range(args.rounds):
        times["bare loop"].append(
            bare_loop(build_network(spec, seed=0), task, epochs=args.epochs, batch_size=config.batch_size, lr=config.lr,
                      weight_decay=config.weight_decay, warmup_epochs=config.warmup_epochs, seed=0, memory_format=memory_format_for(args.memory_format, torch.device("cpu")))
        )
        times["train_proxy"].append(train_proxy(build_network(spec, seed=0), task, config=config).duration_s)
        alt = dataclasses.replace(config, memory_format=other)
        times[f"train_proxy ({other})"].append(train_proxy(build_network(spec, seed=0), task, config=alt).duration_s)
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()), flush=True)
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, median in medians.items():
        print(f"{name:32s} median {median:7.2f} s   ratio to bare loop {median / medians['bare loop']:.3f}")
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads for both (default: leave as is)")
    parser.add_argument("--train-size", type=int, default=SyntheticConfig.train_size)
    parser.add_argument("--memory-format", default="contiguous", choices=["contiguous", "channels_last_3d"], help="the trainer's layout; it also runs the other")
    parser.add_argument("--factorization", nargs="+", default=["r2plus1d"], choices=[*FACTORIZATIONS, "all"], help="one or more, or all")
    args = parser.parse_args()

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    data = SyntheticConfig(train_size=args.train_size)
    task = make_synthetic_task(data)
    factorizations = list(FACTORIZATIONS) if "all" in args.factorization else args.factorization
    results = {f: compare(f, task, data, args) for f in factorizations}
    if len(results) > 1:
        names = list(next(iter(results.values())))
        print(f"\n{'factorization (residual)':24s} " + " ".join(f"{n:>28s}" for n in names) + "   (median s; ratio to bare loop)")
        for f, medians in results.items():
            print(f"{f:24s} " + " ".join(f"{medians[n]:>20.2f} ({medians[n] / medians['bare loop']:.3f})" for n in names))


if __name__ == "__main__":
    main()
