"""ParticleBench: train every particle of a fixed space once with the default proxy recipe, into a table.

    python bench/particlebench.py space                                                   # the table's particles: count, hash
    python bench/particlebench.py generate --out bench/particlebench/table.jsonl.gz --workers 2 --threads 1
    python bench/particlebench.py generate --out pilot.jsonl.gz --limit 4 --second-seed-subset 0   # a pilot: 4 particles
    python bench/particlebench.py status bench/particlebench/table.jsonl.gz              # how far it got, noise so far, time left
    python bench/particlebench.py calibrate bench/particlebench/table.jsonl.gz --before 2026-12-02T09:00:00+00:00 --sample 32 --workers 2
    python bench/particlebench.py generate --out bench/particlebench/table.jsonl.gz --backend ray --address HEAD:6379 --workers 64 --threads 1

The space, proxy network, task and training recipe are bench/particlebench/space.yaml
(the quickstart's). ``generate`` lists every distinct network of the space in a
fixed shuffled order (``--limit K``: the first K, a uniform sample), trains each
with the first of ``--seeds`` and the first ``--second-seed-subset`` of them
again with the second seed (to measure the noise), and appends one row per
(particle, seed) to ``--out`` as it finishes: validation accuracy after each of
the E epochs, FLOPs, params, CPU latency (batch 1, median of 15, ``--threads``
threads), seconds per epoch and the machine. A rerun of the same command skips
the rows already there (Ctrl-C is safe; a row cut short by a kill is dropped
and trained again). ``--clip``, ``--train-size`` and ``--val-size`` shrink the
task for a pilot or a test; the header records what was used, and a replay
refuses a config that differs from it.

A table generated in sittings on two machines mixes their seconds. ``calibrate``
trains again here a random sample of the rows finished before ``--before`` and
of those finished after, and writes on every row its ``time_scale``: this
machine's seconds over the recorded ones (geometric mean over its group's
sample), so that a replay's simulated time is this machine's throughout. The
header's ``time_reference`` records the machine, the samples, the spread of the
ratios and whether the retrained accuracies matched.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import multiprocessing
import os
import platform
import random
import shlex
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, NamedTuple

from particle_nas.config import load_config
from particle_nas.evaluators import TABLE_FORMAT, EvaluatorSettings, ProxyEvaluator, SyntheticConfig, TrainConfig, VideoPretextConfig, space_hash, table_particles
from particle_nas.evaluators._replay import RECIPE_KEYS, append_row, plain, read_lines, row_fingerprint, row_key, row_seconds_scaled, write_table
from particle_nas.search import yardstick_for
from particle_nas.space import NetworkSpec, ParticleSpec, network_fingerprint

HERE = Path(__file__).resolve().parent
DEFAULT_SPACE = HERE / "particlebench" / "space.yaml"
ORDER_SEED = 0  # the shuffled order of the particles (so --limit K takes a uniform sample)


class Recipe(NamedTuple):
    """What every row of a table is measured with."""

    space: Any  # SearchSpace
    network: Any  # NetworkSpec with a placeholder particle
    data: SyntheticConfig | VideoPretextConfig  # the synthetic task, or the label-free one on a folder of videos
    train: TrainConfig

    def header(self, *, seeds: list[int]) -> dict[str, Any]:
        return {
            "format": TABLE_FORMAT,
            "space": self.space.to_dict(),
            "space_hash": space_hash(self.space),
            "particles": len(list(self.space.grid())),  # distinct specs; "networks": the distinct networks they build
            "networks": len(table_particles(self.space, self.network)),
            "network": self.network.to_dict(),
            "data": plain(self.data),
            "train": plain(self.train),
            "epochs": self.train.epochs,
            "seeds": list(seeds),
            "order_seed": ORDER_SEED,
        }


def load_recipe(path: str | os.PathLike[str] = DEFAULT_SPACE, *, epochs: int | None = None, clip: list[int] | None = None, train_size: int | None = None, val_size: int | None = None) -> Recipe:
    """The space file's space, network, data and training, with the pilot's overrides."""
    config = load_config(path)
    data = dataclasses.replace(config.data, **{k: v for k, v in {"clip": tuple(clip) if clip else None, "train_size": train_size, "val_size": val_size}.items() if v is not None})
    train = config.train if epochs is None else dataclasses.replace(config.train, epochs=epochs)
    network = config.network.replace(clip=data.clip, particle=ParticleSpec())
    if not isinstance(data, (SyntheticConfig, VideoPretextConfig)):
        raise ValueError(f"{path}: data.kind must be synthetic or video_pretext for a table (a table needs no labels beyond its task's), but got {type(data).__name__}.")
    return Recipe(space=config.space, network=network, data=data, train=train)


def jobs(recipe: Recipe, *, seeds: list[int], subset: int, limit: int | None, noise: list[ParticleSpec] | None = None) -> list[tuple[ParticleSpec, int]]:
    """(particle, seed) to train, in order: the noise subset with every seed (each other seed over the whole subset
    before the next), then the rest with the first.

    The subset is the first ``subset`` particles of the shuffled order, or ``noise`` (e.g. the front and the
    networks nearest it, ``near-front`` lists them). It comes first so that a table still being generated
    already measures its noise, and seed by seed so that a run cut short has one more seed for all of it.
    """
    particles = table_particles(recipe.space, recipe.network)
    random.Random(ORDER_SEED).shuffle(particles)
    if limit is not None:
        particles = particles[:limit]
    canonical = {row_key(recipe.network, p, 0)[0]: p for p in particles}
    head = particles[:subset] if noise is None else [canonical[row_key(recipe.network, p, 0)[0]] for p in noise]
    chosen = set(head)
    rest = [p for p in particles if p not in chosen]
    return [(p, seeds[0]) for p in head] + [(p, s) for s in seeds[1:] for p in head] + [(p, seeds[0]) for p in rest]


_COMMIT: dict[str, str | None] = {}  # filled at a process's first row (a plain dict: Ray ships this module by value)


def _commit() -> str | None:
    """The git commit of the code that trains the rows (None outside a git checkout); asked once per process, at its first row."""
    if "head" not in _COMMIT:
        try:
            out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=HERE, capture_output=True, text=True, timeout=10)
            _COMMIT["head"] = out.stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            _COMMIT["head"] = None
    return _COMMIT["head"]


def machine(device: str, threads: int | None) -> dict[str, Any]:
    """Where a row was measured (and with which code)."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") and torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "device": device, "gpu": gpu, "threads": threads if threads is not None else torch.get_num_threads(), "host": platform.node(), "commit": _commit()}


