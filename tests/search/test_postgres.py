"""Searches whose study lives in a real PostgreSQL database (``--storage postgresql://...``), driven through the CLI:
several workers and several "machines" (run directories) on one study, a SIGKILLed worker, ``resume``, ``report``
and optuna-dashboard on the URL. The server comes from the ``postgres_url`` fixture (conftest.py)."""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from particle_nas.cli import main
from particle_nas.search import INTERRUPTED, STORAGE_ENV, open_storage
from particle_nas.search import RunLayout
from particle_nas.search._storage import claim_sampler_slot

TINY = {
    "name": "tiny",
    "seed": 0,
    "search": {"sampler": "random", "trials": 6},
    "space": {
        "factorization": ["full", "r2plus1d", "csn_ir", "spatial_only", "temporal_shift"],
        "wiring": ["plain", "residual", "bottleneck"],
        "temporal_kernel": [3, 5],
    },
    "network": {"stem_channels": 8, "widths": [8, 16], "depths": [1, 1], "temporal_strides": [1, 1], "spatial_strides": [1, 2]},
    "data": {"num_classes": 4, "clip": [4, 16, 16], "train_size": 48, "val_size": 16},
    "train": {"epochs": 1, "batch_size": 16},
}
STALE = f"{INTERRUPTED}: the process running it stopped"
WAIT_S = 150  # longest wait for a state of the search (a loaded 2-core machine)


def _config(tmp_path: Path, **search) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY, "search": {**TINY["search"], **search}}))
    return path


def _main(capsys, *args: str) -> str:
    """Run the CLI in this process (its worker processes are spawned as usual); its stdout."""
    code = main(list(args))
    out, err = capsys.readouterr()
    assert code == 0, err[-3000:]
    return out


def _study(url: str, name: str = "tiny") -> optuna.Study | None:
    try:
        return optuna.load_study(study_name=name, storage=open_storage(url))
    except KeyError:  # not created yet
        return None


def _finished(trials) -> list[optuna.trial.FrozenTrial]:
    return [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED) or (t.state == TrialState.FAIL and t.user_attrs.get("fail_reason") != STALE)]


def _pid(trial: optuna.trial.FrozenTrial) -> int:
    return int(trial.user_attrs["worker"].rsplit(":", 2)[1])


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])


def _csv_numbers(path: Path) -> list[int]:
    with open(path, newline="") as handle:
        return [int(row["number"]) for row in csv.DictReader(handle)]


