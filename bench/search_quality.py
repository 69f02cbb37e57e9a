"""Search quality on ParticleBench: hypervolume of the accuracy-FLOPs front per sampler, over trials and simulated time.

    python bench/search_quality.py --table bench/particlebench/table.jsonl.gz --out bench/search_quality/log/set-a
    python bench/search_quality.py --table T --out OUT --seed-offset 100          # the second, disjoint seed set (100 .. 119)
    python bench/search_quality.py --table T --samplers random nsga2 --seeds 2 --trials 20 --out OUT   # a quick look
    python bench/search_quality.py --table T --rescore bench/search_quality/results.json            # recorded searches on both yardsticks

Runs every sampler (``--samplers``, default random distinct nsga2 tpe gp ehvi and the
engine's default sampler with mo-asha and asha) with ``--seeds`` seeds (``--seed-offset`` ..
``--seed-offset + --seeds - 1``, default 0 .. 19) for ``--trials`` trials (default 100) on the
table, through the same engine the CLI runs (``particle_nas.search.run_search``, in ``run_one``)
with the replay evaluator: no training, each run in its own temporary directory (in /dev/shm
when there is one). After each trial it takes the hypervolume of the front of accuracy (up) and
FLOPs (down) on the yardstick of the table's space (``particle_nas.search.yardstick_for``):
log10 FLOPs from the space's cheapest network to 1.1 x its largest, accuracy from 0 to 1, as a
share of that box (``--scale linear``: FLOPs on a linear axis from 0, the earlier yardstick);
the table's own front (one canonical row per network) gives the best any search can reach.
Against simulated time, a trial costs the table's recorded seconds of its evaluation; a repeat
of a network already tried costs nothing (the engine reuses it). ``SAMPLER+RULE`` runs the
sampler with early stopping (``search.early_stopping`` RULE: ``asha`` ranks each rung by
accuracy, ``mo-asha`` by accuracy and FLOPs; the engine's grace 2 epochs and reduction factor 2
unless ``--grace-epochs`` / ``--reduction-factor``): a stopped trial costs the recorded seconds
of the epochs it trained and adds nothing to the front. With ``--early-stopping-trials N`` those
searches run N trials, so that they can spend as much simulated time as the others (the trial
columns count their first ``--trials``). results.md also gives, per sampler, the simulated
time its mean curve takes to reach the final mean hypervolume of the baseline (``--baseline``,
default the engine's default sampler), and the trials its mean curve takes to reach the final
mean hypervolume of ``--trial-baseline`` (default random), each with a bootstrap 95 % interval
over the seeds; and how much of the final hypervolume the best accuracy found alone explains,
on both yardsticks. ``--merge`` adds searches recorded by earlier invocations to the summary.
Writes results.md (mean and standard error per sampler), results.json (every run's curve),
hypervolume.html and, when kaleido is installed, hypervolume.png.
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

from particle_nas.evaluators import ReplayEvaluator, load_table
from particle_nas.search import SAMPLERS as ENGINE_SAMPLERS
from particle_nas.search import SearchSettings, Yardstick, yardstick_for

SAMPLERS = tuple(s for s in ENGINE_SAMPLERS if s != "progressive")  # the engines' samplers that draw particles (progressive grows the network, which a table cannot answer)
STOPPING = ("asha", "mo-asha")  # early stopping rules a sampler may be combined with: "nsga2+mo-asha"
CHOICES = SAMPLERS + tuple(f"{s}+{rule}" for s in SAMPLERS for rule in STOPPING)
ENGINE = SearchSettings()  # the engine's defaults: the default search (which the time race is run against) and early stopping's rungs
DEFAULT = ("random", "distinct", "nsga2", "tpe", "gp", "ehvi", f"{ENGINE.sampler}+mo-asha", f"{ENGINE.sampler}+asha")
TIME_POINTS = 60  # points of the simulated-time grid
BOOTSTRAP = 2000  # resamples of the seeds for the 95 % intervals of trials-to-reach and time-to-reach


def _limit_threads(threads: int) -> None:
    """A worker's torch threads (Optuna's GP fits run in torch), so that --jobs searches share the cores instead of oversubscribing them."""
    import torch

    torch.set_num_threads(threads)


def table_yardstick(table, scale: str = "log") -> Yardstick:
    """The table's yardstick: log10 FLOPs from the space's cheapest network to 1.1 x its largest (linear: from 0), accuracy 0 to 1."""
    return yardstick_for(table.space, table.network, scale=scale)


def table_optimum(table, yardstick: Yardstick, seed: int | None = None) -> float:
    """The hypervolume of the table's own front (one row per network, of ``seed``; default the first): the most a search can reach."""
    rows = [r for p in table.particles if (r := table.row(p, seed)) is not None]
    return yardstick.hypervolume([float(r["accuracy"]) for r in rows], [float(r["flops"]) for r in rows])


