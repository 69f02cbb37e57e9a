"""Long runs stay fast: the engine's per-trial overhead and ``report`` on a replayed search of many trials.

    python bench/long_run.py                      # 10,000 trials (several minutes), then report
    python bench/long_run.py --trials 2000        # a shorter run
    python bench/long_run.py --dir /dev/shm       # the study file in memory: no disk sync time in the figures
    python bench/long_run.py --trials 50 --window 10 --keep runs/long  # a quick check; keep the run directory

A replay search (``examples/replay.yaml``: the ParticleBench table answers
each trial, nothing is trained) with the random sampler (it reads no trials,
so no sampler cost hides in the figures) runs through the engine the CLI runs
(``search.run`` on a ``SearchJob`` built as ``particle-nas search`` builds it:
a SQLite ``study.db`` in a fresh run directory, progress off). The table holds
952 distinct networks, so most of 10,000 random trials repeat one: they reuse
its record (``duplicate_of``), as a long search on a small space does.

A trial's engine overhead is the time from its start to the next trial's start
(Optuna's ``datetime_start``), less the time spent inside the evaluator
(timed around every ``evaluate`` call); and, robust to what else runs on a
shared machine, this process's CPU seconds from one trial's end to the next
one's, less the evaluator's. Each is printed as the median of a window of
trials around trial ``--early`` and of the last trials, and their ratio. Then ``report`` (``open_run`` and ``write_run_outputs``, as ``particle-nas
report RUN``) is timed on the run, with its parts.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from particle_nas.evaluators import Evaluator

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "examples" / "replay.yaml"


class TimedEvaluator(Evaluator):
    """``inner``, with the wall time (``time.time``) and this process's CPU time of each ``evaluate`` call, as (start, seconds)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[tuple[float, float]] = []
        self.cpu_calls: list[tuple[float, float]] = []

    @property
    def epochs(self) -> int | None:
        return self.inner.epochs

    def evaluate(self, spec: Any, *, seed: int, on_epoch: Callable[[int, float], None] | None = None, weights_path: Any = None) -> Any:
        started, cpu = time.time(), time.process_time()
        try:
            return self.inner.evaluate(spec, seed=seed, on_epoch=on_epoch, weights_path=weights_path)
        finally:
            self.calls.append((started, time.time() - started))
            self.cpu_calls.append((cpu, time.process_time() - cpu))


