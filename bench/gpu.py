"""GPU bench: the quickstart on CUDA, trials per GPU, the CUDA settings to default to, GPU vs CPU per trial, and GPU latency.

    python bench/gpu.py --out bench-gpu/                     # everything, within --budget seconds (default 330) on one GPU
    python bench/gpu.py --out bench-gpu/ --skip-quickstart --concurrency 1 2 4
    python bench/gpu.py --out /tmp/dry --dry-run              # the same steps on the CPU at toy sizes (CI runs it)

Needs a CUDA GPU (or ``--dry-run``): without one it says so on one line and exits 2. Steps, each
a row group, in this order (the rows that choose defaults first); an error in a step becomes an
``error`` row and the next step runs:

1. scaling: 1, 2, 4, 8 proxy trainings at once, as separate processes on one GPU. Every process
   trains the same ``--per-process`` bench particles, after an untimed warm-up (CUDA context,
   cuDNN, its autotuning, the task on the GPU: one epoch of the first particle) and a start
   barrier; trials per minute over the span from the barrier's release to the last training's end.
2. settings: one process, the same particles, with one setting changed from the defaults each:
   ``cudnn.benchmark`` off, memory format ``channels_last_3d`` (and ``contiguous``, the CUDA
   default), fused AdamW: trials per minute beside the defaults' single process of step 1.
3. latency: batch-1 and training-batch forward latency on the GPU (CUDA events), in the
   training precision, for the bench particles.
4. gpu vs cpu: the same ``--cpu-trials`` particles trained on the GPU and on the CPU
   (``--cpu-threads`` torch threads): seconds per trial and the ratio.
5. quickstart: ``particle-nas search examples/quickstart.yaml`` with ``train.device: cuda``, timed
   from the outside, its run directory in a temporary folder (only the rows come back).

Every subprocess runs under a timeout, a step that would start past ``--budget`` is skipped (a
``skipped`` row), and ``gpu.json`` and ``gpu.csv`` are rewritten in --out after every step, so what
was measured survives a later failure or the machine's time limit.
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
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

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
# The settings step: one change from the defaults each (worker flags); the defaults' row is step 2's single process.
SETTINGS: dict[str, list[str]] = {
    "cudnn.benchmark off": ["--cudnn-benchmark", "off"],
    "memory format channels_last_3d": ["--memory-format", "channels_last_3d"],
    "memory format contiguous": ["--memory-format", "contiguous"],
    "fused AdamW": ["--fused-adamw"],
}
# --dry-run: toy sizes on the CPU, so the whole bench runs in CI in seconds.
DRY_DATA = {"train_size": 32, "val_size": 16, "clip": [4, 16, 16]}
DRY_NETWORK = {"stem_channels": 8, "widths": [8, 16], "depths": [1, 1], "temporal_strides": [1, 1], "spatial_strides": [1, 2]}


def no_cuda_message() -> str | None:
    """None when CUDA is there, else the one line the bench exits with."""
    import torch

    if torch.cuda.is_available():
        return None
    build = "a CPU-only torch build" if torch.version.cuda is None else f"torch built for CUDA {torch.version.cuda}, but no GPU visible"
    return f"bench/gpu.py: error: a CUDA GPU is needed, but torch.cuda.is_available() is False ({build}); run it on a GPU machine, or pass --dry-run."


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


# ---------------------------------------------------------------- what is trained
class Sizes(NamedTuple):
    """What every step trains: the quickstart's network and data, or --dry-run's toy ones; ``epochs`` None = the quickstart's."""

    dry_run: bool = False
    epochs: int | None = None

    def document(self) -> dict[str, Any]:
        """The quickstart config as a YAML document, shrunk for a dry run."""
        import yaml

        document = yaml.safe_load(QUICKSTART.read_text())
        if self.dry_run:
            document["data"] = {**document["data"], **DRY_DATA}
            document["network"] = {**document["network"], **DRY_NETWORK}
            document["search"] = {**document["search"], "trials": 2, "baselines": False, "sampler": "random"}
        train = {**(document.get("train") or {})}
        if self.epochs is not None or self.dry_run:
            train["epochs"] = self.epochs or 1
            train["warmup_epochs"] = 0.0
        document["train"] = train
        return document

    def config(self):
        from particle_nas.config import load_config

        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "bench.yaml"
            import yaml

            path.write_text(yaml.safe_dump(self.document(), sort_keys=False))
            return load_config(path)

    def flags(self) -> list[str]:
        return [*(["--dry-run"] if self.dry_run else []), *(["--epochs", str(self.epochs)] if self.epochs is not None else [])]


