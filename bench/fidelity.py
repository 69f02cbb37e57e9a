"""Proxy fidelity: does the short proxy budget rank particles like a 5x longer one? And the zero-cost proxies?

    python bench/fidelity.py                                   # 20 particles, 3 vs 15 epochs, default task
    python bench/fidelity.py --particles 8 --short-epochs 1 --long-factor 5 --train-size 512 --val-size 256

Samples distinct particles from the quickstart search space (seeded), builds
each into the quickstart proxy network, scores it with the zero-cost proxies
and the short budget, then trains it again from the same initial weights with
``--long-factor`` times the epochs. Prints one line per particle as it goes,
then Kendall's tau-b between the short and the long accuracies and between
each zero-cost score and the long accuracies. ``--csv`` writes the table.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import math
import time

from particle_nas.evaluators import ZERO_COST, EvaluatorSettings, ProxyEvaluator, SyntheticConfig, TrainConfig
from particle_nas.space import SearchSpace

SPACE = {  # the space of examples/quickstart.yaml
    "factorization": ["full", "r2plus1d", "csn_ip", "csn_ir", "spatial_only", "temporal_shift"],
    "wiring": ["plain", "residual", "bottleneck", "inverted"],
    "temporal_kernel": [3, 5],
    "spatial_kernel": [3],
    "expansion": [0.5, 1.0, 2.0],
    "squeeze_excite": [0.0, 0.25],
    "activation": ["relu", "silu"],
    "prune_ratio": [0.0, 0.25, 0.5],
}
NETWORK = dict(stem_channels=16, widths=(16, 32, 64), depths=(1, 1, 1), temporal_strides=(1, 1, 1), spatial_strides=(1, 2, 2))


def kendall_tau(a: list[float], b: list[float]) -> float:
    """Kendall's tau-b (ties in either ranking handled), in [-1, 1]; nan when a ranking is constant."""
    concordant = discordant = ties_a = ties_b = 0
    for i, j in itertools.combinations(range(len(a)), 2):
        da, db = a[i] - a[j], b[i] - b[j]
        if da == 0 and db == 0:
            continue
        if da == 0:
            ties_a += 1
        elif db == 0:
            ties_b += 1
        elif (da > 0) == (db > 0):
            concordant += 1
        else:
            discordant += 1
    denominator = math.sqrt((concordant + discordant + ties_a) * (concordant + discordant + ties_b))
    return (concordant - discordant) / denominator if denominator else math.nan


def sample_particles(count: int, seed: int):
    import random

    space = SearchSpace.from_dict(SPACE)
    rng = random.Random(seed)
    seen, particles = set(), []
    for _ in range(100 * count):
        particle = space.sample(lambda axis: rng.choice(axis.values()))
        if particle not in seen:
            seen.add(particle)
            particles.append(particle)
        if len(particles) == count:
            break
    return particles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--particles", type=int, default=20)
    parser.add_argument("--short-epochs", type=int, default=TrainConfig.epochs)
    parser.add_argument("--long-factor", type=int, default=5)
    parser.add_argument("--difficulty", type=float, default=SyntheticConfig.difficulty)
    parser.add_argument("--num-classes", type=int, default=SyntheticConfig.num_classes)
    parser.add_argument("--train-size", type=int, default=SyntheticConfig.train_size)
    parser.add_argument("--val-size", type=int, default=SyntheticConfig.val_size)
    parser.add_argument("--zero-cost", nargs="*", default=list(ZERO_COST), choices=list(ZERO_COST))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--csv", default=None, help="write the per-particle table here")
    args = parser.parse_args()

    data = SyntheticConfig(num_classes=args.num_classes, train_size=args.train_size, val_size=args.val_size, difficulty=args.difficulty, seed=args.seed)
    short = ProxyEvaluator(
        data=data,
        train=TrainConfig(epochs=args.short_epochs, seed=args.seed, threads=args.threads),
        evaluators=EvaluatorSettings(zero_cost=tuple(args.zero_cost)),
    )
    long = ProxyEvaluator(data=data, train=TrainConfig(epochs=args.short_epochs * args.long_factor, seed=args.seed, threads=args.threads))
    particles = sample_particles(args.particles, args.seed)
    print(f"{len(particles)} particles, short {args.short_epochs} epoch(s) vs long {args.short_epochs * args.long_factor}, data {data}", flush=True)
    rows = []
    start = time.perf_counter()
    for i, particle in enumerate(particles):
        spec = short.network_spec(particle=particle, **NETWORK)
        s = short.evaluate(spec, seed=args.seed).to_dict()
        lo = long.evaluate(spec, seed=args.seed).to_dict()
        row = {"particle": f"{particle.factorization}/{particle.wiring}/kt{particle.temporal_kernel}/e{particle.expansion:g}/se{particle.squeeze_excite:g}/{particle.activation}/p{particle.prune_ratio:g}",
               "flops": s["flops"], "short": s["accuracy"], "long": lo["accuracy"], **{name: s[name] for name in args.zero_cost}}
        rows.append(row)
        scores = " ".join(f"{name} {row[name]:.4g}" for name in args.zero_cost)
        print(f"[{i + 1}/{len(particles)} {time.perf_counter() - start:6.0f} s] {row['particle']:48s} short {row['short']:.3f} long {row['long']:.3f} {scores}", flush=True)
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    long_acc = [r["long"] for r in rows]
    print(f"Kendall tau (short {args.short_epochs} ep vs long {args.short_epochs * args.long_factor} ep): {kendall_tau([r['short'] for r in rows], long_acc):.3f}")
    for name in args.zero_cost:
        print(f"Kendall tau ({name} vs long): {kendall_tau([r[name] for r in rows], long_acc):.3f}")
    print(f"Kendall tau (flops vs long): {kendall_tau([float(r['flops']) for r in rows], long_acc):.3f}")


if __name__ == "__main__":
    main()