def _assert_run_dir_uses(run_dir: Path, url: str) -> None:
    """The study is in the database, not beside the run: run.json names the URL, no study file was made."""
    assert json.loads((run_dir / "run.json").read_text())["storage"] == url
    assert not (run_dir / "study.db").exists() and not (run_dir / "study.journal").exists()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _dashboard_studies(url: str) -> list[dict]:
    """Start ``optuna-dashboard URL`` (its console script, as a user runs it) and read its study list."""
    port = _free_port()
    script = "import sys; from importlib.metadata import entry_points; sys.exit(entry_points(group='console_scripts', name='optuna-dashboard')[0].load()())"
    server = subprocess.Popen([sys.executable, "-c", script, url, "--host", "127.0.0.1", "--port", str(port), "--server", "wsgiref"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=10) as response:
                    return json.loads(response.read())["study_summaries"]
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, server.stderr.read().decode()[-2000:] if server.poll() is not None else "no answer"
                time.sleep(0.2)
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_two_workers_on_postgresql_run_exactly_the_trials(tmp_path, capsys, postgres_url):
    pytest.importorskip("optuna_dashboard", reason="needs optuna-dashboard (pip install -e '.[test]')")
    config = _config(tmp_path, trials=6)
    run_dir = tmp_path / "runs" / "tiny"
    out = _main(capsys, "search", str(config), "--workers", "2", "--storage", postgres_url, "--output-dir", str(tmp_path / "runs"), "--no-progress")
    assert "6/6 trials finished" in out and f"optuna-dashboard {postgres_url}" in out
    trials = _study(postgres_url).get_trials()
    assert sorted(t.number for t in trials) == list(range(6)) and len(_finished(trials)) == 6  # none lost, none extra
    assert all(t.state == TrialState.COMPLETE for t in trials)
    workers = {_pid(t) for t in trials}
    assert len(workers) == 2  # both worker processes ran trials
    assert _study(postgres_url).user_attrs["worker_slots"] == 2
    _assert_run_dir_uses(run_dir, postgres_url)
    assert _csv_numbers(run_dir / "trials.csv") == list(range(6))
    assert (run_dir / "dashboard.html").is_file() and (run_dir / "best.yaml").is_file()

    # the study as optuna-dashboard serves it from the same URL
    assert [s["study_name"] for s in _dashboard_studies(postgres_url)] == ["tiny"]


@pytest.mark.slow
def test_two_machines_share_one_study_through_the_database(tmp_path, capsys, postgres_url):
    """Two searches with their own run directories (two machines) and the same name fill one study together."""
    config = _config(tmp_path, trials=8)
    search = ["search", str(config), "--storage", postgres_url, "--output-dir"]
    other = subprocess.Popen([sys.executable, "-m", "particle_nas", *search, str(tmp_path / "machine-b"), "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _main(capsys, *search, str(tmp_path / "machine-a"), "--no-progress")
    finally:
        error = other.communicate(timeout=600)[1]
    assert other.returncode == 0, error[-3000:]
    study = _study(postgres_url)
    trials = study.get_trials()
    assert sorted(t.number for t in trials) == list(range(8)) and len(_finished(trials)) == 8
    assert study.user_attrs["worker_slots"] == 2  # each machine's worker seeded its sampler apart: not the same particles
    for machine in ("a", "b"):
        run_dir = tmp_path / f"machine-{machine}" / "tiny"
        _assert_run_dir_uses(run_dir, postgres_url)
        _main(capsys, "report", str(run_dir))  # after the last machine stopped: every trial, from the database
        assert _csv_numbers(run_dir / "trials.csv") == list(range(8))


def _hold_lock(run_dir: Path, url: str, held, release) -> None:
    with RunLayout(run_dir).lock(storage=url):
        held.set()
        release.wait(30)


def _claim(url: str, barrier, slots) -> None:
    study = optuna.load_study(study_name="s", storage=open_storage(url))
    barrier.wait()
    slots.put(claim_sampler_slot(study, url))


def test_workers_starting_at_once_on_any_machine_get_distinct_sampler_slots(postgres_url):
    optuna.create_study(study_name="s", storage=open_storage(postgres_url))
    context = multiprocessing.get_context("fork")
    barrier, slots = context.Barrier(4), context.Queue()
    procs = [context.Process(target=_claim, args=(postgres_url, barrier, slots)) for _ in range(4)]
    for proc in procs:
        proc.start()
    claimed = sorted(slots.get(timeout=60) for _ in procs)
    for proc in procs:
        proc.join(timeout=60)
    assert claimed == [0, 1, 2, 3]
    assert _study(postgres_url, "s").user_attrs["worker_slots"] == 4


def test_run_lock_excludes_workers_of_other_run_directories_on_one_database(tmp_path, postgres_url):
    """Workers of other machines do not share the run directory's file lock: the database's advisory lock excludes them."""
    context = multiprocessing.get_context("fork")
    held, release = context.Event(), context.Event()
    holder = context.Process(target=_hold_lock, args=(tmp_path / "machine-a", postgres_url, held, release))
    holder.start()
    try:
        assert held.wait(30)
        with RunLayout(tmp_path / "machine-b").lock():  # without the database: the file lock of another directory does not wait
            pass
        threading.Timer(0.5, release.set).start()
        with RunLayout(tmp_path / "machine-b").lock(storage=postgres_url):
            assert release.is_set()  # entered only after the other machine let go
    finally:
        release.set()
        holder.join(30)


@pytest.mark.slow
def test_sigkilled_workers_on_postgresql_resume_without_losing_or_repeating_a_trial(tmp_path, capsys, postgres_url):
    config = _config(tmp_path, trials=8)
    run_dir = tmp_path / "runs" / "tiny"
    cmd = [sys.executable, "-m", "particle_nas", "search", str(config), "--workers", "2", "--storage", postgres_url, "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + WAIT_S

        def running(*, besides: int = 0) -> optuna.trial.FrozenTrial:
            """A trial that a live worker (not ``besides``) is running now, once one trial is complete; waits for one."""
            study = None
            while proc.poll() is None and time.monotonic() < deadline:
                study = study or _study(postgres_url)
                trials = study.get_trials(deepcopy=False) if study else []
                for t in trials:
                    if t.state == TrialState.RUNNING and "worker" in t.user_attrs and _pid(t) != besides:
                        if any(c.state == TrialState.COMPLETE for c in trials):
                            return t
                time.sleep(0.1)
            raise AssertionError("the search ended, or took too long, before a worker could be killed mid-trial")

        # one worker, mid-trial: SIGKILL, no chance to clean up; the other carries on
        first = running()
        victim = _pid(first)
        assert _parent(victim) == proc.pid  # a worker process of the search, not the search itself
        os.kill(victim, signal.SIGKILL)
        # then the whole search (the command and its remaining worker), while that worker is mid-trial
        running(besides=victim)  # the killed worker's trial stays RUNNING until the other fails it
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    study = _study(postgres_url)
    trials = study.get_trials()
    # the trials the kills cut short: left RUNNING, or the first one already failed by the other worker
    killed = {t.number for t in trials if t.state == TrialState.RUNNING or t.user_attrs.get("fail_reason") == STALE}
    assert 1 <= len(killed) <= 2
    before = {t.number: (t.values, t.user_attrs["particle"], t.datetime_complete) for t in trials if t.state == TrialState.COMPLETE}
    assert 1 <= len(before) < 8

    started = time.time()
    out = _main(capsys, "resume", str(run_dir), "--no-progress")
    assert "8/8 trials finished" in out
    trials = study.get_trials()
    after = {t.number: (t.values, t.user_attrs["particle"], t.datetime_complete) for t in trials if t.state == TrialState.COMPLETE}
    assert {n: after[n] for n in before} == before  # every trial completed before the kills is still there, unchanged
    assert len(_finished(trials)) == 8  # exactly the target: the interrupted trials were replaced, none ran twice
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    interrupted = {t.number for t in trials if t.state == TrialState.FAIL and t.user_attrs.get("fail_reason") == STALE}
    assert interrupted == killed
    assert sorted(t.number for t in trials) == list(range(8 + len(killed)))
    _assert_run_dir_uses(run_dir, postgres_url)
    assert _csv_numbers(run_dir / "trials.csv") == list(range(8 + len(killed)))
    assert (run_dir / "dashboard.html").stat().st_mtime >= started  # written by the resume, from the database
    assert study.user_attrs["worker_slots"] == 4  # the resumed workers drew new particles, not the first ones again


def test_a_missing_driver_is_one_line_with_the_install_hint(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg fails, as without the [postgres] extra
    monkeypatch.setitem(sys.modules, "psycopg2", None)
    config = _config(tmp_path)
    assert main(["search", str(config), "--storage", "postgresql://someone@127.0.0.1:9/db", "--output-dir", str(tmp_path / "runs"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("particle-nas: error: storage postgresql://someone@127.0.0.1:9/db needs its database driver, but it is not installed")
    assert err[-1].endswith("pip install 'particle-nas[postgres]' (or pip install 'psycopg[binary]')")


@pytest.mark.parametrize(
    "url, message",
    [
        ("postgresql://someone:secret@127.0.0.1:{port}/db", "storage must be a database particle-nas can open, but opening postgresql://someone:***@127.0.0.1:{port}/db failed: "),
        ("postgres://someone@127.0.0.1/db", "storage must be a database URL like postgresql://USER@HOST/DATABASE, but got postgres://someone@127.0.0.1/db"),
    ],
)
def test_an_unreachable_or_unknown_database_is_one_line_without_the_password(tmp_path, capsys, url, message):
    port = _free_port()  # nothing listens there
    config = _config(tmp_path)
    assert main(["search", str(config), "--storage", url.format(port=port), "--output-dir", str(tmp_path / "runs"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"particle-nas: error: {message.format(port=port)}") and "secret" not in err[-1]


def _files_holding(root: Path, secret: str) -> list[str]:
    return [str(p.relative_to(root)) for p in sorted(root.rglob("*")) if p.is_file() and secret.encode() in p.read_bytes()]


def test_a_storage_password_is_never_written_or_shown_and_resume_asks_for_it(tmp_path, capsys, postgres_server, postgres_url, monkeypatch):
    secret = "s3cret-Pa55"
    bare = postgres_server.password_role("keeper", secret)  # this role's connections must give the password
    url = bare.replace("keeper@", f"keeper:{secret}@")
    for name in (STORAGE_ENV, "PGPASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-pgpass"))
    config = _config(tmp_path, trials=2)
    run_dir = tmp_path / "runs" / "tiny"

    out = _main(capsys, "search", str(config), "--storage", url, "--output-dir", str(tmp_path / "runs"), "--no-progress")
    assert f"optuna-dashboard {bare.replace('keeper@', 'keeper:***@')}" in out and secret not in out
    assert json.loads((run_dir / "run.json").read_text())["storage"] == bare
    assert _files_holding(run_dir, secret) == []  # run.json, search.log, trials.csv, the pages, best.yaml

    # run.json keeps no password: without one, resume stops in one line that says where to give it
    assert main(["resume", str(run_dir), "--trials", "3", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no password supplied" in err[0] and f"--storage or ${STORAGE_ENV}, or set PGPASSWORD" in err[0]
    # ... given with --storage, or in the environment
    assert "3/3 trials finished" in _main(capsys, "resume", str(run_dir), "--trials", "3", "--storage", url, "--no-progress")
    monkeypatch.setenv(STORAGE_ENV, url)
    out = _main(capsys, "resume", str(run_dir), "--trials", "4", "--no-progress")
    assert "4/4 trials finished" in out and secret not in out
    assert _files_holding(run_dir, secret) == []
    # another database for the same run directory is refused: a second study there would overwrite the first's weights
    assert main(["resume", str(run_dir), "--storage", postgres_url, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == f"particle-nas: error: storage must be the one this run was started with ({bare}), but got {postgres_url}; use --name for a new run."