def _evaluator(config, device: str, *, latency: bool = False, memory_format: str | None = None):
    from particle_nas.evaluators import EvaluatorSettings, ProxyEvaluator

    train = dataclasses.replace(config.train, device=device, **({"memory_format": memory_format} if memory_format else {}))
    return ProxyEvaluator(data=config.data, train=train, evaluators=EvaluatorSettings(train=not latency, latency=latency))


def _spec(config, index: int):
    from particle_nas.space import ParticleSpec

    return config.network.replace(particle=ParticleSpec(**PARTICLES[index % len(PARTICLES)]))


def _name(index: int) -> str:
    particle = PARTICLES[index % len(PARTICLES)]
    return f"{particle['factorization']}/{particle['wiring']}"


def train_particles(indices: list[int], *, device: str, sizes: Sizes, memory_format: str | None = None, barrier: Callable[[], None] | None = None) -> list[dict[str, Any]]:
    """Evaluate the bench particles ``indices`` on ``device``: per trial, its wall start and end (time.time) and the record.

    First an untimed warm-up (the task on the device, CUDA context, cuDNN, its autotuning for
    these shapes: the first particle trained once), then ``barrier()`` (all processes start together).
    """
    config = sizes.config()
    evaluator = _evaluator(config, device, memory_format=memory_format)
    evaluator.warm_up()
    warm = dataclasses.replace(evaluator, train=dataclasses.replace(evaluator.train, epochs=1, warmup_epochs=0.0))
    warm.evaluate(_spec(config, indices[0]), seed=1)  # untimed, one epoch: what a worker pays once (CUDA, cuDNN, autotuning), before its first trial
    if barrier is not None:
        barrier()
    out = []
    for i in indices:
        start = time.time()
        record = evaluator.evaluate(_spec(config, i), seed=0).to_dict()
        out.append({"particle": i, "start": start, "end": time.time(), "accuracy": record["accuracy"], "device": record["device"], "precision": record["precision"]})
    return out


# ---------------------------------------------------------------- worker processes and their start barrier
def file_barrier(folder: Path, name: str) -> Callable[[], None]:
    """A worker's side of the start barrier: say ready (a file), then wait for the ``go`` file."""

    def wait() -> None:
        (folder / f"ready-{name}").touch()
        while not (folder / "go").exists():
            time.sleep(0.002)

    return wait