def explained_by_best_accuracy(runs: list[dict[str, Any]], yardstick: Yardstick) -> dict[str, float]:
    """How much of the final hypervolume the best accuracy found explains across ``runs``: Pearson r and r^2 (complete runs only)."""
    finals, bests = [], []
    for run in runs:
        done = [a for a in run["accuracy"] if a is not None]
        if len(done) >= 2:
            finals.append(yardstick.running(run["accuracy"], run["flops"])[-1])
            bests.append(max(done))
    if len(finals) < 3 or np.std(finals) == 0 or np.std(bests) == 0:
        return {"runs": len(finals), "r": math.nan, "r2": math.nan}
    r = float(np.corrcoef(finals, bests)[0, 1])
    return {"runs": len(finals), "r": r, "r2": r * r}


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


def summarize(runs: list[dict[str, Any]], *, yardstick: Yardstick, trials: int, baseline: str | None = None, trial_baseline: str | None = None, boot_seed: int = 0) -> dict[str, Any]:
    """Per sampler: mean and standard error of the hypervolume after each trial and on a common simulated-time grid.

    ``total_s``: the mean simulated time of one of its searches. ``reach_s``: the first grid time at which the
    sampler's mean reaches the final mean of ``baseline`` (default: the first sampler), None if it never does.
    ``reach_trials``: the first trial count at which its mean reaches ``trial_baseline``'s final mean (when that
    sampler ran), None if it never does. ``reach_trials_ci`` and ``reach_s_ci``: their bootstrap 95 % intervals
    (``BOOTSTRAP`` resamples of both samplers' seeds; a bound of None: never, within the run).
    """
    for run in runs:
        run["hypervolume"] = yardstick.running(run["accuracy"], run["flops"])
        run["time"] = np.cumsum(run["seconds"]).tolist()
    horizon = max((run["time"][-1] for run in runs if run["time"]), default=0.0)
    grid = np.linspace(0.0, horizon, TIME_POINTS).tolist()
    samplers: dict[str, Any] = {}
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for sampler in dict.fromkeys(run["sampler"] for run in runs):
        mine = [run for run in runs if run["sampler"] == sampler]
        by_trial = np.array([(run["hypervolume"] + [run["hypervolume"][-1] if run["hypervolume"] else 0.0] * trials)[:trials] for run in mine])
        by_time = np.array([[run["hypervolume"][i - 1] if (i := int(np.searchsorted(run["time"], t, side="right"))) else 0.0 for t in grid] for run in mine])
        total_s = float(np.mean([run["time"][-1] if run["time"] else 0.0 for run in mine]))
        samplers[sampler] = {"runs": len(mine), "total_s": total_s, "by_trial": _mean_se(by_trial), "by_time": _mean_se(by_time)}
        curves[sampler] = (by_trial, by_time)
    rng = np.random.default_rng(boot_seed)
    baseline = baseline if baseline in samplers else next(iter(samplers), None)
    if baseline is not None:  # the simulated time each mean curve takes to reach the baseline's final mean hypervolume
        target = samplers[baseline]["by_time"]["mean"][-1]
        for name, stats in samplers.items():
            stats["reach_s"] = _first_reaching(grid, stats["by_time"]["mean"], target)
            stats["reach_s_ci"] = _bootstrap_reach(curves[name][1], curves[baseline][1][:, -1], grid, rng)
    trial_baseline = trial_baseline if trial_baseline in samplers else None
    if trial_baseline is not None:  # the trials each mean curve takes to reach trial_baseline's final mean hypervolume
        target = samplers[trial_baseline]["by_trial"]["mean"][-1]
        for name, stats in samplers.items():
            stats["reach_trials"] = _first_reaching(range(1, trials + 1), stats["by_trial"]["mean"], target)
            stats["reach_trials_ci"] = _bootstrap_reach(curves[name][0], curves[trial_baseline][0][:, -1], list(range(1, trials + 1)), rng)
    return {"time_grid_s": grid, "samplers": samplers, "baseline": baseline, "trial_baseline": trial_baseline}


def _bootstrap_reach(curves: np.ndarray, finals: np.ndarray, xs: list[Any], rng: np.random.Generator) -> list[Any]:
    """The 95 % bootstrap interval of the first x at which the mean of ``curves`` (runs x points) reaches the mean of ``finals``.

    Each resample draws the runs of both samplers with replacement. A bound of None: the resampled mean never
    reaches it within ``xs`` (the upper bound is then open).
    """
    n, m = len(curves), len(finals)
    big = len(xs)  # "never": beyond the last x
    firsts = []
    for _ in range(BOOTSTRAP):
        mean = curves[rng.integers(0, n, n)].mean(axis=0)
        target = finals[rng.integers(0, m, m)].mean()
        hit = np.flatnonzero(mean >= target - 1e-12)
        firsts.append(int(hit[0]) if len(hit) else big)
    low, high = np.percentile(firsts, [2.5, 97.5], method="nearest")
    return [xs[int(low)] if low < big else None, xs[int(high)] if high < big else None]


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


