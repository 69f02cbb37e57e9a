"""Search quality on ParticleBench: hypervolume of the accuracy-FLOPs front per sampler, over trials and simulated time.

    python bench/search_quality.py --table bench/particlebench/table.jsonl.gz --out bench/search_quality
    python bench/search_quality.py --table T --samplers random nsga2 --seeds 2 --trials 20 --out OUT   # a quick look

Runs every sampler (``--samplers``, default random nsga2 tpe gp gp+mo-asha gp+asha:
gp, Optuna's GPSampler, is the engine's default sampler) with ``--seeds``
seeds (0 .. S-1, default 20) for ``--trials`` trials (default 100) on the
table, through the same engine the CLI runs (``particle_nas.search.run_search``,
in ``run_one``) with the replay evaluator: no training, each run in its own
temporary directory (in /dev/shm when there is one). After each trial it
takes the hypervolume of the front of accuracy (up) and FLOPs (down) with a
fixed reference point, accuracy 0 and FLOPs 1.1 x the largest in the table,
divided by the box [0, 1] x [0, that FLOPs], so 1.0 would be a free, perfect
network; the table's own front gives the best any search can reach. Against
simulated time, a trial costs the table's recorded seconds of its evaluation;
a repeat of a particle already tried costs nothing (the engine reuses it).
``SAMPLER+RULE`` runs the sampler with early stopping (``search.early_stopping``
RULE: ``asha`` ranks each rung by accuracy, ``mo-asha`` by accuracy and
FLOPs; the engine's grace 2 epochs and reduction factor 2 unless ``--grace-epochs`` / ``--reduction-factor``): a stopped trial costs the recorded
seconds of the epochs it trained and adds nothing to the front. With
``--early-stopping-trials N`` those searches run N trials, so that they can
spend as much simulated time as the others (the trial columns count their first
``--trials``). results.md
also gives, per sampler, the simulated time its mean curve takes to reach
the final mean hypervolume of the baseline (``--baseline``, default the engine's default sampler, gp),
and the trials its mean curve takes to reach the final mean hypervolume of
``--trial-baseline`` (default random).
Writes results.md (mean and standard error per sampler), results.json (every
run's curve), hypervolume.html and, when kaleido is installed, hypervolume.png.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import logging
import math
import multiprocessing
import os
import shlex
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from particle_nas.evaluators import ReplayEvaluator, load_table, table_particles
from particle_nas.results import hypervolume_2d
from particle_nas.search import SAMPLERS as ENGINE_SAMPLERS
from particle_nas.search import SearchSettings

SAMPLERS = tuple(s for s in ENGINE_SAMPLERS if s != "progressive")  # the engines' samplers that draw particles (progressive grows the network, which a table cannot answer)
STOPPING = ("asha", "mo-asha")  # early stopping rules a sampler may be combined with: "nsga2+mo-asha"
CHOICES = SAMPLERS + tuple(f"{s}+{rule}" for s in SAMPLERS for rule in STOPPING)
ENGINE = SearchSettings()  # the engine's defaults: the default search (which the time race is run against) and early stopping's rungs
DEFAULT = ("random", "nsga2", "tpe", "gp", f"{ENGINE.sampler}+mo-asha", f"{ENGINE.sampler}+asha")
REFERENCE_MARGIN = 1.1  # the reference FLOPs: this x the table's largest
TIME_POINTS = 60  # points of the simulated-time grid


def _limit_threads(threads: int) -> None:
    """A worker's torch threads (Optuna's GP fits run in torch), so that --jobs searches share the cores instead of oversubscribing them."""
    import torch

    torch.set_num_threads(threads)


def reference_flops(table) -> float:
    return REFERENCE_MARGIN * max(float(r["flops"]) for r in table.rows)


def hypervolume_curve(accuracy: list[float | None], flops: list[float], *, ref_flops: float) -> list[float]:
    """Normalized hypervolume of the (accuracy up, FLOPs down) front after each point, reference (0, ``ref_flops``).

    A point without accuracy (a trial stopped early) leaves the front as it was.
    """
    curve: list[float] = []
    front: list[tuple[float, float]] = []
    for acc, cost in zip(accuracy, flops):
        if acc is not None:
            front.append((-float(acc), float(cost)))
        curve.append(hypervolume_2d(np.array(front), (0.0, ref_flops)) / ref_flops if front else 0.0)
    return curve


def run_one(table_path: str, *, sampler: str, seed: int, trials: int, population: int, workdir: str, grace_epochs: int = ENGINE.grace_epochs, reduction_factor: int = ENGINE.reduction_factor) -> dict[str, Any]:
    """One search on the table through the engine the CLI runs; its trials in order (accuracy, flops, simulated seconds)."""
    import optuna

    from particle_nas.results import open_run
    from particle_nas.search import STUDY_JOURNAL, SearchSettings, run_search

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    table = load_table(table_path)
    base, _, rule = sampler.partition("+")
    settings = SearchSettings(
        sampler=base, trials=trials, population=population, objectives=("accuracy", "flops"), early_stopping=rule or "none", grace_epochs=grace_epochs, reduction_factor=reduction_factor
    )
    name = f"{sampler.replace('+', '_')}-{seed}"
    run_dir = Path(workdir) / name
    start = time.perf_counter()
    run_search(
        run_dir=run_dir, name=name, space=table.space, network=table.network, evaluator=ReplayEvaluator(table=table), settings=settings,
        seed=seed, fingerprint={"bench": "search_quality", "space_hash": table.space_hash}, config={}, progress=False,
        storage=str(run_dir / STUDY_JOURNAL),  # Optuna's journal file: a replayed trial costs milliseconds, SQLite's commits cost more
    )
    elapsed = time.perf_counter() - start
    out = {"sampler": sampler, "seed": seed, "accuracy": [], "flops": [], "seconds": [], "elapsed_s": elapsed}
    for trial in sorted(open_run(run_dir, study_name=name).get_trials(deepcopy=False), key=lambda t: t.number):
        attrs = trial.user_attrs
        if trial.state.name == "PRUNED" and "stopped_at_epoch" in attrs:  # stopped early: its epochs cost time, it adds no point
            out["accuracy"].append(None)
            out["flops"].append(float(attrs["flops"]))
            out["seconds"].append(float(attrs["duration_s"]))
            continue
        if trial.state.name != "COMPLETE":
            continue
        out["accuracy"].append(float(attrs["accuracy"]))
        out["flops"].append(float(attrs["flops"]))
        out["seconds"].append(0.0 if "duplicate_of" in attrs else float(attrs["duration_s"]))
    return out


def summarize(runs: list[dict[str, Any]], *, ref_flops: float, trials: int, baseline: str | None = None, trial_baseline: str | None = None) -> dict[str, Any]:
    """Per sampler: mean and standard error of the hypervolume after each trial and on a common simulated-time grid.

    ``total_s``: the mean simulated time of one of its searches. ``reach_s``: the first grid time at which the
    sampler's mean reaches the final mean of ``baseline`` (default: the first sampler), None if it never does.
    ``reach_trials``: the first trial count at which its mean reaches ``trial_baseline``'s final mean (when that
    sampler ran), None if it never does.
    """
    for run in runs:
        run["hypervolume"] = hypervolume_curve(run["accuracy"], run["flops"], ref_flops=ref_flops)
        run["time"] = np.cumsum(run["seconds"]).tolist()
    horizon = max((run["time"][-1] for run in runs if run["time"]), default=0.0)
    grid = np.linspace(0.0, horizon, TIME_POINTS).tolist()
    samplers: dict[str, Any] = {}
    for sampler in dict.fromkeys(run["sampler"] for run in runs):
        mine = [run for run in runs if run["sampler"] == sampler]
        by_trial = np.array([(run["hypervolume"] + [run["hypervolume"][-1] if run["hypervolume"] else 0.0] * trials)[:trials] for run in mine])
        by_time = np.array([[run["hypervolume"][i - 1] if (i := int(np.searchsorted(run["time"], t, side="right"))) else 0.0 for t in grid] for run in mine])
        total_s = float(np.mean([run["time"][-1] if run["time"] else 0.0 for run in mine]))
        samplers[sampler] = {"runs": len(mine), "total_s": total_s, "by_trial": _mean_se(by_trial), "by_time": _mean_se(by_time)}
    baseline = baseline if baseline in samplers else next(iter(samplers), None)
    if baseline is not None:  # the simulated time each mean curve takes to reach the baseline's final mean hypervolume
        target = samplers[baseline]["by_time"]["mean"][-1]
        for stats in samplers.values():
            stats["reach_s"] = _first_reaching(grid, stats["by_time"]["mean"], target)
    trial_baseline = trial_baseline if trial_baseline in samplers else None
    if trial_baseline is not None:  # the trials each mean curve takes to reach trial_baseline's final mean hypervolume
        target = samplers[trial_baseline]["by_trial"]["mean"][-1]
        for stats in samplers.values():
            stats["reach_trials"] = _first_reaching(range(1, trials + 1), stats["by_trial"]["mean"], target)
    return {"time_grid_s": grid, "samplers": samplers, "baseline": baseline, "trial_baseline": trial_baseline}


def _first_reaching(xs: Any, means: list[float], target: float) -> Any:
    """The first x whose mean hypervolume reaches ``target``, None if none does."""
    return next((x for x, hv in zip(xs, means) if hv >= target - 1e-12), None)


def _mean_se(values: np.ndarray) -> dict[str, list[float]]:
    n = values.shape[0]
    se = values.std(axis=0, ddof=1) / math.sqrt(n) if n > 1 else np.full(values.shape[1], math.nan)
    return {"mean": values.mean(axis=0).tolist(), "se": se.tolist()}


def _cell(stats: dict[str, list[float]], i: int) -> str:
    mean, se = stats["mean"][i], stats["se"][i]
    return f"{mean:.4f} ± {se:.4f}" if math.isfinite(se) else f"{mean:.4f}"


def markdown(summary: dict[str, Any], *, table, optimum: float, ref_flops: float, trials: int, command: str) -> str:
    """The results as a markdown page: mean ± standard error per sampler, at a few trial counts and simulated times."""
    marks = sorted({m for m in (10, 25, 50, trials) if m <= trials})
    grid = summary["time_grid_s"]
    times = [len(grid) // 4, len(grid) // 2, len(grid) - 1]
    baseline, trial_baseline = summary.get("baseline"), summary.get("trial_baseline")
    base = summary["samplers"][baseline]["total_s"] if baseline else None
    machines = sorted({f"{r['machine'].get('cpu')} ({r['machine'].get('device')}, torch {r['machine'].get('torch')})" for r in table.rows})
    lines = [
        "# Search quality on ParticleBench",
        "",
        f"Command: `{command}`",
        "",
        f"Table: `{table.path}` (space hash {table.space_hash}, {len(table_particles(table.space))} particles, {len(table.rows)} rows, "
        f"E = {table.epochs} epochs; measured on {'; '.join(machines)}).",
        f"Hypervolume of the accuracy-FLOPs front, reference point accuracy 0 and FLOPs {ref_flops:.4g} "
        f"({REFERENCE_MARGIN:g} x the table's largest), divided by that box; the table's own front reaches {optimum:.4f}. "
        "Mean ± standard error over seeds.",
        "",
        "| sampler | seeds | " + " | ".join(f"after {m} trials" for m in marks) + " | " + " | ".join(f"at {grid[i] / 3600:.2f} h simulated" for i in times)
        + " | simulated h per search"
        + (f" | trials to reach {trial_baseline}'s {trials}-trial" if trial_baseline else "")
        + f" | simulated h to reach {baseline}'s final |",
        "| --- | --- | " + " | ".join("---" for _ in marks) + " | " + " | ".join("---" for _ in times) + " | ---" + (" | ---" if trial_baseline else "") + " | --- |",
    ]
    for sampler, stats in summary["samplers"].items():
        cells = [_cell(stats["by_trial"], m - 1) for m in marks] + [_cell(stats["by_time"], i) for i in times] + [f"{stats['total_s'] / 3600:.2f}"]
        if trial_baseline:
            cells.append("never" if stats.get("reach_trials") is None else str(stats["reach_trials"]))
        reach = stats.get("reach_s")
        cells.append("never" if reach is None else f"{reach / 3600:.2f}" + (f" ({reach / base:.0%} of {baseline}'s search)" if base else ""))
        lines.append(f"| {sampler} | {stats['runs']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Simulated time: the table's recorded wall seconds of each trial's evaluation, summed over a run; a repeated particle costs nothing; "
        "a trial stopped early (SAMPLER+asha, SAMPLER+mo-asha) costs the seconds of the epochs it trained and adds no point to the front. "
        "The races compare mean curves: the first trial count (simulated time, on a grid of "
        f"{TIME_POINTS} points) at which a sampler's mean reaches the other's final mean; the last column's share is of the baseline's mean search time.",
        "",
    ]
    return "\n".join(lines)


def figure(summary: dict[str, Any], *, optimum: float, trials: int) -> Any:
    """Two panels, hypervolume vs trials and vs simulated hours: the mean per sampler with a ± standard error band."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("hypervolume vs trials", "hypervolume vs simulated training time"))
    palette = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
    hours = [t / 3600 for t in summary["time_grid_s"]]
    for k, (sampler, stats) in enumerate(summary["samplers"].items()):
        color = palette[k % len(palette)]
        for col, x, key in ((1, list(range(1, trials + 1)), "by_trial"), (2, hours, "by_time")):
            mean, se = np.array(stats[key]["mean"]), np.nan_to_num(np.array(stats[key]["se"]))
            fig.add_trace(go.Scatter(x=x + x[::-1], y=(mean + se).tolist() + (mean - se).tolist()[::-1], fill="toself", fillcolor=color, opacity=0.2, line=dict(width=0), hoverinfo="skip", showlegend=False), row=1, col=col)
            fig.add_trace(go.Scatter(x=x, y=mean.tolist(), name=sampler, line=dict(color=color), legendgroup=sampler, showlegend=col == 1), row=1, col=col)
    for col in (1, 2):
        fig.add_hline(y=optimum, line=dict(dash="dot", color="black"), annotation_text="table's front", row=1, col=col)
    fig.update_xaxes(title_text="trials", row=1, col=1)
    fig.update_xaxes(title_text="simulated hours", row=1, col=2)
    fig.update_yaxes(title_text="normalized hypervolume")
    fig.update_layout(width=1100, height=450, margin=dict(l=60, r=20, t=40, b=50))
    return fig