def run_workers(commands: list[list[str]], *, timeout: float, env: dict[str, str]) -> tuple[float, list[list[dict[str, Any]]]]:
    """Start ``commands`` (workers), release them together once all are warm, and collect what each printed.

    Returns the release time (time.time) and each worker's trials. Every wait has ``timeout``;
    a worker that fails or runs over stops the lot with one RuntimeError line.
    """
    with tempfile.TemporaryDirectory() as folder:
        sync = Path(folder)
        procs = [subprocess.Popen([*c, "--barrier", str(sync), "--name", str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for i, c in enumerate(commands)]
        deadline = time.monotonic() + timeout
        try:
            while sum(1 for _ in sync.glob("ready-*")) < len(procs):
                failed = [p for p in procs if p.poll() not in (None, 0)]
                if failed:
                    raise RuntimeError(f"a worker failed before the start (exit {failed[0].returncode}): {_last_line(failed[0].communicate()[1])}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the workers were not ready within {timeout:.0f} s")
                time.sleep(0.01)
            released = time.time()
            (sync / "go").touch()
            results = []
            for proc in procs:
                stdout, stderr = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
                if proc.returncode != 0:
                    raise RuntimeError(f"a worker failed (exit {proc.returncode}): {_last_line(stderr)}")
                results.append(json.loads(stdout.strip().splitlines()[-1]))
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    return released, results


def _last_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[-1][:300]


def _worker_command(*, device: str, sizes: Sizes, per_process: int, extra: list[str] = ()) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--worker", "--device", device, "--per-process", str(per_process), *sizes.flags(), *extra]


# ---------------------------------------------------------------- steps
def quickstart(*, device: str, sizes: Sizes, timeout: float) -> list[dict[str, Any]]:
    """The quickstart search on ``device``; its run directory lives in a temporary folder (only the rows are kept)."""
    import yaml

    document = sizes.document()
    document["name"] = "quickstart-gpu"
    document["train"] = {**document["train"], "device": device}
    trials = int(document["search"]["trials"])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "quickstart-gpu.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        start = time.perf_counter()
        command = [sys.executable, "-m", "particle_nas", "search", str(path), "--output-dir", str(Path(folder) / "runs"), "--no-progress"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        wall = time.perf_counter() - start
        if done.returncode not in (0, 3):
            raise RuntimeError(f"the quickstart search failed (exit {done.returncode}): {_last_line(done.stderr)}")
        import pandas as pd

        table = pd.read_csv(Path(folder) / "runs" / "quickstart-gpu" / "trials.csv")
    devices = ", ".join(sorted(table["device"].dropna().astype(str).unique()))
    precisions = ", ".join(sorted(table["precision"].dropna().astype(str).unique()))
    return [
        row("quickstart", f"{trials} trials, {devices} {precisions}", "wall time", wall, "s"),
        row("quickstart", f"{trials} trials", "per trial", wall / trials, "s"),
        row("quickstart", f"{trials} trials", "complete", int((table["state"] == "COMPLETE").sum()), "trials"),
    ]


def _timed_rows(step: str, case: str, released: float, results: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    trials = [t for r in results for t in r]
    spans = [(t["start"], t["end"]) for t in trials]
    return [
        row(step, case, "trials per minute", throughput([(released, max(e for _, e in spans))], trials=len(trials)), "trials/min"),
        row(step, case, "per trial", statistics.median(e - s for s, e in spans), "s (median)"),
    ]


def scaling(n: int, *, device: str, sizes: Sizes, per_process: int, timeout: float) -> list[dict[str, Any]]:
    """``n`` processes at once on one device, each training the same ``per_process`` particles."""
    threads = str(max(1, (os.cpu_count() or 1) // n))
    start = time.perf_counter()
    released, results = run_workers([_worker_command(device=device, sizes=sizes, per_process=per_process)] * n, timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": threads})
    case = f"{n} process(es) on 1 {'GPU' if device.startswith('cuda') else device}"
    return [*_timed_rows("scaling", case, released, results), row("scaling", case, "wall incl. start-up and warm-up", time.perf_counter() - start, "s")]


def setting(name: str, *, device: str, sizes: Sizes, per_process: int, timeout: float) -> list[dict[str, Any]]:
    """One process with one setting changed (see SETTINGS)."""
    released, results = run_workers([_worker_command(device=device, sizes=sizes, per_process=per_process, extra=SETTINGS[name])], timeout=timeout, env=dict(os.environ))
    return _timed_rows("settings", name, released, results)


def gpu_vs_cpu(trials: int, *, device: str, threads: int, sizes: Sizes) -> list[dict[str, Any]]:
    import torch

    indices = list(range(trials))
    gpu = train_particles(indices, device=device, sizes=sizes)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        cpu = train_particles(indices, device="cpu", sizes=sizes)
    finally:
        torch.set_num_threads(before)
    rows = []
    for g, c in zip(gpu, cpu):
        name = _name(g["particle"])
        g_s, c_s = g["end"] - g["start"], c["end"] - c["start"]
        rows.append(row("gpu vs cpu", f"{name} on {g['device']} {g['precision']}", "per trial", g_s, "s"))
        rows.append(row("gpu vs cpu", f"{name} on cpu ({threads} threads) fp32", "per trial", c_s, "s"))
        rows.append(row("gpu vs cpu", name, "cpu / gpu", c_s / g_s, "x"))
    return rows


def latency(*, device: str, sizes: Sizes) -> list[dict[str, Any]]:
    config = sizes.config()
    evaluator = _evaluator(config, device, latency=True)
    rows = []
    for i in range(len(PARTICLES)):
        record = evaluator.evaluate(_spec(config, i), seed=0).to_dict()
        case = f"{_name(i)} on {record['latency_device']} {record['precision']}"
        rows.append(row("latency", case, "batch 1", record["latency_ms"], "ms"))
        if "latency_batch_ms" in record:  # CUDA only
            rows.append(row("latency", case, f"batch {config.train.batch_size}", record["latency_batch_ms"], "ms"))
    return rows


def machine(device: str) -> dict[str, Any]:
    import torch

    cuda = device.startswith("cuda")
    return {
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "gpus": torch.cuda.device_count() if cuda else 0,
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


def run_steps(steps: list[tuple[str, Callable[[], list[dict[str, Any]]]]], *, out: Path, about: dict[str, Any], deadline: float) -> list[dict[str, Any]]:
    """Run ``steps`` in order, writing every row as soon as its step ends; an error or the deadline becomes a row, and the next step runs."""
    rows: list[dict[str, Any]] = []
    for name, step in steps:
        start = time.monotonic()
        if start > deadline:
            rows.append(row(name.split(":")[0], name, "skipped", "out of time (--budget)"))
        else:
            try:
                rows += step()
            except Exception as err:  # kept as a row: one failing step must not lose the others
                rows.append(row(name.split(":")[0], name, "error", " ".join(f"{type(err).__name__}: {err}".split())[:300]))
        print(f"{name}: done in {time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)
        write(out, rows, about)
    return rows


def _worker(args: argparse.Namespace) -> int:
    """One scaling or settings process: applies its setting, trains, prints its trials as JSON."""
    from particle_nas.evaluators import _device, _train

    if args.cudnn_benchmark is not None:
        _device.CUDNN_BENCHMARK = args.cudnn_benchmark == "on"
    if args.fused_adamw:
        _train.FUSED_ADAMW = True
    barrier = file_barrier(Path(args.barrier), args.name) if args.barrier else None
    sizes = Sizes(dry_run=args.dry_run, epochs=args.epochs)
    print(json.dumps(train_particles(list(range(args.per_process)), device=args.device, sizes=sizes, memory_format=args.memory_format, barrier=barrier)))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="folder for gpu.json and gpu.csv (required unless --worker)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8], help="proxy trainings at once on one GPU")
    parser.add_argument("--per-process", type=int, default=2, help="particles each scaling or settings process trains (the same ones in every process)")
    parser.add_argument("--cpu-trials", type=int, default=2, help="particles trained on both GPU and CPU")
    parser.add_argument("--cpu-threads", type=int, default=16, help="torch threads of the CPU trials")
    parser.add_argument("--epochs", type=int, default=None, help="proxy epochs of steps 2-5 (default: the quickstart's)")
    parser.add_argument("--skip-quickstart", action="store_true", help="leave out step 1")
    parser.add_argument("--budget", type=float, default=330.0, help="seconds: a step that would start later is skipped")
    parser.add_argument("--step-timeout", type=float, default=150.0, help="seconds each subprocess (quickstart, a group of workers) may run")
    parser.add_argument("--dry-run", action="store_true", help="every step on the CPU at toy sizes (no GPU needed): checks the bench itself")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # one scaling or settings process
    parser.add_argument("--device", default="cuda", help=argparse.SUPPRESS)
    parser.add_argument("--barrier", help=argparse.SUPPRESS)
    parser.add_argument("--name", default="0", help=argparse.SUPPRESS)
    parser.add_argument("--cudnn-benchmark", choices=("on", "off"), help=argparse.SUPPRESS)
    parser.add_argument("--memory-format", choices=("auto", "contiguous", "channels_last_3d"), help=argparse.SUPPRESS)
    parser.add_argument("--fused-adamw", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return _worker(args)
    device = "cpu" if args.dry_run else "cuda"
    if not args.dry_run:
        message = no_cuda_message()
        if message is not None:
            print(message, file=sys.stderr)
            return 2
    if args.out is None:
        parser.error("--out is required")
    sizes = Sizes(dry_run=args.dry_run, epochs=args.epochs)
    per, deadline = args.per_process, time.monotonic() + args.budget
    timeout = lambda: min(args.step_timeout, max(15.0, deadline + 30.0 - time.monotonic()))  # noqa: E731  (a step started late ends near the budget)
    # The rows that choose defaults first (trials_per_gpu, memory format, cudnn.benchmark, fused AdamW), the quickstart last.
    steps: list[tuple[str, Callable[[], list[dict[str, Any]]]]] = []
    for n in args.concurrency:
        steps.append((f"scaling: {n}", lambda n=n: scaling(n, device=device, sizes=sizes, per_process=per, timeout=timeout())))
    for name in SETTINGS:
        steps.append((f"settings: {name}", lambda name=name: setting(name, device=device, sizes=sizes, per_process=per, timeout=timeout())))
    steps.append(("latency", lambda: latency(device=device, sizes=sizes)))
    steps.append(("gpu vs cpu", lambda: gpu_vs_cpu(args.cpu_trials, device=device, threads=min(args.cpu_threads, os.cpu_count() or 1), sizes=sizes)))
    if not args.skip_quickstart:
        steps.append(("quickstart", lambda: quickstart(device=device, sizes=sizes, timeout=timeout())))
    about = {**machine(device), "dry_run": args.dry_run}
    rows = run_steps(steps, out=args.out, about=about, deadline=deadline)
    print(format_table(rows))
    json_path, csv_path = write(args.out, rows, about)
    print(f"wrote {json_path} and {csv_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