_EVALUATORS: dict[Any, tuple[ProxyEvaluator, ProxyEvaluator]] = {}


def _warm_up(device: str) -> None:
    """Train a 2-channel network for one step: a process's first training pays seconds of one-off set-up, which no row should."""
    tiny = ProxyEvaluator(data=SyntheticConfig(num_classes=2, train_size=4, val_size=2, clip=(2, 8, 8)), train=TrainConfig(epochs=1, batch_size=2, device=device))
    tiny.evaluate(tiny.network_spec(stem_channels=2, widths=(2,), depths=(1,), temporal_strides=(1,), spatial_strides=(1,)), seed=0)


def _evaluators(recipe: Recipe, device: str, threads: int | None) -> tuple[ProxyEvaluator, ProxyEvaluator]:
    """(trainer on ``device``, CPU latency meter), made once per process (the task is generated once)."""
    key = (recipe, device, threads)
    if key not in _EVALUATORS:
        _warm_up(device)
        train = dataclasses.replace(recipe.train, threads=threads)
        trainer = ProxyEvaluator(data=recipe.data, train=dataclasses.replace(train, device=device))
        meter = ProxyEvaluator(data=recipe.data, train=dataclasses.replace(train, device="cpu"), evaluators=EvaluatorSettings(train=False, latency=True))
        _EVALUATORS[key] = (trainer, meter)
    return _EVALUATORS[key]