class TrialClock(logging.Handler):
    """This process's CPU time when each trial is told COMPLETE (the engine logs "trial N complete: ..." to search.log).

    CPU seconds between trials are what the engine itself computes, whatever
    else runs on a shared machine; the wall-clock gaps are printed beside them.
    """

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.cpu: dict[int, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        found = re.match(r"trial (\d+) complete", record.getMessage())
        if found:
            self.cpu[int(found.group(1))] = time.process_time()

    def per_trial(self, calls: list[tuple[float, float]], trials: int) -> np.ndarray:
        """CPU seconds from each trial's end to the next one's (NaN where one was not logged), less the evaluator's CPU seconds."""
        marks = np.array([self.cpu.get(n, np.nan) for n in range(trials)])
        return overheads(marks, calls)


def run_search(run_dir: Path, *, trials: int, seed: int, clock: TrialClock | None = None) -> tuple[Any, TimedEvaluator]:
    """A replay search of ``trials`` trials (random sampler) in ``run_dir``, as ``particle-nas search`` runs it."""
    from particle_nas.cli import _quiet_libraries
    from particle_nas.config import load_config, make_evaluator
    from particle_nas.search import SearchJob, log_to_file, run

    overrides = {"trials": trials, "sampler": "random", "seed": seed, "name": run_dir.name, "output_dir": str(run_dir.parent)}
    cwd = Path.cwd()
    os.chdir(ROOT)  # the config names the table relative to the repository
    try:
        config = load_config(CONFIG, overrides=overrides)
        evaluator = TimedEvaluator(make_evaluator(config, cache_dir=run_dir))
    finally:
        os.chdir(cwd)
    _quiet_libraries()
    log_to_file(run_dir / "search.log")
    if clock is not None:
        logging.getLogger("particle_nas.search").addHandler(clock)
    job = SearchJob(
        run_dir=run_dir, name=config.name, space=config.space, network=config.network, evaluator=evaluator, settings=config.search,
        seed=config.seed, fingerprint=config.fingerprint(), config=config.raw,
    )  # fmt: skip
    return run(job, progress=False), evaluator


def overheads(starts: np.ndarray, calls: list[tuple[float, float]]) -> np.ndarray:
    """Per trial but the last: seconds from its mark (start) to the next one's, less the evaluator's seconds begun in between.

    A mark may be NaN (unknown): the gaps next to it are NaN.
    """
    starts = np.asarray(starts, dtype=float)
    gaps = np.diff(starts)
    if calls:
        begun, seconds = np.array(calls, dtype=float).T
        known = np.fmax.accumulate(np.nan_to_num(starts, nan=-np.inf))  # ascending, so searchsorted skips the NaN marks
        owner = np.searchsorted(known, begun, side="right") - 1  # the trial running when each call began
        inside = (owner >= 0) & (owner < len(gaps))
        gaps = gaps - np.bincount(owner[inside], weights=seconds[inside], minlength=len(gaps))
    return gaps


def window(values: np.ndarray, center: int, width: int) -> tuple[int, int]:
    """The [first, last) trial numbers of a ``width``-trial window around ``center``, inside ``values``."""
    first = max(0, min(center - width // 2, len(values) - width))
    return first, min(len(values), first + width)


def timed(step: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = step()
    return result, time.perf_counter() - started


def report_times(run_dir: Path) -> dict[str, float]:
    """Seconds of ``particle-nas report RUN`` (open_run + write_run_outputs), then of its parts apart."""
    from particle_nas.results import open_run, trials_table, write_run_outputs
    from particle_nas.results._dashboard_page import dashboard_html
    from particle_nas.results._plots import pareto_figure

    def report() -> None:
        write_run_outputs(open_run(run_dir), run_dir)

    _, total = timed(report)
    study, opened = timed(lambda: open_run(run_dir))
    df, table = timed(lambda: trials_table(study))
    _, pareto = timed(lambda: pareto_figure(df).to_html(include_plotlyjs=False))
    _, dashboard = timed(lambda: dashboard_html(study, run=run_dir.name))
    return {"report": total, "open_run": opened, "trials_table": table, "pareto.html figure": pareto, "dashboard.html": dashboard}


def compare(what: str, spent: np.ndarray, *, early: int, width: int) -> dict[str, Any]:
    """Print and return the median overhead of the window around trial ``early`` and of the last window, and their ratio."""
    first, last = window(spent, early, width), window(spent, len(spent), width)
    early_ms, late_ms = (float(np.nanmedian(spent[a:b])) * 1e3 for a, b in (first, last))
    print(f"engine overhead per trial, {what}: median of trials {first[0]}-{first[1] - 1} {early_ms:.2f} ms, of trials {last[0]}-{last[1] - 1} {late_ms:.2f} ms: {late_ms / early_ms:.2f}x (target <= 2x)")
    return {"early_window": list(first), "late_window": list(last), "early_ms": early_ms, "late_ms": late_ms, "ratio": late_ms / early_ms}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10_000, help="trials of the replayed search (default 10000)")
    parser.add_argument("--early", type=int, default=100, help="the early trial whose overhead is compared with the last ones' (default 100)")
    parser.add_argument("--window", type=int, default=101, help="trials in each window whose median overhead is taken (default 101)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", type=Path, default=None, help="where the temporary run directory goes (default: the system's temporary directory; /dev/shm keeps the disk's sync time out)")
    parser.add_argument("--keep", type=Path, default=None, help="the run directory to keep (default: a temporary one, removed)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here as JSON")
    args = parser.parse_args(argv)
    load = lambda: " ".join(f"{x:.1f}" for x in os.getloadavg())  # noqa: E731
    print(f"replay search of {args.trials} trials (random sampler), {os.cpu_count()} CPUs, load average {load()}", flush=True)
    clock = TrialClock()
    if args.dir is not None:
        Path(args.dir).mkdir(parents=True, exist_ok=True)  # the documented command names a folder that may not exist yet
    with tempfile.TemporaryDirectory(prefix="long-run-", dir=args.dir) as tmp:
        run_dir = (args.keep or Path(tmp) / "long-run").resolve()
        (summary, evaluator), search_s = timed(lambda: run_search(run_dir, trials=args.trials, seed=args.seed, clock=clock))
        logging.getLogger("particle_nas.search").removeHandler(clock)
        print(f"search: {search_s:.1f} s; {summary.complete} complete, {summary.reused} reused identical networks, {len(evaluator.calls)} evaluated; load average {load()}", flush=True)
        from particle_nas.results import open_run

        trials = sorted(open_run(run_dir).get_trials(deepcopy=False), key=lambda t: t.number)
        starts = np.array([t.datetime_start.timestamp() for t in trials])
        wall = compare("wall clock (start to start)", overheads(starts, evaluator.calls), early=args.early, width=args.window)
        cpu = compare("this process's CPU time (end to end)", clock.per_trial(evaluator.cpu_calls, len(trials)), early=args.early, width=args.window)
        times = report_times(run_dir)
        print(f"report on {len(trials)} trials: {times['report']:.1f} s (target <= 60 s); load average {load()}")
        for name, seconds in times.items():
            if name != "report":
                print(f"  {name:<20} {seconds:7.2f} s")
    results = {
        "trials": args.trials, "search_s": search_s, "reused": summary.reused, "evaluated": len(evaluator.calls),
        "wall": wall, "cpu": cpu, "report_s": times, "load_average": os.getloadavg(),
    }  # fmt: skip
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
