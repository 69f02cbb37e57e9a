"""Specs per second of the analytic cost model and of fvcore (build + trace), side by side.

    python bench/cost_model.py                 # 20,000 random specs analytic, 30 with fvcore
    python bench/cost_model.py --specs 5000 --fvcore-specs 10 --seed 1

Both run on one core in this process (torch threads set to 1). The fvcore
figures include building the module, as a search would have to. Every spec
counted by both is also checked to agree.
"""

from __future__ import annotations

import argparse
import math
import random
import time

import torch

from particle_nas.evaluators import count_cost
from particle_nas.space import FACTORIZATIONS, KERNELS, WIRINGS, NetworkSpec, ParticleSpec, build_network, cost
from particle_nas.space._spec import DEFAULT_EXPANSION, EXPANDING_WIRINGS


def random_spec(rng: random.Random) -> NetworkSpec:
    """A proxy-sized network with a random particle (the kind of spec a search scores)."""
    factorization, wiring = rng.choice(FACTORIZATIONS), rng.choice(WIRINGS)
    kt = 1 if factorization == "spatial_only" else rng.choice([k for k in KERNELS if k >= 3 or factorization != "temporal_shift"])
    particle = ParticleSpec(
        factorization=factorization,
        wiring=wiring,
        temporal_kernel=kt,
        spatial_kernel=rng.choice(KERNELS),
        expansion=rng.choice([0.25, 0.5, 2.0, 4.0]) if wiring in EXPANDING_WIRINGS else DEFAULT_EXPANSION[wiring],
        squeeze_excite=rng.choice([0.0, 0.25]),
        prune_ratio=rng.choice([0.0, 0.25, 0.5]),
    )
    stages = rng.randint(2, 4)
    return NetworkSpec(
        particle=particle,
        widths=tuple(rng.choice([8, 16, 24, 32, 48, 64]) for _ in range(stages)),
        depths=tuple(rng.randint(1, 3) for _ in range(stages)),
        temporal_strides=(1,) + tuple(rng.randint(1, 2) for _ in range(stages - 1)),
        spatial_strides=(1,) + (2,) * (stages - 1),
        clip=(16, 64, 64),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specs", type=int, default=20_000, help="specs counted by the analytic model")
    parser.add_argument("--fvcore-specs", type=int, default=30, help="specs built and counted by fvcore")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = random.Random(args.seed)
    specs = [random_spec(rng) for _ in range(args.specs)]

    start = time.perf_counter()
    analytic = [cost(spec) for spec in specs]
    analytic_rate = len(specs) / (time.perf_counter() - start)

    sample = specs[: args.fvcore_specs]
    count_cost(build_network(sample[0]), input_shape=sample[0].input_shape)  # warm up fvcore's imports
    start = time.perf_counter()
    measured = [count_cost(build_network(spec), input_shape=spec.input_shape) for spec in sample]
    fvcore_rate = len(sample) / (time.perf_counter() - start)
    mismatches = sum(a != m for a, m in zip(analytic, measured))

    mean_gflops = math.fsum(c.flops for c in analytic) / len(analytic) / 1e9
    print(f"random specs: clip 16x64x64, 2-4 stages, mean {mean_gflops:.3f} GFLOPs; torch threads 1")
    print(f"{'counter':<10} {'specs':>7} {'specs/s':>12}")
    print(f"{'analytic':<10} {len(specs):>7} {analytic_rate:>12,.0f}")
    print(f"{'fvcore':<10} {len(sample):>7} {fvcore_rate:>12,.2f}")
    print(f"analytic is {analytic_rate / fvcore_rate:,.0f}x faster; {len(sample) - mismatches}/{len(sample)} specs counted equal by both")
    if mismatches:
        raise SystemExit(f"{mismatches} specs differ between the analytic model and fvcore")


if __name__ == "__main__":
    main()