def _reach_cell(value: Any, ci: Any, unit: Any = str) -> str:
    shown = "never" if value is None else unit(value)
    if not ci:
        return shown
    low, high = ("never" if v is None else unit(v) for v in ci)
    return f"{shown} [{low}, {high}]"


def markdown(summary: dict[str, Any], *, table, optimum: float, yardstick: Yardstick, trials: int, command: str, explained: dict[str, dict[str, float]], seeds: list[int]) -> str:
    """The results as a markdown page: mean ± standard error per sampler, at a few trial counts and simulated times."""
    marks = sorted({m for m in (10, 14, 25, 50, trials) if m <= trials})
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
        f"Table: `{table.path}` (space hash {table.space_hash}, {len(table.particles)} distinct networks, {len(table.rows)} rows, "
        f"E = {table.epochs} epochs; measured on {'; '.join(machines)}). Seeds {seeds[0]} to {seeds[-1]}.",
        f"Yardstick: {yardstick.describe()}. The table's own front reaches {optimum:.4f}. Mean ± standard error over seeds; "
        "the races' intervals are bootstrap 95 % intervals over seeds.",
        "",
        "| sampler | seeds | " + " | ".join(f"after {m} trials" for m in marks) + f" | share of the table's front after {trials}"
        + " | " + " | ".join(f"at {grid[i] / 3600:.2f} h simulated" for i in times)
        + " | simulated h per search"
        + (f" | trials to reach {trial_baseline}'s {trials}-trial [95 %]" if trial_baseline else "")
        + f" | simulated h to reach {baseline}'s final [95 %] |",
        "| --- | --- | " + " | ".join("---" for _ in marks) + " | --- | " + " | ".join("---" for _ in times) + " | ---" + (" | ---" if trial_baseline else "") + " | --- |",
    ]
    for sampler, stats in summary["samplers"].items():
        cells = [_cell(stats["by_trial"], m - 1) for m in marks] + [f"{stats['by_trial']['mean'][trials - 1] / optimum:.1%}"]
        cells += [_cell(stats["by_time"], i) for i in times] + [f"{stats['total_s'] / 3600:.2f}"]
        if trial_baseline:
            cells.append(_reach_cell(stats.get("reach_trials"), stats.get("reach_trials_ci")))
        hours = lambda x: f"{x / 3600:.2f}" + (f" ({x / base:.0%})" if base else "")  # noqa: E731
        cells.append(_reach_cell(stats.get("reach_s"), stats.get("reach_s_ci"), hours))
        lines.append(f"| {sampler} | {stats['runs']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "How much of the final hypervolume the best accuracy found alone explains, over every search above (r^2 of the two across runs): "
        + "; ".join(f"{scale} yardstick r = {e['r']:.3f}, r^2 = {e['r2']:.3f}" for scale, e in explained.items())
        + ".",
        "",
        "Simulated time: the table's recorded wall seconds of each trial's evaluation, summed over a run; a repeated network costs nothing; "
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
    yardstick = table_yardstick(table, args.scale)
    optimum = table_optimum(table, yardstick)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = list(range(args.seed_offset, args.seed_offset + args.seeds))
    tasks = [(sampler, seed) for sampler in args.samplers for seed in seeds]
    runs: list[dict[str, Any]] = []
    for path in args.merge or []:  # searches recorded by earlier invocations (same table), summarized with these
        recorded = [r for r in json.loads(Path(path).read_text())["runs"] if r["seed"] in seeds and r["sampler"] not in args.samplers]  # a sampler run again replaces its record
        runs += [{k: v for k, v in r.items() if k not in ("hypervolume", "time")} for r in recorded]
        print(f"merged {len(recorded)} searches from {path}", flush=True)
    tmp_root = "/dev/shm" if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(prefix="search-quality-", dir=tmp_root) as workdir:
        common = dict(population=args.population, workdir=workdir, grace_epochs=args.grace_epochs, reduction_factor=args.reduction_factor)
        budget = {s: args.early_stopping_trials if "+" in s and args.early_stopping_trials else args.trials for s in args.samplers}
        if args.jobs == 1:
            _limit_threads(args.threads)
            done = (run_one(args.table, sampler=s, seed=k, trials=budget[s], **common) for s, k in tasks)
        else:
            # Each search gets its share of the cores: a GP fit's torch and BLAS threads would otherwise oversubscribe them.
            pool = concurrent.futures.ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_limit_threads, initargs=(args.threads,))
            done = (f.result() for f in [pool.submit(run_one, args.table, sampler=s, seed=k, trials=budget[s], **common) for s, k in tasks])
        for k, result in enumerate(done, start=1):
            runs.append(result)
            stopped = sum(a is None for a in result["accuracy"])
            print(f"[{k}/{len(tasks)}] {result['sampler']} seed {result['seed']}: {len(result['accuracy']) - stopped} complete, {stopped} stopped early, in {result['elapsed_s']:.1f} s", flush=True)
        if args.jobs != 1:
            pool.shutdown()
    summary = summarize(runs, yardstick=yardstick, trials=args.trials, baseline=args.baseline, trial_baseline=args.trial_baseline)
    explained = {scale: explained_by_best_accuracy(runs, yardstick.with_scale(scale)) for scale in ("log", "linear")}
    command = shlex.join(["python", "bench/search_quality.py", *args.argv])
    written = {"md": out / "results.md", "json": out / "results.json", "html": out / "hypervolume.html"}
    written["md"].write_text(markdown(summary, table=table, optimum=optimum, yardstick=yardstick, trials=args.trials, command=command, explained=explained, seeds=seeds), encoding="utf-8")
    record = {"command": command, "table": table.path, "space_hash": table.space_hash, "yardstick": yardstick.to_dict(), "optimum": optimum, "seeds": seeds, "explained_by_best_accuracy": explained}
    record["early_stopping"] = {"grace_epochs": args.grace_epochs, "reduction_factor": args.reduction_factor}
    written["json"].write_text(json.dumps({**record, **summary, "runs": runs}) + "\n", encoding="utf-8")
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


