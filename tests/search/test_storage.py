"""Opening a run's study database (SQLite, PostgreSQL) while another process creates it."""

from __future__ import annotations

import multiprocessing

import optuna
import pytest
from sqlalchemy.exc import OperationalError

from particle_nas.search import open_storage
from particle_nas.search import _storage


def _open(url: str, barrier, results) -> None:
    barrier.wait()  # all processes create the schema of the same new file at once
    try:
        optuna.create_study(study_name="s", storage=open_storage(url), load_if_exists=True)
        results.put("ok")
    except Exception as err:  # reported to the test, which names it
        results.put(f"{type(err).__name__}: {err}"[:200])


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_processes_opening_a_new_study_database_at_once_all_succeed(tmp_path, request, kind):
    # Without the retry in open_storage, 7 of 40 such openings of a SQLite file failed here ("table ... already
    # exists", a duplicate alembic_version row): what a dashboard opened as a search starts would do to the search.
    # On a new PostgreSQL database 3 of every 4 failed (a duplicate pg_type row): N machines starting one search.
    ctx = multiprocessing.get_context("fork")
    for attempt in range(5 if kind == "sqlite" else 1):
        url = f"sqlite:///{tmp_path / f'study-{attempt}.db'}" if kind == "sqlite" else request.getfixturevalue("postgres_url")
        barrier, results = ctx.Barrier(4), ctx.Queue()
        procs = [ctx.Process(target=_open, args=(url, barrier, results)) for _ in range(4)]
        for p in procs:
            p.start()
        outcomes = [results.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=60)
        assert outcomes == ["ok"] * 4
        assert [s.study_name for s in optuna.get_all_study_summaries(open_storage(url))] == ["s"]


def test_a_storage_error_that_persists_is_raised(tmp_path, monkeypatch):
    calls = []

    def broken(location):
        calls.append(location)
        raise OperationalError("CREATE TABLE studies", {}, Exception("disk I/O error"))

    monkeypatch.setattr(optuna.storages, "get_storage", broken)
    monkeypatch.setattr(_storage.time, "sleep", lambda s: None)
    with pytest.raises(OperationalError, match="disk I/O error"):
        open_storage(f"sqlite:///{tmp_path / 'x.db'}")
    assert len(calls) == _storage._SCHEMA_RACE_ATTEMPTS
