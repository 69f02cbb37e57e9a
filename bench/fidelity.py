"""Proxy fidelity: does the short proxy budget rank particles like a 5x longer one? And the zero-cost proxies?

    python bench/fidelity.py --workers 2 --threads 1           # 20 particles, 5 vs 25 epochs (the default budget), 2 at a time
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
import concurrent.futures
import csv
import dataclasses
import itertools
import math
import multiprocessing
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


def _evaluators(args: argparse.Namespace) -> tuple[ProxyEvaluator, ProxyEvaluator]:
    data = SyntheticConfig(num_classes=args.num_classes, train_size=args.train_size, val_size=args.val_size, difficulty=args.difficulty, seed=args.seed)
    train = TrainConfig(epochs=args.short_epochs, seed=args.seed, threads=args.threads)
    short = ProxyEvaluator(data=data, train=train, evaluators=EvaluatorSettings(zero_cost=tuple(args.zero_cost)))
    long = ProxyEvaluator(data=data, train=dataclasses.replace(train, epochs=args.short_epochs * args.long_factor))
    return short, long


def _score(args: argparse.Namespace, particle) -> dict:
    """One particle: zero-cost scores and the short budget, then the long budget from the same initial weights."""
    short, long = _evaluators(args)
    spec = short.network_spec(particle=particle, **NETWORK)
    s = short.evaluate(spec, seed=args.seed).to_dict()
    lo = long.evaluate(spec, seed=args.seed).to_dict()
    name = f"{particle.factorization}/{particle.wiring}/kt{particle.temporal_kernel}/e{particle.expansion:g}/se{particle.squeeze_excite:g}/{particle.activation}/p{particle.prune_ratio:g}"
    return {"particle": name, "flops": s["flops"], "short": s["accuracy"], "long": lo["accuracy"], **{z: s[z] for z in args.zero_cost}}


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
    parser.add_argument("--threads", type=int, default=None, help="torch threads per particle (default: torch's)")
    parser.add_argument("--workers", type=int, default=1, help="particles scored at once, each in its own process (use --threads 1)")
    parser.add_argument("--csv", default=None, help="write the per-particle table here, a row as each particle finishes")
    args = parser.parse_args()

    short, _ = _evaluators(args)
    particles = sample_particles(args.particles, args.seed)
    print(
        f"{len(particles)} particles, short {args.short_epochs} epoch(s) vs long {args.short_epochs * args.long_factor}, "
        f"{args.workers} worker(s), train {short.train}, data {short.data}",
        flush=True,
    )
    fields = ["index", "particle", "flops", "short", "long", *args.zero_cost]
    out = open(args.csv, "w", newline="") if args.csv else None
    writer = csv.DictWriter(out, fieldnames=fields) if out else None
    if writer:
        writer.writeheader()
    rows: dict[int, dict] = {}
    start = time.perf_counter()
    with concurrent.futures.ProcessPoolExecutor(max_workers=args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_score, args, particle): i for i, particle in enumerate(particles)}
        for future in concurrent.futures.as_completed(futures):
            i = futures[future]
            row = rows[i] = {"index": i, **future.result()}
            if writer:
                writer.writerow(row)
                out.flush()
            scores = " ".join(f"{z} {row[z]:.4g}" for z in args.zero_cost)
            print(f"[{len(rows)}/{len(particles)} {time.perf_counter() - start:6.0f} s] #{i:<3d} {row['particle']:48s} short {row['short']:.3f} long {row['long']:.3f} {scores}", flush=True)
    if out:
        out.close()
    ordered = [rows[i] for i in sorted(rows)]
    long_acc = [r["long"] for r in ordered]
    print(f"Kendall tau (short {args.short_epochs} ep vs long {args.short_epochs * args.long_factor} ep): {kendall_tau([r['short'] for r in ordered], long_acc):.3f}")
    for name in args.zero_cost:
        print(f"Kendall tau ({name} vs long): {kendall_tau([r[name] for r in ordered], long_acc):.3f}")
    print(f"Kendall tau (flops vs long): {kendall_tau([float(r['flops']) for r in ordered], long_acc):.3f}")
    print(f"{time.perf_counter() - start:.0f} s in all")


if __name__ == "__main__":
    main()