def rescore(args: argparse.Namespace) -> int:
    """Measure recorded searches (a results.json) on both yardsticks: the mean final hypervolume per sampler, the table's front, and how much the best accuracy explains."""
    table = load_table(args.table)
    recorded = json.loads(Path(args.rescore).read_text())
    runs = recorded["runs"]
    for scale in ("log", "linear"):
        yardstick = table_yardstick(table, scale)
        finals: dict[str, list[float]] = {}
        for r in runs:
            finals.setdefault(r["sampler"], []).append(yardstick.running(r["accuracy"][: args.trials], r["flops"][: args.trials])[-1])
        e = explained_by_best_accuracy([{**r, "accuracy": r["accuracy"][: args.trials], "flops": r["flops"][: args.trials]} for r in runs], yardstick)
        print(f"{scale}: {yardstick.describe()}")
        print(f"  table's front {table_optimum(table, yardstick):.4f}; best accuracy alone explains r^2 = {e['r2']:.3f} (r = {e['r']:.3f}) of HV@{args.trials} over {e['runs']} searches")
        for name, values in finals.items():
            print(f"  {name}: {np.mean(values):.4f} ± {np.std(values, ddof=1) / math.sqrt(len(values)):.4f} after {args.trials} trials ({len(values)} seeds)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", required=True, help="a ParticleBench table (bench/particlebench.py generate)")
    parser.add_argument("--out", default=None, help="folder for results.md, results.json, hypervolume.html (.png)")
    parser.add_argument("--samplers", nargs="*", default=list(DEFAULT), choices=CHOICES, help="samplers, SAMPLER+asha or SAMPLER+mo-asha for early stopping (default: %(default)s)")
    parser.add_argument("--baseline", default=ENGINE.sampler, help=f"the sampler whose final hypervolume the others race to (default {ENGINE.sampler}, the default search; the first sampler when absent)")
    parser.add_argument("--trial-baseline", default="random", help="the sampler whose final hypervolume the others race to in trials (default random)")
    parser.add_argument("--seeds", type=int, default=20, help="seeds per sampler: OFFSET .. OFFSET+SEEDS-1 (default 20)")
    parser.add_argument("--seed-offset", type=int, default=0, help="the first seed (default 0; 100 gives the second, disjoint seed set of docs/particlebench.md)")
    parser.add_argument("--scale", choices=("log", "linear"), default="log", help="the hypervolume's cost scale (default log: log10 FLOPs from the space's cheapest network; linear: the earlier yardstick)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per search (default 1)")
    parser.add_argument("--merge", nargs="+", default=None, metavar="RESULTS_JSON", help="add the searches recorded in these results.json (same table; the seeds asked for, of samplers not run now) to this invocation's, so one race spans several runs")
    parser.add_argument("--rescore", default=None, metavar="RESULTS_JSON", help="run nothing: measure the searches recorded in a results.json on both yardsticks")
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
    if args.rescore:
        return rescore(args)
    if args.out is None:
        raise SystemExit("search_quality: --out is required (unless --rescore)")
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
