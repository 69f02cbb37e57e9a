from __future__ import annotations

import gzip
import importlib.util
import json
import math
from pathlib import Path

import pytest

from particle_nas.search import Yardstick
from particle_nas.space import ParticleSpec


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, Path(__file__).parent.parent / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("a", "b", "tau"),
    [([1, 2, 3, 4], [10, 20, 30, 40], 1.0), ([1, 2, 3, 4], [4, 3, 2, 1], -1.0), ([1, 2, 3], [1, 3, 2], 1 / 3), ([1, 1, 2], [1, 2, 3], 2 / math.sqrt(6))],
)
def test_kendall_tau_b(a, b, tau):
    assert _load("fidelity").kendall_tau(a, b) == pytest.approx(tau)


def test_fidelity_samples_distinct_particles_reproducibly():
    fidelity = _load("fidelity")
    first = fidelity.sample_particles(20, seed=0)
    assert len(set(first)) == 20 and first == fidelity.sample_particles(20, seed=0)


def test_gpu_bench_without_cuda_exits_2_with_one_line(tmp_path, capsys):
    from unittest import mock

    with mock.patch("torch.cuda.is_available", return_value=False):
        assert _load("gpu").main(["--out", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bench/gpu.py: error: a CUDA GPU is needed, but torch.cuda.is_available() is False (")
    assert captured.out == "" and not (tmp_path / "out").exists()  # nothing run, nothing written


def test_gpu_bench_throughput_spans_the_concurrent_trainings():
    gpu = _load("gpu")
    assert gpu.throughput([(0.0, 30.0), (10.0, 60.0)], trials=4) == pytest.approx(4.0)  # 4 trials in the 60 s from first start to last end
    assert gpu.throughput([(100.0, 130.0)], trials=1) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="must be non-empty and positive"):
        gpu.throughput([], trials=1)
    table = gpu.format_table([gpu.row("latency", "r2plus1d/residual", "batch 1", 1.23456, "ms")]).splitlines()
    assert table[0].split() == ["step", "case", "metric", "value", "unit"] and table[2].split()[-2:] == ["1.2346", "ms"]


# ---------------------------------------------------------------- ParticleBench: the generator and search_quality
def _rows(table: Path) -> list[dict]:
    return [json.loads(line) for line in gzip.open(table, "rt")][1:]


def test_particlebench_generator_writes_every_particle_then_resumes_without_retraining(tiny_bench, tmp_path):
    from particle_nas.evaluators import load_table, space_hash, table_particles
    from particle_nas.space import SearchSpace

    space_file, table = tiny_bench
    loaded = load_table(table)
    space = SearchSpace.from_dict(loaded.meta["space"])
    particles = table_particles(space, loaded.network)
    assert len(particles) == 4 and loaded.meta["space_hash"] == space_hash(space) and loaded.meta["networks"] == 4
    assert all(row["fingerprint"] == loaded.fingerprint(ParticleSpec.from_dict(row["particle"])) for row in loaded.rows)
    assert sorted((r["seed"] for r in loaded.rows)) == [0, 0, 0, 0, 1]  # every particle with seed 0, the first one with seed 1 too
    for row in loaded.rows:
        assert len(row["epoch_seconds"]) == 1 and row["wall_s"] >= sum(row["epoch_seconds"]) > 0 and row["cpu_s"] > 0
        assert row["latency_ms"] > 0 and row["machine"]["cores"] >= 1 and row["machine"]["torch"] and len(row["load_avg"]) == 2
        assert row["machine"]["commit"]  # the checkout's commit (tests run from the git repository)
        pruned = row["particle"]["prune_ratio"] > 0
        assert len(row["epoch_accuracy"]) == 1 + pruned  # a pruned particle adds its fine-tuning epoch
        assert (row["accuracy_before_prune"] is not None) == pruned
    assert loaded.meta["seeds"] == [0, 1] and "generate" in loaded.meta["commands"][0]

    copy = tmp_path / "table.jsonl.gz"
    copy.write_bytes(table.read_bytes())
    generate = ["generate", "--space", str(space_file), "--out", str(copy), "--seeds", "0", "1", "--second-seed-subset", "1", "--threads", "1"]
    pb = _load("particlebench")
    assert pb.main(generate) == 0
    assert _rows(copy) == _rows(table)  # a rerun adds nothing

    copy.write_bytes(copy.read_bytes()[:-7])  # a kill mid-write cuts the last row short
    with pytest.raises(ValueError, match="cut short"):
        load_table(copy)
    assert pb.main(generate) == 0  # drops the torn row and trains it again
    repaired = _rows(copy)
    assert len(repaired) == 5 and repaired[:4] == _rows(table)[:4]
    assert {(json.dumps(r["particle"], sort_keys=True), r["seed"]) for r in repaired} == {(json.dumps(r["particle"], sort_keys=True), r["seed"]) for r in _rows(table)}

    with pytest.raises(ValueError, match="another recipe"):
        pb.main([*generate, "--epochs", "2"])

    from particle_nas.evaluators._replay import write_table

    header, *rows = [json.loads(line) for line in gzip.open(copy, "rt")]
    squeezed = dict(rows[0], cpu_s=0.01 * rows[0]["wall_s"])  # as if it had shared its core with other work
    write_table(copy, header, [squeezed, *rows[1:]])
    assert pb.core_share(squeezed) == pytest.approx(0.01) and pb.core_share(rows[1]) > 0
    assert pb.main([*generate, "--retime-below", "0.9"]) == 0
    retimed = {(json.dumps(r["particle"], sort_keys=True), r["seed"]): r for r in _rows(copy)}
    again = retimed[(json.dumps(squeezed["particle"], sort_keys=True), squeezed["seed"])]
    assert len(retimed) == 5 and again["cpu_s"] != squeezed["cpu_s"] and again["accuracy"] == squeezed["accuracy"]  # trained again: same numbers, new times


def test_particlebench_calibrate_puts_two_machines_on_one_clock(tiny_bench, tmp_path, capsys):
    """Rows finished before --before were timed on a machine 10 times slower: calibrate retrains a sample of each group and scales them onto this one."""
    from particle_nas.evaluators import ReplayEvaluator, load_table
    from particle_nas.evaluators._replay import write_table
    from particle_nas.space import NetworkSpec

    space_file, table = tiny_bench
    header, *rows = [json.loads(line) for line in gzip.open(table, "rt")]
    slow = [dict(r, finished="2026-01-01T00:00:00+00:00", wall_s=10 * r["wall_s"], cpu_s=10 * r["cpu_s"], epoch_seconds=[10 * x for x in r["epoch_seconds"]]) for r in rows[:2]]
    fast = [dict(r, finished="2026-06-01T00:00:00+00:00") for r in rows[2:]]
    mixed = tmp_path / "mixed.jsonl.gz"
    write_table(mixed, header, [*slow, *fast])
    pb = _load("particlebench")
    argv = ["calibrate", str(mixed), "--space", str(space_file), "--before", "2026-03-01T00:00:00+00:00", "--sample", "2", "--min-core", "0"]
    assert pb.main(argv) == 0
    assert "rows finished before 2026-03-01T00:00:00+00:00: 2 rows" in capsys.readouterr().out
    calibrated = load_table(mixed)
    reference = calibrated.meta["time_reference"]
    before, after = reference["groups"]["before"], reference["groups"]["after"]
    assert (before["rows"], before["sample"], after["rows"], after["sample"]) == (2, 2, 3, 2)
    assert before["accuracy_identical"] == 2 and after["accuracy_identical"] == 2  # the same rows, retrained: the same numbers
    assert before["time_scale"] < after["time_scale"] / 3  # the slow machine's seconds shrink, relative to the other's
    assert calibrated.meta["commands"][-1].startswith("python bench/particlebench.py calibrate")
    by_time = {r["finished"]: r["time_scale"] for r in calibrated.rows}
    assert by_time == {"2026-01-01T00:00:00+00:00": before["time_scale"], "2026-06-01T00:00:00+00:00": after["time_scale"]}
    row = next(r for r in calibrated.rows if r["finished"].startswith("2026-01"))
    spec = NetworkSpec.from_dict({**calibrated.meta["network"], "particle": row["particle"]})
    assert ReplayEvaluator(calibrated).evaluate(spec, seed=0)["duration_s"] == pytest.approx(row["wall_s"] * row["time_scale"])
    assert pb.main(["status", str(mixed), "--second-seed-subset", "1"]) == 0
    assert f"one clock (calibrate, {reference['date']}): rows finished before 2026-03-01T00:00:00+00:00: x {before['time_scale']:.3f} (2 retrained)" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="at least 2 rows"):
        pb.main([*argv[:4], "--before", "2025-01-01T00:00:00+00:00", "--min-core", "0"])


@pytest.mark.slow
def test_particlebench_on_ray_writes_the_rows_the_local_pool_writes(tiny_bench, tmp_path, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # a throwaway local Ray
    space_file, table = tiny_bench
    out = tmp_path / "ray.jsonl.gz"
    argv = ["generate", "--space", str(space_file), "--out", str(out), "--seeds", "0", "1", "--second-seed-subset", "1", "--threads", "1", "--backend", "ray", "--workers", "2"]
    assert _load("particlebench").main(argv) == 0
    numbers = ("accuracy", "epoch_accuracy", "train_loss", "flops", "params", "accuracy_before_prune")

    def key(r):
        return json.dumps(r["particle"], sort_keys=True), r["seed"]

    local = {key(r): {k: r[k] for k in numbers} for r in _rows(table)}
    assert {key(r): {k: r[k] for k in numbers} for r in _rows(out)} == local  # same seed, one thread each: the same numbers
    assert len({r["machine"]["host"] for r in _rows(out)}) == 1 and "--backend ray" in json.loads(gzip.open(out, "rt").readline())["commands"][0]


@pytest.mark.slow
def test_particlebench_ctrl_c_stops_the_workers_at_once_and_keeps_every_finished_row(tiny_bench, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    import yaml

    from particle_nas.evaluators._replay import read_lines

    tiny = yaml.safe_load(tiny_bench[0].read_text())
    slower = {**tiny, "data": {**tiny["data"], "clip": [8, 32, 32], "train_size": 256, "val_size": 64}, "train": {**tiny["train"], "epochs": 3}}
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(slower))
    script = Path(__file__).resolve().parents[1] / "bench" / "particlebench.py"
    argv = ["generate", "--space", "space.yaml", "--out", "t.jsonl.gz", "--workers", "2", "--threads", "1"]
    launch = f"import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); sys.argv = {[str(script), *argv]!r}; runpy.run_path(sys.argv[0], run_name='__main__')"
    proc = subprocess.Popen([sys.executable, "-c", launch], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not ((tmp_path / "t.jsonl.gz").exists() and len(read_lines(tmp_path / "t.jsonl.gz")[0]) >= 2):
        time.sleep(0.5)  # a header and a first row
    proc.send_signal(signal.SIGINT)  # as Ctrl-C does to the command (its workers are terminated, not waited for)
    stopped = time.monotonic()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "rerun the same command to continue" in err, err
    assert time.monotonic() - stopped < 30  # not the rest of the rows' training
    rows = read_lines(tmp_path / "t.jsonl.gz")[0][1:]
    assert 1 <= len(rows) < 8
    resume = ["generate", "--space", str(tmp_path / "space.yaml"), "--out", str(tmp_path / "t.jsonl.gz"), "--workers", "1", "--threads", "1"]
    assert _load("particlebench").main(resume) == 0  # in this process: one worker
    assert len(_rows(tmp_path / "t.jsonl.gz")) == 8 and _rows(tmp_path / "t.jsonl.gz")[: len(rows)] == rows  # resumed, nothing trained twice


def test_particlebench_status_says_how_far_the_table_got_and_its_noise(tiny_bench, capsys):
    pb = _load("particlebench")
    assert pb.main(["status", str(tiny_bench[1]), "--second-seed-subset", "1"]) == 0
    out = capsys.readouterr().out
    assert ": 4 of 4 particles (5 rows, 1 of them with another seed)" in out and "commit " in out and "share of its core a row got" in out
    assert "seed noise from 1 particles trained twice: one run's std" in out and "0 rows left" in out


def test_particlebench_status_paces_only_the_time_a_generator_ran(tiny_bench, tmp_path, capsys):
    """Rows 60 s apart, with a 1,000 s pause (inside a row) and a day's stop: 60 s per row, neither stop spread over them."""
    from datetime import datetime, timedelta, timezone

    from particle_nas.evaluators._replay import read_lines, write_table

    (header, *rows), _ = read_lines(tiny_bench[1])
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    stamps = [start + timedelta(seconds=x) for x in (0, 60, 1060, 1120)] + [start + timedelta(days=1)]
    restamped = [{**r, "finished": t.isoformat(), "wall_s": 70.0, "cpu_s": 69.0} for r, t in zip(rows, stamps)]
    restamped[2]["wall_s"] = 1070.0  # paused mid-row: its wall seconds say nothing of how long a row takes
    write_table(tmp_path / "t.jsonl.gz", header, restamped)
    assert _load("particlebench").main(["status", str(tmp_path / "t.jsonl.gz"), "--second-seed-subset", "1"]) == 0
    out = capsys.readouterr().out
    assert "pace: 60.0 s per row while generating (2 stop(s) longer than the longest row left out)" in out
    assert "over the 4 rows that had at least 0.9 of their core: median 70.0, range 70.0-70.0" in out  # the paused row is not timed


def test_particlebench_jobs_are_a_fixed_order_with_the_second_seed_subset_first():
    pb = _load("particlebench")
    recipe = pb.load_recipe()
    jobs = pb.jobs(recipe, seeds=[0, 1], subset=30, limit=None)
    assert len(jobs) == 952 + 30 and jobs == pb.jobs(recipe, seeds=[0, 1], subset=30, limit=None)  # one job per network, not per spec
    first = [p for p, s in jobs if s == 0]
    assert len(set(first)) == 952 and jobs[30:60] == [(p, 1) for p in first[:30]]  # the noise rows come early
    assert [p for p, _ in pb.jobs(recipe, seeds=[0, 1], subset=2, limit=6)] == [*first[:2], *first[:2], *first[2:6]]
    # given particles (near-front's list) take the subset's place, seed by seed: every one with seed 1, then with seed 2
    chosen = [first[5], first[3].replace(factorization="csn_ir") if first[3].wiring == "inverted" and first[3].factorization == "full" else first[3]]
    noisy = pb.jobs(recipe, seeds=[0, 1, 2], subset=30, limit=None, noise=chosen)
    assert noisy[:6] == [(first[5], 0), (first[3], 0), (first[5], 1), (first[3], 1), (first[5], 2), (first[3], 2)]
    assert len(noisy) == 952 + 4
    assert recipe.train.epochs == 5 and recipe.data.clip == (8, 32, 32)  # the quickstart's default recipe


def test_search_quality_runs_samplers_and_seeds_on_the_table(tiny_bench, tmp_path):
    _, table = tiny_bench
    sq = _load("search_quality")
    written = sq.main(["--table", str(table), "--out", str(tmp_path), "--samplers", "random", "nsga2", "gp", "--seeds", "2", "--trials", "5", "--population", "2"])
    assert written == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert sorted((r["sampler"], r["seed"]) for r in results["runs"]) == [("gp", 0), ("gp", 1), ("nsga2", 0), ("nsga2", 1), ("random", 0), ("random", 1)]
    for run in results["runs"]:
        curve = run["hypervolume"]
        assert len(curve) == 5 and all(a <= b for a, b in zip(curve, curve[1:])) and curve[-1] <= results["optimum"] + 1e-12
        assert run["time"][-1] == pytest.approx(sum(run["seconds"]))
    assert 0 < results["optimum"] <= 1
    md = (tmp_path / "results.md").read_text()
    assert "| random | 2 |" in md and "| nsga2 | 2 |" in md and "±" in md and "trials to reach random's 5-trial" in md
    assert 1 <= results["samplers"]["random"]["reach_trials"] <= 5  # random reaches its own final mean
    assert (tmp_path / "hypervolume.html").stat().st_size > 10_000


def test_search_quality_races_in_trials_and_in_simulated_time(monkeypatch):
    """random's mean reaches its 0.25 at trial 2, nsga2's at trial 1; only nsga2 reaches its own 0.31, at its whole search."""
    sq = _load("search_quality")
    runs = [{"sampler": "random", "seed": k, "accuracy": [0.1, 0.5], "flops": [5.0, 5.0], "seconds": [10.0, 10.0]} for k in range(2)]
    runs += [{"sampler": "nsga2", "seed": 0, "accuracy": [0.5, 0.8], "flops": [5.0, 8.0], "seconds": [30.0, 30.0]}]
    linear = Yardstick(scale="linear", low=0.0, high=10.0)  # the box flops [0, 10]: (0.5, 5) covers 0.25 of it
    summary = sq.summarize(runs, yardstick=linear, trials=2, baseline="nsga2", trial_baseline="random")
    random, nsga2 = summary["samplers"]["random"], summary["samplers"]["nsga2"]
    assert (random["reach_trials"], nsga2["reach_trials"]) == (2, 1)
    assert (random["total_s"], nsga2["total_s"]) == (20.0, 60.0)
    assert random["reach_s"] is None and nsga2["reach_s"] == pytest.approx(60.0)
    assert random["reach_trials_ci"] == [2, 2] and nsga2["reach_trials_ci"] == [1, 1]  # every resample of these seeds reaches it at the same trial
    assert random["reach_s_ci"] == [None, None] and nsga2["reach_s_ci"][1] == pytest.approx(60.0)
    assert sq.summarize(runs, yardstick=linear, trials=2, trial_baseline="tpe")["trial_baseline"] is None  # tpe did not run: no trial race
    explained = {"log": {"r": 0.5, "r2": 0.25}, "linear": {"r": 1.0, "r2": 1.0}}
    md = sq.markdown(summary, table=_FakeTable(), optimum=0.5, yardstick=linear, trials=2, command="python bench/search_quality.py", explained=explained, seeds=[0, 1])
    assert "| random | 2 |" in md and "| 0.01 | 2 [2, 2] | never [never, never] |" in md and "| 0.02 | 1 [1, 1] | 0.02 (100%) [" in md
    assert "log yardstick r = 0.500, r^2 = 0.250; linear yardstick r = 1.000, r^2 = 1.000" in md and "flops (linear) from 0 to 10" in md


class _FakeTable:
    path, space_hash, epochs, space, particles = "t.jsonl.gz", "0" * 16, 2, None, (None,) * 4
    rows = [{"machine": {"cpu": "test", "device": "cpu", "torch": "2"}}]


def test_hypervolume_curve_is_the_normalized_staircase():
    # points (accuracy, flops) with reference flops 10: (0.5, 5) covers 0.5 x 5 = 2.5, then (0.8, 8) adds 0.3 x 2 = 0.6.
    assert Yardstick(scale="linear", low=0.0, high=10.0).running([0.5, 0.4, 0.8], [5.0, 6.0, 8.0]) == pytest.approx([0.25, 0.25, 0.31])
    # on log10 flops from 1 to 100: flops 10 sits at 0.5, so (0.5, 10) covers 0.25 of the box, then (0.8, 100) adds nothing (at the edge)
    assert Yardstick(scale="log", low=1.0, high=100.0).running([0.5, 0.8, 0.9], [10.0, 100.0, 1.0]) == pytest.approx([0.25, 0.25, 0.9])


def test_particles_bench_trains_the_recurrent_particle_beside_the_3d_ones(monkeypatch, capsys):
    """docs/recurrent.md's bench command, on a tiny task: one line per particle with its analytic FLOPs."""
    particles = _load("particles")
    assert {"conv_gru_residual", "conv_gru_k3_residual", "full_residual"} <= set(particles.PARTICLES)
    argv = ["particles.py", "--threads", "1", "--particles", "conv_gru_residual", "full_residual", "--train-size", "32", "--val-size", "16", "--epochs", "1"]
    monkeypatch.setattr("sys.argv", argv)
    particles.main()
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("conv_gru_residual") and "flops 43.9M" in lines[1]
    assert lines[2].startswith("full_residual") and "flops 72.2M" in lines[2]


def _four_epoch_table(tiny: Path, out: Path) -> Path:
    """The tiny table's rows with made-up 4-epoch curves (same accuracy after epoch 1, so ASHA's rung 1 ties), for a race with early stopping."""
    from particle_nas.evaluators import load_table
    from particle_nas.evaluators._replay import write_table

    table = load_table(tiny)
    header = {**table.meta, "epochs": 4, "train": {**table.meta["train"], "epochs": 4}}
    rows = []
    for k, row in enumerate(r for r in table.rows if r["seed"] == 0):
        final = 0.55 + 0.1 * k
        curve = [0.5, 0.5 + (final - 0.5) / 3, 0.5 + 2 * (final - 0.5) / 3, final]
        rows.append({**row, "accuracy": final, "epoch_accuracy": curve, "train_loss": [1.0, 0.9, 0.8, 0.7], "epoch_seconds": [10.0 + k] * 4, "wall_s": 4 * (10.0 + k) + 1.0})
    return write_table(out, header, rows)


def test_search_quality_races_early_stopping_against_the_default_search(tiny_bench, tmp_path):
    table = _four_epoch_table(tiny_bench[1], tmp_path / "four.jsonl.gz")
    sq = _load("search_quality")
    argv = ["--table", str(table), "--out", str(tmp_path / "out"), "--samplers", "nsga2", "nsga2+mo-asha", "nsga2+asha", "--seeds", "1", "--trials", "4", "--population", "2", "--grace-epochs", "1"]
    assert sq.main(argv) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    runs = {r["sampler"]: r for r in results["runs"]}
    assert set(runs) == {"nsga2", "nsga2+mo-asha", "nsga2+asha"} and results["baseline"] == "nsga2"
    seconds = {4 * (10.0 + k) + 1.0 for k in range(4)} | {0.0}  # a complete trial (or a reused one)
    stopped = [(s, a) for s, a in zip(runs["nsga2+asha"]["seconds"], runs["nsga2+asha"]["accuracy"]) if a is None]
    assert stopped and all(s in {10.0 + k for k in range(4)} for s, _ in stopped)  # stopped after epoch 1: that epoch's seconds only
    for run in runs.values():
        assert all(s in seconds for s, a in zip(run["seconds"], run["accuracy"]) if a is not None)
        assert all(a <= b for a, b in zip(run["hypervolume"], run["hypervolume"][1:]))
        assert run["time"][-1] == pytest.approx(sum(run["seconds"]))
    assert results["samplers"]["nsga2"]["reach_s"] is not None  # the baseline reaches its own final value
    md = (tmp_path / "out" / "results.md").read_text()
    assert "| nsga2+mo-asha | 1 |" in md and "simulated h to reach nsga2's final" in md
    assert results["early_stopping"] == {"grace_epochs": 1, "reduction_factor": 2}

    later = ["--table", str(table), "--out", str(tmp_path / "grace2"), "--samplers", "nsga2+asha", "--seeds", "4", "--trials", "4", "--population", "2"]
    assert sq.main(later) == 0  # the engine's default first rung, epoch 2: a stopped trial has trained two epochs
    results = json.loads((tmp_path / "grace2" / "results.json").read_text())
    assert results["early_stopping"] == {"grace_epochs": 2, "reduction_factor": 2}
    stopped = [s for run in results["runs"] for s, a in zip(run["seconds"], run["accuracy"]) if a is None]
    assert stopped and all(s in {2 * (10.0 + k) for k in range(4)} for s in stopped)


def test_hypervolume_curve_skips_stopped_trials():
    assert Yardstick(scale="linear", low=0.0, high=10.0).running([None, 0.5, None, 0.8], [1.0, 5.0, 2.0, 8.0]) == pytest.approx([0.0, 0.25, 0.25, 0.31])


def test_throughput_overhead_splits_start_steady_and_end():
    pd = pytest.importorskip("pandas")
    throughput = _load("throughput")
    began = pd.Timestamp("2026-01-01 00:00:00")
    at = lambda s: str(began + pd.Timedelta(seconds=s))  # noqa: E731
    table = pd.DataFrame(
        {
            "state": ["COMPLETE", "COMPLETE", "COMPLETE"],
            "duplicate_of": [None, None, 0.0],  # the reused trial trained nothing
            "duration_s": [3.0, 5.0, 3.0],
            "datetime_start": [at(10), at(14), at(20)],
            "datetime_complete": [at(14), at(20), at(21)],
        }
    )
    got = throughput.figures(table, wall=25.0, began=began, parallel=1)
    assert got["trained"] == 2 and got["trials_per_min"] == pytest.approx(60 * 2 / 25)
    assert (got["start_s"], got["end_s"]) == (pytest.approx(10.0), pytest.approx(4.0))
    assert got["steady_s"] == pytest.approx((11 - 8) / 3)  # 11 s from first start to last end, 8 s of it training
    assert got["overhead_s"] == pytest.approx((25 - 8) / 3)


def test_search_overhead_lookups_agree():
    """The cached lookup finds the same trials as parsing every network again."""
    from particle_nas.search import SearchJob, SearchSettings, TrialRecorder
    from particle_nas.space import SearchSpace

    overhead = _load("search_overhead")
    study, base = overhead.study_of(6)
    job = SearchJob(run_dir=None, name="t", space=SearchSpace.from_dict({}), network=base, evaluator=None, settings=SearchSettings(), seed=0, fingerprint={}, config={})
    cached = TrialRecorder(job).known(study)
    assert len(cached) == 6
    assert {k: t.number for k, t in cached.items()} == {k: t.number for k, t in overhead.parsed_every_time(study).items()}


def test_video_decode_bench_builds_the_same_cache_with_1_and_2_processes(tmp_path):
    pytest.importorskip("av")
    out = tmp_path / "results.json"
    result = _load("video_decode").main(["--videos", "4", "--frames", "10", "--size", "32", "32", "--clip", "2", "8", "8", "--rounds", "2", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result["identical_cache"] and result["videos"] == result["decoded"][0] == 4
    assert [row["processes"] for row in result["rows"]] == [1, 2] and all(row["videos_per_s_first"] > 0 and len(row["seconds"]) == 2 for row in result["rows"])


def test_long_run_bench_in_a_tiny_mode(tmp_path, capsys):
    """bench/long_run.py runs a real replayed search and report end to end; its overheads are measured per trial, both clocks."""
    long_run = _load("long_run")
    results = long_run.main(["--trials", "40", "--early", "12", "--window", "9", "--dir", str(tmp_path), "--json", str(tmp_path / "r.json")])
    assert results["trials"] == 40 and results["evaluated"] + results["reused"] == 40
    for clock in ("wall", "cpu"):
        assert results[clock]["early_window"] == [8, 17] and results[clock]["late_window"] == [30, 39]
        assert math.isfinite(results[clock]["ratio"]) and results[clock]["early_ms"] > 0
    assert set(results["report_s"]) == {"report", "open_run", "trials_table", "pareto.html figure", "dashboard.html"}
    assert json.loads((tmp_path / "r.json").read_text())["cpu"]["ratio"] == results["cpu"]["ratio"]
    assert "target <= 60 s" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # the temporary run directory is gone


def test_long_run_overheads_leave_out_the_evaluator():
    long_run = _load("long_run")
    gaps = long_run.overheads([0.0, 1.0, 3.0, 6.0], [(0.5, 0.25), (1.1, 0.5), (1.2, 0.5)])  # two calls during trial 1
    assert gaps.tolist() == [0.75, 1.0, 3.0]
    assert math.isnan(long_run.overheads([0.0, math.nan, 2.0], [])[0])


def test_search_walk_follows_a_real_search_from_run_to_evaluate(tmp_path, capsys):
    """bench/search_walk.py: the stack at evaluate runs through the one trial runner and never comes back to a module it left."""
    result = _load("search_walk").main(["--json", str(tmp_path / "walk.json")])
    route = result["route"]["sequence"]
    assert route[0] == "particle_nas.search._run" and route[-1] == "particle_nas.evaluators._evaluate"
    assert "particle_nas.search._runner" in route and result["route"]["returns"] == 0 and result["route"]["modules"] <= 6
    walk = result["search_walk"]
    assert walk["modules"] == len(set(walk["sequence"])) and walk["steps"] == len(walk["sequence"]) - 1
    assert result["search_walk_with_leaves"]["steps"] >= walk["steps"] and walk["returns"] <= walk["steps"]
    assert json.loads((tmp_path / "walk.json").read_text()) == result
    assert f"route (the stack at evaluate): {result['route']['modules']} modules" in capsys.readouterr().out
