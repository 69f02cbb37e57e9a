"""GPU bench: the quickstart on CUDA, trials per GPU, GPU vs CPU per trial, and GPU latency, in one table.

    python bench/gpu.py --out bench-gpu/                     # everything, about 8 minutes on one H200 (budgeted, not yet run)
    python bench/gpu.py --out bench-gpu/ --skip-quickstart --concurrency 1 2 4

Needs a CUDA GPU: without one it says so on one line and exits 2. Steps:

1. quickstart: ``particle-nas search examples/quickstart.yaml`` with ``train.device: cuda``
   (a copy of the config under --out), timed from the outside: wall time and seconds per trial.
2. scaling: 1, 2, 4, 8 proxy trainings at once, as separate processes on one GPU (each trains
   ``--per-process`` particles); trials per minute over the span from the first training's start
   to the last one's end (process start and CUDA initialization left out; they are reported too).
3. gpu vs cpu: the same ``--cpu-trials`` particles trained on the GPU and on the CPU
   (``--cpu-threads`` torch threads): seconds per trial and the ratio.
4. latency: batch-1 and training-batch forward latency on the GPU (CUDA events), in the
   training precision, for the bench particles.

Prints one table and writes it as ``gpu.json`` (with the machine) and ``gpu.csv`` to --out.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "examples" / "quickstart.yaml"
# Particles of the quickstart space, the same in every step (different factorizations and wirings).
PARTICLES: tuple[dict[str, Any], ...] = (
    {"factorization": "r2plus1d", "wiring": "residual"},
    {"factorization": "csn_ip", "wiring": "bottleneck", "expansion": 1.0},
    {"factorization": "temporal_shift", "wiring": "residual", "activation": "silu"},
    {"factorization": "full", "wiring": "inverted", "expansion": 2.0, "squeeze_excite": 0.25},
)
FIELDS = ("step", "case", "metric", "value", "unit")


def no_cuda_message() -> str | None:
    """None when CUDA is there, else the one line the bench exits with."""
    import torch

    if torch.cuda.is_available():
        return None
    build = "a CPU-only torch build" if torch.version.cuda is None else f"torch built for CUDA {torch.version.cuda}, but no GPU visible"
    return f"bench/gpu.py: error: a CUDA GPU is needed, but torch.cuda.is_available() is False ({build}); run it on a GPU machine."


def row(step: str, case: str, metric: str, value: float | str, unit: str = "") -> dict[str, Any]:
    return {"step": step, "case": case, "metric": metric, "value": round(value, 4) if isinstance(value, float) else value, "unit": unit}


def throughput(spans: list[tuple[float, float]], *, trials: int) -> float:
    """Trials per minute over the union span of the (start, end) training windows of concurrent processes."""
    if not spans or trials <= 0:
        raise ValueError(f"spans and trials must be non-empty and positive, but got {len(spans)} spans and {trials} trials.")
    first, last = min(s for s, _ in spans), max(e for _, e in spans)
    if last <= first:
        raise ValueError(f"the spans must end after they start, but got {spans}.")
    return 60.0 * trials / (last - first)


def format_table(rows: list[dict[str, Any]]) -> str:
    """The rows as an aligned text table with a header."""
    cells = [[str(r[f]) for f in FIELDS] for r in rows]
    widths = [max([len(f), *(len(c[i]) for c in cells)]) for i, f in enumerate(FIELDS)]
    line = lambda values: "  ".join(v.ljust(w) for v, w in zip(values, widths)).rstrip()  # noqa: E731
    return "\n".join([line(list(FIELDS)), line(["-" * w for w in widths]), *(line(c) for c in cells)])


# ---------------------------------------------------------------- pieces
def _config(epochs: int | None):
    from particle_nas.config import load_config

    config = load_config(QUICKSTART)
    if epochs is not None:
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, epochs=epochs))
    return config


def _evaluator(config, device: str, *, latency: bool = False):
    from particle_nas.evaluators import EvaluatorSettings, ProxyEvaluator

    settings = EvaluatorSettings(train=not latency, latency=latency)
    return ProxyEvaluator(data=config.data, train=dataclasses.replace(config.train, device=device), evaluators=settings)


def _spec(config, index: int):
    from particle_nas.space import ParticleSpec

    return config.network.replace(particle=ParticleSpec(**PARTICLES[index % len(PARTICLES)]))


def train_particles(indices: list[int], *, device: str, epochs: int | None) -> list[dict[str, Any]]:
    """Evaluate the bench particles ``indices`` on ``device``: per trial, its wall start and end (time.time) and the record."""
    config = _config(epochs)
    evaluator = _evaluator(config, device)
    evaluator.task()  # data generated before any clock starts
    out = []
    for i in indices:
        start = time.time()
        record = evaluator.evaluate(_spec(config, i), seed=0).to_dict()
        out.append({"particle": i, "start": start, "end": time.time(), "accuracy": record["accuracy"], "device": record["device"], "precision": record["precision"]})
    return out


def quickstart(out: Path) -> list[dict[str, Any]]:
    import yaml

    document = yaml.safe_load(QUICKSTART.read_text())
    document["name"] = "quickstart-gpu"
    document["train"] = {**(document.get("train") or {}), "device": "cuda"}
    path = out / "quickstart-gpu.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    trials = int(document["search"]["trials"])
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "particle_nas", "search", str(path), "--output-dir", str(out / "runs"), "--no-progress"], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode not in (0, 3):
        raise RuntimeError(f"the quickstart search failed (exit {done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
    import pandas as pd

    table = pd.read_csv(out / "runs" / "quickstart-gpu" / "trials.csv")
    devices = ", ".join(sorted(table["device"].dropna().astype(str).unique()))
    precisions = ", ".join(sorted(table["precision"].dropna().astype(str).unique()))
    return [
        row("quickstart", f"{trials} trials, {devices} {precisions}", "wall time", wall, "s"),
        row("quickstart", f"{trials} trials", "per trial", wall / trials, "s"),
        row("quickstart", f"{trials} trials", "complete", int((table["state"] == "COMPLETE").sum()), "trials"),
    ]


def scaling(concurrency: list[int], *, per_process: int, epochs: int | None, device: str = "cuda") -> list[dict[str, Any]]:
    rows = []
    for n in concurrency:
        start = time.time()
        threads = str(max(1, (os.cpu_count() or 1) // n))
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", "--device", device, "--per-process", str(per_process)]
        if epochs is not None:
            command += ["--epochs", str(epochs)]
        env = {**os.environ, "OMP_NUM_THREADS": threads}
        procs = [subprocess.Popen([*command, "--first", str(p * per_process)], stdout=subprocess.PIPE, text=True, env=env) for p in range(n)]
        results = []
        for proc in procs:
            stdout, _ = proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"a scaling worker failed (exit {proc.returncode})")
            results += json.loads(stdout.strip().splitlines()[-1])
        wall = time.time() - start
        spans = [(r["start"], r["end"]) for r in results]
        rows.append(row("scaling", f"{n} process(es) on 1 GPU", "trials per minute", throughput(spans, trials=len(results)), "trials/min"))
        rows.append(row("scaling", f"{n} process(es) on 1 GPU", "per trial", statistics.median(e - s for s, e in spans), "s (median)"))
        rows.append(row("scaling", f"{n} process(es) on 1 GPU", "wall incl. start-up", wall, "s"))
    return rows


def gpu_vs_cpu(trials: int, *, threads: int, epochs: int | None, device: str = "cuda") -> list[dict[str, Any]]:
    import torch

    indices = list(range(trials))
    gpu = train_particles(indices, device=device, epochs=epochs)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        cpu = train_particles(indices, device="cpu", epochs=epochs)
    finally:
        torch.set_num_threads(before)
    rows = []
    for g, c in zip(gpu, cpu):
        name = "/".join(PARTICLES[g["particle"]][k] for k in ("factorization", "wiring"))
        g_s, c_s = g["end"] - g["start"], c["end"] - c["start"]
        rows.append(row("gpu vs cpu", f"{name} on {g['device']} {g['precision']}", "per trial", g_s, "s"))
        rows.append(row("gpu vs cpu", f"{name} on cpu ({threads} threads) fp32", "per trial", c_s, "s"))
        rows.append(row("gpu vs cpu", name, "cpu / gpu", c_s / g_s, "x"))
    return rows


def latency(*, epochs: int | None, device: str = "cuda") -> list[dict[str, Any]]:
    config = _config(epochs)
    evaluator = _evaluator(config, device, latency=True)
    rows = []
    for i in range(len(PARTICLES)):
        record = evaluator.evaluate(_spec(config, i), seed=0).to_dict()
        name = "/".join(PARTICLES[i][k] for k in ("factorization", "wiring"))
        case = f"{name} on {record['latency_device']} {record['precision']}"
        rows.append(row("latency", case, "batch 1", record["latency_ms"], "ms"))
        if "latency_batch_ms" in record:  # CUDA only
            rows.append(row("latency", case, f"batch {config.train.batch_size}", record["latency_batch_ms"], "ms"))
    return rows


def machine() -> dict[str, Any]:
    import torch

    return {
        "gpu": torch.cuda.get_device_name(0),
        "gpus": torch.cuda.device_count(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def write(out: Path, rows: list[dict[str, Any]], about: dict[str, Any]) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path, csv_path = out / "gpu.json", out / "gpu.csv"
    json_path.write_text(json.dumps({"machine": about, "rows": rows}, indent=2) + "\n")
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return json_path, csv_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="folder for gpu.json, gpu.csv and the quickstart run (required unless --worker)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8], help="proxy trainings at once on one GPU")
    parser.add_argument("--per-process", type=int, default=2, help="particles each scaling process trains")
    parser.add_argument("--cpu-trials", type=int, default=2, help="particles trained on both GPU and CPU")
    parser.add_argument("--cpu-threads", type=int, default=16, help="torch threads of the CPU trials")
    parser.add_argument("--epochs", type=int, default=None, help="proxy epochs of steps 2-4 (default: the quickstart's)")
    parser.add_argument("--skip-quickstart", action="store_true", help="leave out step 1")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # one scaling process: prints its trials as JSON
    parser.add_argument("--device", default="cuda", help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:  # started by step 2 on the device it names
        print(json.dumps(train_particles(list(range(args.first, args.first + args.per_process)), device=args.device, epochs=args.epochs)))
        return 0
    message = no_cuda_message()
    if message is not None:
        print(message, file=sys.stderr)
        return 2
    if args.out is None:
        parser.error("--out is required")
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    steps = [
        *([("quickstart", lambda: quickstart(args.out))] if not args.skip_quickstart else []),
        ("scaling", lambda: scaling(args.concurrency, per_process=args.per_process, epochs=args.epochs)),
        ("gpu vs cpu", lambda: gpu_vs_cpu(args.cpu_trials, threads=args.cpu_threads, epochs=args.epochs)),
        ("latency", lambda: latency(epochs=args.epochs)),
    ]
    for name, step in steps:
        start = time.perf_counter()
        rows += step()
        print(f"{name}: done in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
        write(args.out, rows, machine())  # what is measured so far survives a later step's failure or a time limit
    print(format_table(rows))
    json_path, csv_path = write(args.out, rows, machine())
    print(f"wrote {json_path} and {csv_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
