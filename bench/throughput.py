"""Trials per minute with 1 vs 2 trials in parallel, on the same task, side by side.

    python bench/throughput.py                    # local backend: --workers 1 vs --workers 2
    python bench/throughput.py --backend ray      # ray backend: 1 vs 2 concurrent trials on a local Ray
    python bench/throughput.py --threads 1             # one torch thread per trial in both settings
    python bench/throughput.py --trials 12 --clip 8 32 32 --train-size 256

Each setting runs the same search config (same space, data, training, seed)
from scratch in a temporary directory, through the CLI, and is timed from
start to finish (process start-up and the data generation included).
Throughput counts trained trials only (a particle identical to one already
scored is reused without training, and would flatter the number).

Overhead is what the search costs beyond training (``duration_s``, summed
over trained trials). ``overhead s/trial`` spreads all of it over the
finished trials: ``(wall x parallel - training seconds) / trials``. It is
split into the fixed part, ``start s`` (the command's start to its first
trial: imports, Ray's start, opening the study) plus ``end s`` (its last
trial to its exit: writing trials.csv and the dashboard, Ray's shutdown),
and ``steady s/trial``: from the first trial's start to the last one's end,
the slot-seconds not spent training, per trial (sampling, building, cost
counting, the study's writes, scheduling; a Ray actor's start and a
worker's first data and imports fall in here too).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml


def config(args: argparse.Namespace, output_dir: Path) -> dict:
    return {
        "name": "bench",
        "seed": 0,
        "output_dir": str(output_dir),
        "search": {"sampler": "random", "trials": args.trials, "backend": args.backend},
        "space": {
            "factorization": ["r2plus1d", "full", "csn_ip"],
            "wiring": ["residual", "bottleneck"],
            "temporal_kernel": [3, 5],
            "activation": ["relu", "silu"],
            "squeeze_excite": [0.0, 0.25],
        },
        "network": {"stem_channels": 8, "widths": [16, 32], "depths": [1, 1], "temporal_strides": [1, 1], "spatial_strides": [1, 2]},
        "data": {"num_classes": 4, "clip": list(args.clip), "train_size": args.train_size, "val_size": args.train_size // 2},
        "train": {"epochs": args.epochs, "batch_size": 16},
    }


def run(args: argparse.Namespace, parallel: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.yaml"
        path.write_text(yaml.safe_dump(config(args, Path(tmp) / "runs")))
        cmd = [sys.executable, "-m", "particle_nas", "search", str(path), "--no-progress", "--workers", str(parallel)]
        started, began = time.perf_counter(), pd.Timestamp.now()
        env = {**os.environ, **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {})}
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
        table = pd.read_csv(Path(tmp) / "runs" / "bench" / "trials.csv")
    return {"parallel": parallel, **figures(table, wall=wall, began=began, parallel=parallel)}


def figures(table: pd.DataFrame, *, wall: float, began: pd.Timestamp, parallel: int) -> dict:
    """Throughput and overhead of one run from its trials.csv, its wall time and start (see the module's docstring)."""
    trained = table[(table["state"] == "COMPLETE") & table["duplicate_of"].isna()]
    train_s = float(trained["duration_s"].sum())
    first, last = pd.to_datetime(table["datetime_start"]).min(), pd.to_datetime(table["datetime_complete"]).max()
    return {
        "trials": len(table),
        "trained": len(trained),
        "wall_s": wall,
        "trials_per_min": 60 * len(trained) / wall,
        "mean_train_s": float(trained["duration_s"].mean()),
        "overhead_s": (wall * parallel - train_s) / len(table),
        "start_s": (first - began).total_seconds(),
        "end_s": wall - (last - began).total_seconds(),
        "steady_s": ((last - first).total_seconds() * parallel - train_s) / len(table),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("optuna", "ray"), default="optuna")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--clip", type=int, nargs=3, default=(8, 32, 32))
    parser.add_argument("--train-size", type=int, default=192)
    parser.add_argument("--threads", type=int, help="torch threads per trial (OMP_NUM_THREADS); default: the machine's cores, split over local workers")
    args = parser.parse_args()
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    rows = [run(args, parallel) for parallel in (1, 2)]
    load += " before, " + " ".join(f"{x:.1f}" for x in os.getloadavg()) + " after"
    print(f"backend {args.backend}, {args.trials} trials, clip {list(args.clip)}, {args.train_size} training clips, {args.epochs} epoch(s); {os.cpu_count()} CPUs, threads per trial: {args.threads or 'default'}")
    print(f"load average (1, 5, 15 min): {load}")
    print(f"{'parallel':>8} {'trained':>8} {'wall s':>8} {'trials/min':>11} {'s/trial (train)':>16} {'overhead s/trial':>17} {'start s':>8} {'end s':>6} {'steady s/trial':>15}")
    for r in rows:
        print(
            f"{r['parallel']:>8} {r['trained']:>8} {r['wall_s']:>8.1f} {r['trials_per_min']:>11.2f} {r['mean_train_s']:>16.2f}"
            f" {r['overhead_s']:>17.2f} {r['start_s']:>8.1f} {r['end_s']:>6.1f} {r['steady_s']:>15.2f}"
        )
    print(f"speed-up 2 vs 1: {rows[1]['trials_per_min'] / rows[0]['trials_per_min']:.2f}x")


if __name__ == "__main__":
    main()