def run(args: argparse.Namespace) -> dict[str, Path]:
    table = load_table(args.table)
    ref_flops = reference_flops(table)
    first = [r for r in table.rows if int(r["seed"]) == table.seeds[0]]
    optimum = hypervolume_curve([float(r["accuracy"]) for r in first], [float(r["flops"]) for r in first], ref_flops=ref_flops)[-1]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tasks = [(sampler, seed) for sampler in args.samplers for seed in range(args.seeds)]
    runs: list[dict[str, Any]] = []
    tmp_root = "/dev/shm" if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(prefix="search-quality-", dir=tmp_root) as workdir:
        common = dict(population=args.population, workdir=workdir, grace_epochs=args.grace_epochs, reduction_factor=args.reduction_factor)
        budget = {s: args.early_stopping_trials if "+" in s and args.early_stopping_trials else args.trials for s in args.samplers}
        if args.jobs == 1:
            done = (run_one(args.table, sampler=s, seed=k, trials=budget[s], **common) for s, k in tasks)
        else:
            # Each search gets its share of the cores: a GP fit's torch and BLAS threads would otherwise oversubscribe them.
            threads = max(1, (os.cpu_count() or 1) // args.jobs)
            pool = concurrent.futures.ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_limit_threads, initargs=(threads,))
            done = (f.result() for f in [pool.submit(run_one, args.table, sampler=s, seed=k, trials=budget[s], **common) for s, k in tasks])
        for result in done:
            runs.append(result)
            stopped = sum(a is None for a in result["accuracy"])
            print(f"[{len(runs)}/{len(tasks)}] {result['sampler']} seed {result['seed']}: {len(result['accuracy']) - stopped} complete, {stopped} stopped early, in {result['elapsed_s']:.1f} s", flush=True)
        if args.jobs != 1:
            pool.shutdown()
    summary = summarize(runs, ref_flops=ref_flops, trials=args.trials, baseline=args.baseline, trial_baseline=args.trial_baseline)
    command = shlex.join(["python", "bench/search_quality.py", *args.argv])
    written = {"md": out / "results.md", "json": out / "results.json", "html": out / "hypervolume.html"}
    written["md"].write_text(markdown(summary, table=table, optimum=optimum, ref_flops=ref_flops, trials=args.trials, command=command), encoding="utf-8")
    written["json"].write_text(json.dumps({"command": command, "table": table.path, "space_hash": table.space_hash, "reference_flops": ref_flops, "optimum": optimum, "early_stopping": {"grace_epochs": args.grace_epochs, "reduction_factor": args.reduction_factor}, **summary, "runs": runs}) + "\n", encoding="utf-8")
    fig = figure(summary, optimum=optimum, trials=args.trials)
    fig.write_html(written["html"], include_plotlyjs=True)
    try:
        import kaleido  # noqa: F401

        fig.write_image(out / "hypervolume.png")
        written["png"] = out / "hypervolume.png"
    except ImportError:
        print("no kaleido: hypervolume.html only (pip install kaleido for the PNG)", file=sys.stderr)
    for path in written.values():
        print(f"wrote {path}")
    return written


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", required=True, help="a ParticleBench table (bench/particlebench.py generate)")
    parser.add_argument("--out", required=True, help="folder for results.md, results.json, hypervolume.html (.png)")
    parser.add_argument("--samplers", nargs="+", default=list(DEFAULT), choices=CHOICES, help="samplers, SAMPLER+asha or SAMPLER+mo-asha for early stopping (default: %(default)s)")
    parser.add_argument("--baseline", default=ENGINE.sampler, help=f"the sampler whose final hypervolume the others race to (default {ENGINE.sampler}, the default search; the first sampler when absent)")
    parser.add_argument("--trial-baseline", default="random", help="the sampler whose final hypervolume the others race to in trials (default random)")
    parser.add_argument("--seeds", type=int, default=20, help="seeds per sampler: 0 .. SEEDS-1 (default 20)")
    parser.add_argument("--trials", type=int, default=100, help="trials per search (default 100)")
    parser.add_argument(
        "--early-stopping-trials",
        type=int,
        default=None,
        help="trials per search of SAMPLER+RULE (default: --trials); a stopped trial costs a fraction of a full one, so more of them race the others at equal simulated time (the trial columns count the first --trials)",
    )
    parser.add_argument("--population", type=int, default=8, help="NSGA-II generation size (default 8, the quickstart's)")
    parser.add_argument("--grace-epochs", type=int, default=ENGINE.grace_epochs, help="early stopping's first rung (search.grace_epochs; default %(default)s, the engine's)")
    parser.add_argument("--reduction-factor", type=int, default=ENGINE.reduction_factor, help="early stopping keeps 1/N of a rung (search.reduction_factor; default %(default)s, the engine's)")
    parser.add_argument("--jobs", type=int, default=1, help="searches run at once, each in its own process")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
