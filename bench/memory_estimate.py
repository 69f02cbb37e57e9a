"""The training-memory estimate against the peak memory of a real training step on the CPU, per factorization x wiring.

    python bench/memory_estimate.py                          # every factorization x wiring, ReLU, clip 8x64x64, batch 16
    python bench/memory_estimate.py --activation silu --clip 16 112 112 --batch-size 8

Each network runs in a fresh process on one thread: built, one warm-up step at
batch 1 (the libraries' first-call allocations), then Linux's peak-RSS mark is
reset (/proc/self/clear_refs) and one AdamW step at the batch runs (forward,
backward, step). "step" is the peak RSS it reached above the RSS before it, in
which the weights and AdamW's state already are; the estimate compared with it
is ``training_memory(...).activations`` plus the gradients (4 bytes a parameter).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

from particle_nas.space import FACTORIZATIONS, WIRINGS

_STEP = """
import json, re, sys
import torch
from particle_nas.space import NetworkSpec, ParticleSpec, build_network, cost, training_memory

def rss_kb(field):
    return int(re.search(field + r":\\s+(\\d+)", open("/proc/self/status").read()).group(1))

factorization, wiring, activation, batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
clip = tuple(int(n) for n in sys.argv[5:8])
torch.set_num_threads(1)
particle = ParticleSpec(factorization=factorization, wiring=wiring, temporal_kernel=1 if factorization == "spatial_only" else 3, activation=activation)
spec = NetworkSpec(particle=particle, clip=clip)
model = build_network(spec, seed=0)
optimizer = torch.optim.AdamW(model.parameters())
x = torch.randn(batch, *spec.input_shape)
y = torch.randint(0, spec.num_classes, (batch,))

def step(n):
    optimizer.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(x[:n]), y[:n]).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)

step(1)
open("/proc/self/clear_refs", "w").write("5")  # the peak-RSS mark back to the RSS of now
before = rss_kb("VmRSS")
step(batch)
peak = rss_kb("VmHWM")
memory = training_memory(spec, batch_size=batch)
print(json.dumps({"step": (peak - before) * 1024, "estimate": memory.activations + 4 * cost(spec).params, "saved": memory.saved}))
"""


def measure(factorization: str, wiring: str, *, activation: str, batch: int, clip: tuple[int, int, int]) -> dict:
    command = [sys.executable, "-c", _STEP, factorization, wiring, activation, str(batch), *map(str, clip)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factorization", nargs="*", default=list(FACTORIZATIONS))
    parser.add_argument("--wiring", nargs="*", default=list(WIRINGS))
    parser.add_argument("--activation", default="relu", choices=("relu", "silu"))
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--clip", type=int, nargs=3, default=(8, 64, 64), metavar=("T", "H", "W"))
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    clip = tuple(args.clip)
    print(f"clip {'x'.join(map(str, clip))}, batch {args.batch_size}, {args.activation}, AdamW, fp32, 1 thread")
    print(f"{'factorization':<18} {'wiring':<11} {'estimate MB':>11} {'step MB':>8} {'ratio':>6}")
    rows = []
    for factorization in args.factorization:
        for wiring in args.wiring:
            row = {"factorization": factorization, "wiring": wiring, **measure(factorization, wiring, activation=args.activation, batch=args.batch_size, clip=clip)}
            row["ratio"] = row["estimate"] / row["step"]
            rows.append(row)
            print(f"{factorization:<18} {wiring:<11} {row['estimate'] / 1e6:>11.1f} {row['step'] / 1e6:>8.1f} {row['ratio']:>6.2f}", flush=True)
    ratios = [r["ratio"] for r in rows]
    print(f"estimate / step: {min(ratios):.2f} to {max(ratios):.2f} over {len(rows)} networks; {sum(r < 1 for r in ratios)} below 1")
    if args.out is not None:
        args.out.write_text(json.dumps({"clip": clip, "batch_size": args.batch_size, "activation": args.activation, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
