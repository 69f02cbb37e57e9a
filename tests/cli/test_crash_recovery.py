"""A run that a crash left behind is read, exported and resumed, with every complete trial.

The crashes are made for real: a process writing ``study.db`` is SIGKILLed in
the middle of a transaction (leaving a hot rollback journal), and a journal
file ends in a record torn by a writer that stopped mid-append.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import yaml
from cli_tools import run_cli

from particle_nas.results import open_run

ROOT = Path(__file__).resolve().parents[2]

# A writer stopped in the middle of a transaction on an Optuna SQLite study: every trial failed, every value and
# attribute deleted, nothing committed. A one-page cache makes SQLite spill the changed pages into study.db before
# the commit (as a large transaction does), so the file itself holds the half-written state and only the rollback
# journal beside it can restore the trials.
KILLED_WRITER = textwrap.dedent(
    """
    import sqlite3, sys, time
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("PRAGMA cache_size = 1")
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE trials SET state = 'FAIL'")
    conn.execute("DELETE FROM trial_values")
    conn.execute("DELETE FROM trial_user_attributes")
    print("in the transaction", flush=True)
    time.sleep(600)
    """
)


def _config(tmp_path: Path, *, name: str, trials: int) -> Path:
    """The replay example (answers from ParticleBench's table: no training), random sampler, ``trials`` trials."""
    doc = yaml.safe_load((ROOT / "examples" / "replay.yaml").read_text())
    doc.update(name=name, output_dir=str(tmp_path / "runs"))
    doc["search"].update(sampler="random", trials=trials)
    doc["evaluators"]["replay"] = str(ROOT / "bench" / "particlebench" / "table.jsonl.gz")
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(scope="module")
def finished_runs(tmp_path_factory) -> dict[str, Path]:
    """Two finished 6-trial replay runs: one in study.db (one worker), one in study.journal (two workers)."""
    tmp = tmp_path_factory.mktemp("crash")
    runs = {}
    for name, workers in (("sqlite", "1"), ("journal", "2")):
        result = run_cli("search", str(_config(tmp, name=name, trials=6)), "--no-progress", "--workers", workers, cwd=tmp)
        assert result.returncode == 0, result.stderr
        runs[name] = tmp / "runs" / name
    assert (runs["sqlite"] / "study.db").is_file() and (runs["journal"] / "study.journal").is_file()
    return runs


def _copy(run: Path, tmp_path: Path) -> Path:
    """A copy of a finished run, with the same directory name (the study's name)."""
    copy = tmp_path / "runs" / run.name
    shutil.copytree(run, copy)
    return copy


def _complete(run: Path) -> dict[int, tuple]:
    study = open_run(run)
    return {t.number: (t.values, t.user_attrs["accuracy"]) for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"}


def _kill_mid_transaction(db: Path) -> None:
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "in the transaction"
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
    journal = db.with_name(db.name + "-journal")
    assert journal.is_file() and journal.stat().st_size > 0, "the killed writer left no hot journal: nothing was tested"


def _tear_last_record(journal: Path) -> int:
    """Append half of a real record without its newline, as a writer killed in the middle of an append leaves it."""
    record = journal.read_bytes().splitlines(keepends=True)[-1]
    torn = record[: len(record) // 2]
    with open(journal, "ab") as handle:
        handle.write(torn)
    return len(torn)


COMMANDS = {
    "report": lambda run, out: ["report", str(run)],
    "export": lambda run, out: ["export", str(run), "--pick", "max-accuracy", "-o", str(out / "picked.yaml")],
    "resume": lambda run, out: ["resume", str(run), "--trials", "8", "--no-progress"],
}


def _check_command_sees_every_trial(command: str, run: Path, before: dict[int, tuple], result: subprocess.CompletedProcess, tmp_path: Path) -> None:
    assert result.returncode == 0, result.stderr
    after = _complete(run)
    assert {n: after[n] for n in before} == before  # every complete trial, unchanged
    if command == "resume":
        assert len(after) >= 8 and (run / "trials.csv").is_file()
    if command in ("report", "resume"):
        table = pd.read_csv(run / "trials.csv")
        assert set(before) <= set(table.loc[table["state"] == "COMPLETE", "number"])
        assert (run / "dashboard.html").is_file()
    if command == "export":
        picked = yaml.safe_load((tmp_path / "picked.yaml").read_text())
        assert picked["source"]["trial"] in before


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_writer_killed_mid_transaction_loses_no_complete_trial(finished_runs, tmp_path, command):
    run = _copy(finished_runs["sqlite"], tmp_path)
    before = _complete(run)
    assert len(before) == 6
    _kill_mid_transaction(run / "study.db")
    result = run_cli(*COMMANDS[command](run, tmp_path), cwd=tmp_path)
    _check_command_sees_every_trial(command, run, before, result, tmp_path)
    assert not (run / "study.db-journal").exists() or (run / "study.db-journal").stat().st_size == 0  # rolled back


def test_a_hot_journal_in_a_read_only_run_says_what_to_do(finished_runs, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes read-only files; the message is for users who cannot")
    run = _copy(finished_runs["sqlite"], tmp_path)
    _kill_mid_transaction(run / "study.db")
    run.chmod(0o555)
    try:
        with pytest.raises(ValueError, match="must be writable to be read: a process stopped in the middle of writing it left study.db-journal"):
            open_run(run)
    finally:
        run.chmod(0o755)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_torn_journal_record_is_dropped_with_a_warning(finished_runs, tmp_path, command):
    run = _copy(finished_runs["journal"], tmp_path)
    before = _complete(run)
    assert len(before) == 6
    journal = run / "study.journal"
    whole = journal.stat().st_size
    torn = _tear_last_record(journal)
    result = run_cli(*COMMANDS[command](run, tmp_path), cwd=tmp_path)
    _check_command_sees_every_trial(command, run, before, result, tmp_path)
    warning = [line for line in result.stderr.splitlines() if line.startswith("particle-nas: warning:")]
    assert warning == [f"particle-nas: warning: {journal} ended in a record torn by a stopped writer ({torn} bytes without an end of line); dropped it, every whole record is kept"]
    lines = journal.read_bytes().splitlines(keepends=True)
    assert all(line.endswith(b"\n") for line in lines) and all(json.loads(line) for line in lines)  # every record whole again
    if command != "resume":
        assert journal.stat().st_size == whole


def test_a_journal_damaged_before_its_last_line_is_named_not_rewritten(finished_runs, tmp_path):
    run = _copy(finished_runs["journal"], tmp_path)
    journal = run / "study.journal"
    lines = journal.read_bytes().splitlines(keepends=True)
    lines[3] = lines[3][:10] + b"\n"  # a record cut short in the middle of the file, then a torn tail
    journal.write_bytes(b"".join(lines) + b'{"op_code": 5, "worker')
    result = run_cli("report", str(run), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"particle-nas: error: {journal} must hold one JSON record per line, but line 4 is damaged (11 bytes); the records before it are intact"


def test_a_run_started_again_with_another_storage_is_refused_and_keeps_its_weights(finished_runs, tmp_path):
    run = _copy(finished_runs["sqlite"], tmp_path)
    weights = {p.name: p.read_bytes() for p in (run / "weights").glob("*.safetensors")} if (run / "weights").is_dir() else {}
    config = _config(tmp_path, name="sqlite", trials=8)
    other = f"sqlite:///{tmp_path / 'other.db'}"
    result = run_cli("search", str(config), "--no-progress", "--storage", other, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"particle-nas: error: storage must be left out for {run}, which holds its study in study.db, but got {other}; use --name for a new run."
    assert not (tmp_path / "other.db").exists() and len(_complete(run)) == 6
    assert {p.name: p.read_bytes() for p in (run / "weights").glob("*.safetensors")} == weights if weights else True