def measure(recipe: Recipe, particle: ParticleSpec, seed: int, *, device: str = "cpu", threads: int | None = None) -> dict[str, Any]:
    """One row: ``particle`` trained with ``seed`` (the default proxy recipe), its costs and its CPU latency."""
    trainer, meter = _evaluators(recipe, device, threads)
    spec = recipe.network.replace(particle=particle)
    latency = meter.evaluate(spec, seed=seed).metrics["latency_ms"]
    marks: list[float] = []
    load_before = os.getloadavg()[0]
    cpu_start = time.process_time()
    start = time.perf_counter()
    result = trainer.evaluate(spec, seed=seed, on_epoch=lambda epoch, accuracy: marks.append(time.perf_counter()))
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    edges = [start, *marks]
    return {
        "particle": particle.to_dict(),
        "fingerprint": network_fingerprint(spec),  # the network it builds (space.network_fingerprint): a twin particle's row answers for it
        "seed": seed,
        "accuracy": result.accuracy,
        "epoch_accuracy": list(result.epoch_accuracy),  # E training epochs, then the fine-tuning epochs of a pruned particle
        "accuracy_before_prune": result.accuracy_before_prune,
        "train_loss": list(result.train_loss),
        "epoch_seconds": [b - a for a, b in zip(edges, edges[1:])],  # the first includes counting FLOPs and building the network
        "duration_s": result.duration_s,  # what the proxy evaluator reports (trials.csv's duration_s)
        "wall_s": wall,  # the whole evaluation: counting, building, training, validation, pruning, fine-tuning
        "flops": result.flops,
        "params": result.params,
        "latency_ms": latency,
        "latency_threads": threads,
        "machine": machine(device, threads),
        "cpu_s": cpu,  # CPU seconds this process spent on it; with one thread, cpu_s / wall_s is the share of a core it got (below 0.9: it shared its core)
        "load_avg": [round(load_before, 2), round(os.getloadavg()[0], 2)],  # the machine's 1-minute load average before and after training: times and latency from a loaded machine are inflated
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _worker_init(threads: int | None) -> None:
    import torch

    if threads is not None:
        torch.set_num_threads(threads)


class RowWorker:
    """A Ray actor's state: one process that keeps its task and evaluators from row to row (as a pool worker does)."""

    def __init__(self, threads: int | None) -> None:
        _worker_init(threads)

    def measure(self, recipe: Recipe, particle: ParticleSpec, seed: int, *, device: str, threads: int | None) -> dict[str, Any]:
        return measure(recipe, particle, seed, device=device, threads=threads)


def _measure_job(job: tuple[Recipe, ParticleSpec, int, str, int | None]) -> dict[str, Any]:
    recipe, particle, seed, device, threads = job
    return measure(recipe, particle, seed, device=device, threads=threads)


def _local_rows(recipe: Recipe, todo: list[tuple[ParticleSpec, int]], args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    """Rows as they finish: in this process (one worker) or in a pool of ``--workers`` processes.

    On Ctrl-C (or any error) the pool's workers are terminated at once: the rows they were
    training are lost, every finished row is already in the table.
    """
    if args.workers == 1:
        _worker_init(args.threads)
        for particle, seed in todo:
            yield measure(recipe, particle, seed, device=args.device, threads=args.threads)
        return
    pool = multiprocessing.get_context("spawn").Pool(args.workers, initializer=_worker_init, initargs=(args.threads,))
    try:
        yield from pool.imap_unordered(_measure_job, [(recipe, p, s, args.device, args.threads) for p, s in todo])
        pool.close()
    finally:
        pool.terminate()
        pool.join()


def _ray_rows(recipe: Recipe, todo: list[tuple[ParticleSpec, int]], args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    """Rows as they finish on a Ray cluster (``--address``; a local Ray without it): ``--workers`` actors, each
    ``--threads`` CPUs (and ``--gpus-per-row`` of a GPU with ``--device cuda``); this process alone writes the table."""
    try:
        import ray
        import ray.cloudpickle
        from ray.util import ActorPool
    except ImportError:
        raise SystemExit("particlebench: --backend ray needs Ray: pip install -e '.[ray]'") from None
    started = not ray.is_initialized()
    if started:
        ray.init(address=args.address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    module = sys.modules[RowWorker.__module__]
    if module.__name__ != "__main__":  # loaded as a module (tests): the actors get it by value, as they get a script's
        ray.cloudpickle.register_pickle_by_value(module)
    cpus, gpus = args.threads or 1, (args.gpus_per_row if args.device.startswith("cuda") else 0.0)
    resources = ray.cluster_resources()
    fits = int(resources.get("CPU", 0) // cpus)
    if gpus:
        fits = min(fits, int(resources.get("GPU", 0) // gpus))
    if fits < 1:
        raise SystemExit(f"particlebench: a row needs {cpus} CPU(s) and {gpus} GPU(s), but the Ray cluster has {resources.get('CPU', 0):g} CPU(s) and {resources.get('GPU', 0):g} GPU(s)")
    workers = min(args.workers, fits)
    if workers < args.workers:
        print(f"particlebench: the Ray cluster fits {workers} rows at once ({args.workers} asked)", file=sys.stderr, flush=True)
    actor = ray.remote(num_cpus=cpus, num_gpus=gpus)(RowWorker)
    actors = [actor.remote(args.threads) for _ in range(workers)]
    try:
        pool = ActorPool(actors)
        yield from pool.map_unordered(lambda a, job: a.measure.remote(recipe, job[0], job[1], device=args.device, threads=args.threads), todo)
    finally:
        for a in actors:
            ray.kill(a)
        if started:
            ray.shutdown()


def core_share(row: dict[str, Any]) -> float | None:
    """The share of a core a one-thread CPU row got while it trained (cpu_s / wall_s), or None when unknown."""
    machine = row.get("machine", {})
    if row.get("cpu_s") is None or machine.get("threads") != 1 or machine.get("device") != "cpu" or not row.get("wall_s"):
        return None
    return float(row["cpu_s"]) / float(row["wall_s"])


def row_seconds(row: dict[str, Any]) -> float:
    """How long a row took to train: its wall seconds times the share of its core it had (a paused or squeezed
    row's wall is not its length); rows whose share is unknown (GPU, several threads) keep their wall seconds."""
    share = core_share(row)
    return float(row["wall_s"]) * (1.0 if share is None else min(1.0, share))


def check_recipe(out: Path, old: dict[str, Any], header: dict[str, Any]) -> None:
    """ValueError unless table ``out``'s header ``old`` was made with ``header``'s recipe (seeds: the first one)."""
    changed = [k for k in RECIPE_KEYS if k != "seeds" and old.get(k) != header.get(k)]
    if changed or old["seeds"][0] != header["seeds"][0]:
        raise ValueError(f"{out} was generated with another recipe (it differs in {changed or ['the first seed']}); use another --out.")


def open_table(out: Path, header: dict[str, Any], command: str, *, retime_below: float | None = None) -> set[tuple[str, int]]:
    """Create ``out``, or check that it was made with the same recipe; rewrite it whole (dropping a row cut short,
    and with ``retime_below``, the rows that got less than that share of their core). Returns the rows done."""
    rows: list[dict[str, Any]] = []
    commands = [command]
    if out.exists():
        objects, truncated = read_lines(out)
        if not objects or objects[0].get("format") != TABLE_FORMAT:
            raise ValueError(f"{out} must be a {TABLE_FORMAT} table to resume, but it is not; use another --out.")
        old, rows = objects[0], objects[1:]
        check_recipe(out, old, header)
        header = {**header, "seeds": list(dict.fromkeys([*old["seeds"], *header["seeds"]]))}
        commands = [*old.get("commands", []), command]
        if truncated:
            print(f"{out}: its last row was cut short (a killed run); dropped, to be trained again", file=sys.stderr)
        if retime_below is not None:
            kept = [r for r in rows if (share := core_share(r)) is None or share >= retime_below]
            if len(kept) < len(rows):
                print(f"{out}: {len(rows) - len(kept)} rows got less than {retime_below:g} of their core (their times are inflated); dropped, to be trained again", file=sys.stderr)
            rows = kept
    write_table(out, {**header, "commands": commands}, rows)
    network = NetworkSpec.from_dict(header["network"])
    return {(row_fingerprint(r, network), int(r["seed"])) for r in rows}


def generate(args: argparse.Namespace) -> int:
    recipe = load_recipe(args.space, epochs=args.epochs, clip=args.clip, train_size=args.train_size, val_size=args.val_size)
    out = Path(args.out)
    done = open_table(out, recipe.header(seeds=args.seeds), args.recorded_command, retime_below=args.retime_below)
    noise = None if args.noise_particles is None else [ParticleSpec.from_dict(d) for d in json.loads(Path(args.noise_particles).read_text())]
    todo = [(p, s) for p, s in jobs(recipe, seeds=args.seeds, subset=args.second_seed_subset, limit=args.limit, noise=noise) if row_key(recipe.network, p, s) not in done]
    where = f"on Ray{' at ' + args.address if args.address else ''}" if args.backend == "ray" else "here"
    print(f"{out}: {len(done)} rows done, {len(todo)} to train ({args.workers} worker(s) {where}, {args.threads or 'default'} thread(s) each, device {args.device})", flush=True)
    if not todo:
        print(f"{out}: complete, nothing to train")
        return 0
    start = time.perf_counter()
    finished = 0

    def record(row: dict[str, Any]) -> None:
        nonlocal finished
        append_row(out, row)
        finished += 1
        p = ParticleSpec.from_dict(row["particle"])
        elapsed = time.perf_counter() - start
        print(
            f"[{finished}/{len(todo)} {elapsed:6.0f} s] {p.factorization}/{p.wiring}/kt{p.temporal_kernel}/e{p.expansion:g}/se{p.squeeze_excite:g}/{p.activation}/p{p.prune_ratio:g} "
            f"seed {row['seed']}: acc {row['accuracy']:.3f} wall {row['wall_s']:.1f} s latency {row['latency_ms']:.2f} ms",
            flush=True,
        )

    rows = (_ray_rows if args.backend == "ray" else _local_rows)(recipe, todo, args)
    try:
        with contextlib.closing(rows):  # Ctrl-C while a row is being written still stops the workers
            for row in rows:
                record(row)
    except KeyboardInterrupt:
        print(f"interrupted: {len(done) + finished} rows are in {out}; rerun the same command to continue", file=sys.stderr)
        return 130
    elapsed = time.perf_counter() - start
    per = f"; {elapsed / finished:.1f} s per row with {args.workers} worker(s)" if finished else ""
    print(f"{out}: {len(done) + finished} rows ({finished} new in {elapsed:.0f} s{per})")
    return 0


def whole_table(args: argparse.Namespace, doing: str) -> tuple[Path, dict[str, Any], list[dict[str, Any]], Recipe]:
    """(path, header, rows, recipe) of ``args.table``, which must be whole and made with ``args.space``'s recipe."""
    out = Path(args.table)
    objects, truncated = read_lines(out)
    if truncated or not objects or objects[0].get("format") != TABLE_FORMAT:
        raise SystemExit(f"particlebench: {out} must be a whole {TABLE_FORMAT} table to {doing}")
    header, rows = objects[0], objects[1:]
    recipe = load_recipe(args.space, epochs=header["epochs"], clip=header["data"]["clip"], train_size=header["data"]["train_size"], val_size=header["data"]["val_size"])
    check_recipe(out, header, recipe.header(seeds=header["seeds"]))
    return out, header, rows, recipe


def calibrate(args: argparse.Namespace) -> int:
    """Train a sample of each machine's rows again here; write every row's ``time_scale`` (this machine's seconds per recorded second)."""
    out, header, rows, recipe = whole_table(args, "calibrate")
    cut = datetime.fromisoformat(args.before)
    groups = {"before": [r for r in rows if datetime.fromisoformat(r["finished"]) < cut], "after": [r for r in rows if datetime.fromisoformat(r["finished"]) >= cut]}
    rng = random.Random(args.sample_seed)
    samples: dict[str, list[dict[str, Any]]] = {}
    for name, members in groups.items():
        timed = [r for r in members if (share := core_share(r)) is not None and share >= args.min_core]  # a squeezed row's seconds are not its machine's
        if len(timed) < 2:
            raise SystemExit(f"particlebench: calibrate needs at least 2 rows with {args.min_core:g} of their core finished {name} {args.before}, but {out} has {len(timed)}")
        samples[name] = rng.sample(timed, min(args.sample, len(timed)))
    todo = [(ParticleSpec.from_dict(r["particle"]), int(r["seed"])) for name in groups for r in samples[name]]
    print(f"{out}: training again {len(todo)} rows here ({', '.join(f'{len(samples[n])} of the {len(groups[n])} finished {n} {args.before}' for n in groups)}; {args.workers} worker(s), 1 thread each)", flush=True)
    args.threads, args.device = 1, "cpu"
    fresh: dict[tuple[str, int], dict[str, Any]] = {}
    for i, row in enumerate(_local_rows(recipe, todo, args), start=1):
        fresh[row_key(recipe.network, ParticleSpec.from_dict(row["particle"]), row["seed"])] = row
        print(f"[{i}/{len(todo)}] wall {row['wall_s']:.1f} s, core {core_share(row) or 0:.2f}", flush=True)
    reference: dict[str, Any] = {"machine": machine("cpu", 1), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "before": args.before, "groups": {}}
    scales = {}
    for name in groups:
        pairs = [(old, fresh[row_key(recipe.network, ParticleSpec.from_dict(old["particle"]), old["seed"])]) for old in samples[name]]
        ratios = [row_seconds(new) / row_seconds(old) for old, new in pairs if (core_share(new) or 0.0) >= args.min_core]
        if len(ratios) < 2:
            raise SystemExit(f"particlebench: fewer than 2 of the rows finished {name} {args.before} had {args.min_core:g} of their core here: calibrate on a quieter machine")
        logs = [math.log(x) for x in ratios]
        scales[name] = math.exp(statistics.fmean(logs))
        diffs = [abs(float(new["accuracy"]) - float(old["accuracy"])) for old, new in pairs]
        reference["groups"][name] = {
            "rows": len(groups[name]),
            "sample": len(ratios),
            "time_scale": round(scales[name], 4),
            "ratio_geometric_std": round(math.exp(statistics.stdev(logs)), 4),
            "ratio_range": [round(min(ratios), 4), round(max(ratios), 4)],
            "accuracy_identical": sum(d == 0.0 for d in diffs),
            "accuracy_mean_abs_difference": round(statistics.fmean(diffs), 4),
            "accuracy_max_abs_difference": round(max(diffs), 4),
        }
        g = reference["groups"][name]
        print(
            f"rows finished {name} {args.before}: {g['rows']} rows; here they take {scales[name]:.3f} x their recorded seconds "
            f"(geometric mean of {g['sample']} retrained, geometric std {g['ratio_geometric_std']:.3f}, range {g['ratio_range'][0]:.3f}-{g['ratio_range'][1]:.3f}); "
            f"accuracy identical in {g['accuracy_identical']} of {len(diffs)}, mean |difference| {g['accuracy_mean_abs_difference']:.4f}, max {g['accuracy_max_abs_difference']:.4f}",
            flush=True,
        )
    for name, members in groups.items():
        for r in members:
            r["time_scale"] = round(scales[name], 4)
    header = {**header, "time_reference": reference, "commands": [*header.get("commands", []), args.recorded_command]}
    write_table(out, header, rows)
    print(f"{out}: every row's time_scale written; a replay's simulated seconds are this machine's")
    return 0


def near_front(table: Any, *, nearest: int) -> tuple[list[ParticleSpec], list[ParticleSpec], list[float]]:
    """The table's front (accuracy up, FLOPs down, first seed, one row per network) and the ``nearest`` networks off it.

    Nearness is on the log-cost yardstick (``search.yardstick_for``: log10 FLOPs from the space's cheapest
    network to 1.1 x its largest, scaled to [0, 1], and accuracy): a network's distance is the least amount by
    which it must gain in both accuracy and position to leave the front's dominated region (the additive
    epsilon indicator). Returns (front by cost, nearest by distance, their distances).
    """
    yardstick = yardstick_for(table.space, table.network)
    rows = [(p, table.row(p)) for p in table.particles]
    points = [(p, float(r["accuracy"]), float(yardstick.position(float(r["flops"])))) for p, r in rows if r is not None]
    front = [(p, a, x) for p, a, x in points if not any(b >= a and y <= x and (b > a or y < x) for _, b, y in points)]
    front.sort(key=lambda t: t[2])
    on = {p for p, _, _ in front}

    def distance(a: float, x: float) -> float:
        return min(max(b - a, x - y) for _, b, y in front)

    off = sorted(((distance(a, x), p) for p, a, x in points if p not in on), key=lambda t: t[0])[:nearest]
    return [p for p, _, _ in front], [p for _, p in off], [d for d, _ in off]


def show_near_front(args: argparse.Namespace) -> int:
    """Write the front and the networks nearest it as a JSON list of particles (for generate --noise-particles)."""
    from particle_nas.evaluators import load_table

    table = load_table(args.table)
    front, near, distances = near_front(table, nearest=args.nearest)
    Path(args.out).write_text(json.dumps([p.to_dict() for p in [*front, *near]], indent=1) + "\n")
    print(f"{args.out}: the {len(front)} networks of the front and the {len(near)} nearest it (log-FLOPs yardstick; the farthest at {distances[-1] if distances else 0:.4f})")
    return 0


def front_under_seeds(table: Any, *, scale: str = "log") -> list[tuple[int, int, float]]:
    """The hypervolume of the table's front under each seed: every network retrained with that seed (the front and
    those nearest it, ``near-front``) takes that row's accuracy, the others keep their first seed's.
    Returns (seed, networks answered by that seed, hypervolume) per seed."""
    yardstick = yardstick_for(table.space, table.network, scale=scale)
    out = []
    for seed in table.seeds:
        rows = [(table.row(p, seed), table.row(p)) for p in table.particles]
        chosen = [own or first for own, first in rows if (own or first) is not None]
        answered = sum(own is not None for own, _ in rows)
        out.append((seed, answered, yardstick.hypervolume([float(r["accuracy"]) for r in chosen], [float(r["flops"]) for r in chosen])))
    return out


def show_front_noise(args: argparse.Namespace) -> int:
    """How far the table's front moves with the training seed, on both yardsticks."""
    from particle_nas.evaluators import load_table

    table = load_table(args.table)
    for scale in ("log", "linear"):
        per_seed = front_under_seeds(table, scale=scale)
        values = [hv for _, _, hv in per_seed]
        spread = statistics.stdev(values) if len(values) > 1 else float("nan")
        each = ", ".join(f"seed {seed} ({n} networks) {hv:.4f}" for seed, n, hv in per_seed)
        print(f"{scale} yardstick: the front's hypervolume {statistics.fmean(values):.4f} ± {spread:.4f} (std over {len(values)} seeds; {each})")
    return 0


def add_fingerprints(args: argparse.Namespace) -> int:
    """Write on every row the fingerprint of the network it trained, and on the header the count of distinct networks."""
    out, header, rows, recipe = whole_table(args, "fingerprint")
    for row in rows:
        row["fingerprint"] = network_fingerprint(recipe.network.replace(particle=ParticleSpec.from_dict(row["particle"])))
    commands = [*header.get("commands", []), args.recorded_command]
    header = {**header, "particles": len(list(recipe.space.grid())), "networks": len(table_particles(recipe.space, recipe.network)), "commands": list(dict.fromkeys(commands))}
    write_table(out, header, rows)
    print(f"{out}: {len(rows)} rows fingerprinted; {len({r['fingerprint'] for r in rows})} distinct networks among them, {header['networks']} in the space ({header['particles']} specs)")
    return 0


def show_space(args: argparse.Namespace) -> int:
    recipe = load_recipe(args.space)
    particles = table_particles(recipe.space, recipe.network)
    specs = len(list(recipe.space.grid()))
    print(f"{args.space}: {specs} distinct specs, {len(particles)} distinct networks, space hash {space_hash(recipe.space)}")
    for name in recipe.space.searched:
        counts: dict[Any, int] = {}
        for p in particles:
            counts[getattr(p, name)] = counts.get(getattr(p, name), 0) + 1
        print(f"  {name}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


def show_status(args: argparse.Namespace) -> int:
    """How far a table's generation got: rows, the noise measured so far, the pace, the time left at that pace."""
    from particle_nas.evaluators import load_table

    table = load_table(args.table)
    rows = table.rows
    subset = sum(1 for r in rows if int(r["seed"]) != table.seeds[0])
    total = len(table.particles)
    done = total - len(table.missing)
    print(f"{args.table}: {done} of {total} particles ({len(rows)} rows, {subset} of them with another seed), space hash {table.space_hash}, E = {table.epochs}")
    print(f"  written by: {' | '.join(dict.fromkeys(table.meta.get('commands', [])))}")
    if rows:
        cores = sorted({(r['machine']['cpu'], r['machine']['cores'], r['machine']['device'], r['machine'].get('commit')) for r in rows})
        for cpu, n, device, commit in cores:
            print(f"  machine: {cpu}, {n} cores, device {device}, commit {commit}")
        # A paused or squeezed row's wall seconds are not its length: only rows that had their core are timed.
        walls = sorted(float(r["wall_s"]) for r in rows if (share := core_share(r)) is None or share >= 0.9)
        if walls:
            print(
                f"  seconds per row (one worker), over the {len(walls)} rows that had at least 0.9 of their core: "
                f"median {walls[len(walls) // 2]:.1f}, range {walls[0]:.1f}-{walls[-1]:.1f}"
            )
        shares = sorted(x for r in rows if (x := core_share(r)) is not None)
        if shares:
            low = sum(x < 0.9 for x in shares)
            print(f"  share of its core a row got (cpu_s / wall_s): median {shares[len(shares) // 2]:.2f}, min {shares[0]:.2f}; {low} rows below 0.9 (generate --retime-below 0.9 trains them again)")
        loads = sorted(max(r.get("load_avg", [0.0])) for r in rows)
        if loads[-1] > 0:
            print(f"  load average around a row's training: median {loads[len(loads) // 2]:.2f}, max {loads[-1]:.2f} ({os.cpu_count()} cores here)")
        stamps = sorted(datetime.fromisoformat(r["finished"]) for r in rows)
        if len(stamps) > 1:
            # While a generator runs, some row finishes at least once per longest row; a longer gap is a stop.
            longest = max(row_seconds(r) for r in rows)
            gaps = [(b - a).total_seconds() for a, b in zip(stamps, stamps[1:])]
            running = [g for g in gaps if g <= 1.1 * longest]
            pace = sum(running) / len(running) if running else float("nan")
            stops = len(gaps) - len(running)
            left = (total - done) + max(0, int(args.second_seed_subset) - subset)
            print(
                f"  pace: {pace:.1f} s per row while generating ({stops} stop(s) longer than the longest row left out); "
                f"{left} rows left: about {left * pace / 3600:.1f} h at that pace"
            )
    reference = table.meta.get("time_reference")
    if reference:
        groups = "; ".join(f"rows finished {name} {reference['before']}: x {g['time_scale']:.3f} ({g['sample']} retrained)" for name, g in reference["groups"].items())
        scaled = sorted(row_seconds_scaled(r) for r in rows)
        print(f"  one clock (calibrate, {reference['date']}): {groups}; median row {scaled[len(scaled) // 2]:.1f} s on that machine")
    noise = table.noise()
    if noise.pairs:
        print(f"  seed noise from {noise.pairs} particles trained twice: one run's std {noise.std:.4f} (final accuracy), mean |difference| {noise.mean_abs_difference:.4f}, max {noise.max_abs_difference:.4f}")
        print("  per epoch std: " + ", ".join(f"{e}: {v:.4f}" for e, v in enumerate(noise.epoch_std, start=1)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command_name", required=True)
    s = sub.add_parser("space", help="count and hash the table's particles")
    s.add_argument("--space", default=str(DEFAULT_SPACE), help="space, network, data and training (YAML; default bench/particlebench/space.yaml)")
    s.set_defaults(func=show_space)
    st = sub.add_parser("status", help="how far a table's generation got: rows, seed noise, pace, time left")
    st.add_argument("table", help="the table (gzip JSON lines)")
    st.add_argument("--second-seed-subset", type=int, default=30, help="the noise rows the generation makes (default 30, as generate's)")
    st.set_defaults(func=show_status)
    g = sub.add_parser("generate", help="train the particles into a table (resumable)")
    g.add_argument("--out", required=True, help="the table (gzip JSON lines), e.g. bench/particlebench/table.jsonl.gz; appended to, resumed")
    g.add_argument("--space", default=str(DEFAULT_SPACE), help="space, network, data and training (YAML; default bench/particlebench/space.yaml)")
    g.add_argument("--workers", type=int, default=1, help="particles trained at once, each in its own process (use --threads 1 on a CPU)")
    g.add_argument("--threads", type=int, default=None, help="torch threads per worker, for training and the latency (default: torch's)")
    g.add_argument("--backend", choices=("local", "ray"), default="local", help="local: --workers processes here; ray: --workers Ray actors (a cluster with --address)")
    g.add_argument("--address", default=None, help="with --backend ray: HOST:PORT of a running Ray head (default: start a local Ray)")
    g.add_argument("--gpus-per-row", type=float, default=1.0, help="with --backend ray and --device cuda: the GPU share of each actor (0.25 packs four rows on a GPU)")
    g.add_argument("--device", default="cpu", help="where networks train: cpu, cuda, cuda:1 ... (latency is always measured on the CPU)")
    g.add_argument("--retime-below", type=float, default=None, metavar="SHARE", help="train again the rows (one thread, CPU) that got less than SHARE of their core, e.g. 0.9: their seconds were inflated by other work")
    g.add_argument("--limit", type=int, default=None, help="train only the first K particles of the fixed shuffled order (a pilot)")
    g.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="the first trains every particle; the others the subset (default 0 1)")
    g.add_argument("--second-seed-subset", type=int, default=30, help="particles also trained with the other seeds (default 30)")
    g.add_argument("--noise-particles", default=None, metavar="JSON", help="train these particles (a JSON list of particle dicts, as near-front writes) with the other seeds, instead of the first --second-seed-subset")
    g.add_argument("--epochs", type=int, default=None, help="E, epochs of the schedule (default: the space file's, 5)")
    g.add_argument("--clip", type=int, nargs=3, metavar=("T", "H", "W"), default=None, help="a smaller clip, for a pilot or a test")
    g.add_argument("--train-size", type=int, default=None, help="fewer training clips, for a pilot or a test")
    g.add_argument("--val-size", type=int, default=None, help="fewer validation clips, for a pilot or a test")
    g.set_defaults(func=generate)
    c = sub.add_parser("calibrate", help="put a table timed on two machines on one clock: retrain a sample of each here, write every row's time_scale")
    c.add_argument("table", help="the table (gzip JSON lines); rewritten with time_scale on every row")
    c.add_argument("--before", required=True, metavar="ISO", help="rows finished before this time (e.g. 2026-12-02T09:00:00+00:00) were timed on one machine, the rest on another")
    c.add_argument("--sample", type=int, default=32, help="rows of each machine trained again here (default 32)")
    c.add_argument("--sample-seed", type=int, default=0, help="which rows are drawn (default 0)")
    c.add_argument("--workers", type=int, default=1, help="rows trained at once, one thread each")
    c.add_argument("--min-core", type=float, default=0.9, metavar="SHARE", help="rows (recorded and retrained) that got less than SHARE of their core are left out of the ratios (default 0.9)")
    c.add_argument("--space", default=str(DEFAULT_SPACE), help="space, network, data and training (YAML; default bench/particlebench/space.yaml)")
    c.set_defaults(func=calibrate)
    n = sub.add_parser("near-front", help="list the table's front and the networks nearest it (log-FLOPs yardstick), for generate --noise-particles")
    n.add_argument("table", help="the table (gzip JSON lines)")
    n.add_argument("--nearest", type=int, default=50, help="networks off the front to add, nearest first (default 50)")
    n.add_argument("--out", required=True, help="the JSON list of particles to write")
    n.set_defaults(func=show_near_front)
    fn = sub.add_parser("front-noise", help="the hypervolume of the table's front under each training seed (both yardsticks)")
    fn.add_argument("table", help="the table (gzip JSON lines)")
    fn.set_defaults(func=show_front_noise)
    f = sub.add_parser("fingerprint", help="write on every row the fingerprint of its network, and the count of distinct networks on the header")
    f.add_argument("table", help="the table (gzip JSON lines); rewritten")
    f.add_argument("--space", default=str(DEFAULT_SPACE), help="space, network, data and training (YAML; default bench/particlebench/space.yaml)")
    f.set_defaults(func=add_fingerprints)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.recorded_command = shlex.join(["python", "bench/particlebench.py", *argv])
    if getattr(args, "workers", 1) < 1 or (getattr(args, "limit", None) or 1) < 1:
        raise SystemExit("particlebench: --workers and --limit must be >= 1")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
