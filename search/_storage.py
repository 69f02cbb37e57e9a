"""Where a run's Optuna study lives, and how several processes share it safely.

A run directory holds its study in one of three places:

- ``study.db``: SQLite, for one writer (the default local search);
- ``study.journal``: Optuna's JournalStorage file backend, safe for several
  worker processes on one machine (``--workers N``);
- a database URL given by the user (PostgreSQL), named in ``run.json``.

``run.json`` records how the run was started (backend, workers, storage) so
``particle-nas resume runs/NAME`` can continue it the same way.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Iterator

import optuna

STUDY_DB = "study.db"
STUDY_JOURNAL = "study.journal"
RUN_FILE = "run.json"
LOCK_FILE = "study.lock"


def sqlite_url(run_dir: Path) -> str:
    return f"sqlite:///{(Path(run_dir) / STUDY_DB).resolve()}"


def journal_path(run_dir: Path) -> Path:
    return (Path(run_dir) / STUDY_JOURNAL).resolve()


def read_run_file(run_dir: Path) -> dict[str, Any]:
    """``run.json`` of a run directory ({} when there is none)."""
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} must be the JSON file particle-nas wrote, but reading it failed: {err}.") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, but got {type(data).__name__}.")
    return data


def write_run_file(run_dir: Path, **fields: Any) -> None:
    """Merge ``fields`` into ``run.json`` (written atomically)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    data = {**read_run_file(run_dir), **fields}
    tmp = run_dir / f".{RUN_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, run_dir / RUN_FILE)


def resolve_storage(run_dir: Path, *, url: str | None = None, workers: int = 1) -> str:
    """The storage location of a run: a database URL or the path of a journal file.

    An explicit ``url`` (or the one ``run.json`` names) wins. Otherwise an
    existing ``study.journal`` or ``study.db`` is used as it is; a new run gets
    a journal when several workers will write to it, else SQLite. Several
    workers on an existing SQLite study are refused: SQLite is not safe for
    concurrent writers.
    """
    run_dir = Path(run_dir)
    url = url or read_run_file(run_dir).get("storage")
    if url:
        if str(url).startswith("sqlite") and workers > 1:
            raise ValueError(f"workers must be 1 with a SQLite storage (several writers on one SQLite file are unsafe), but got {workers}; use a PostgreSQL URL or leave --storage out for a journal file.")
        return str(url)
    journal, db = journal_path(run_dir), run_dir / STUDY_DB
    if journal.is_file():
        return str(journal)
    if db.is_file():
        if workers > 1:
            raise ValueError(
                f"workers must be 1 for {run_dir}, which holds a SQLite study (several writers on one SQLite file are unsafe), but got {workers}; "
                "start a new run (--name) to use several workers."
            )
        return sqlite_url(run_dir)
    return str(journal) if workers > 1 else sqlite_url(run_dir)


def is_url(location: str) -> bool:
    return "://" in location


# Opening a new study database creates its schema; a second process opening it at that moment (optuna-dashboard,
# a script reading the study, the workers of N machines starting on one new PostgreSQL database) makes all but one
# fail with a duplicate alembic_version row, "table already exists" or, on PostgreSQL, a duplicate pg_type row. The
# schema is complete once one of them has finished, so the losers open it again.
_SCHEMA_RACE_ATTEMPTS = 5
POSTGRES_HINT = "pip install 'particle-nas[postgres]' (or pip install 'psycopg[binary]')"


def open_storage(location: str) -> optuna.storages.BaseStorage:
    """What ``optuna.create_study(storage=...)`` takes for a location from ``resolve_storage``.

    A database whose schema another process is creating at the same moment is opened again
    (a few times, 0.1-0.8 s apart) instead of failing. A database URL that cannot be opened
    (no driver, no server, bad URL) is a ValueError naming it (SQLite's errors are raised as they are).
    """
    if is_url(location):
        return _open_database(location)
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(location))


def _open_database(url: str) -> optuna.storages.BaseStorage:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError, ProgrammingError

    try:
        shown = make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        raise ValueError(f"storage must be a database URL like postgresql://USER@HOST/DATABASE, but got {url!r}.") from None
    for attempt in range(_SCHEMA_RACE_ATTEMPTS):
        try:
            return optuna.storages.get_storage(url)
        except ImportError as err:  # optuna wraps the driver's ModuleNotFoundError
            hint = POSTGRES_HINT if url.startswith("postgresql") else "install the driver SQLAlchemy names for it"
            raise ValueError(f"storage {shown} needs its database driver, but it is not installed ({err.__cause__ or err}): {hint}") from None
        except ArgumentError as err:  # an unknown dialect or driver name
            raise ValueError(f"storage must be a database URL like postgresql://USER@HOST/DATABASE, but got {shown} ({err}).") from None
        except (IntegrityError, OperationalError, ProgrammingError) as err:
            if attempt < _SCHEMA_RACE_ATTEMPTS - 1:
                time.sleep(0.1 * 2**attempt)
            elif url.startswith("sqlite"):
                raise
            else:
                reason = " ".join(str(getattr(err, "orig", None) or err).split())
                raise ValueError(f"storage must be a database particle-nas can open, but opening {shown} failed: {reason}") from None
    raise AssertionError("unreachable")


_LOCK_KEY = 0x7061727469636C65  # pg_advisory_xact_lock key of particle-nas's run lock ("particle"), one per database
_lock_engines: dict[str, Any] = {}


@contextlib.contextmanager
def _database_lock(url: str) -> Iterator[None]:
    """A PostgreSQL advisory lock held for the block: excludes every worker on the database, on every machine.

    Released when the block ends, or by the server when the process holding it dies.
    """
    import sqlalchemy

    engine = _lock_engines.get(url)
    if engine is None:
        engine = _lock_engines[url] = sqlalchemy.create_engine(url, pool_size=1, pool_pre_ping=True)
    with engine.begin() as conn:  # the transaction's end releases the lock
        conn.execute(sqlalchemy.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        yield


WORKER_SLOTS = "worker_slots"  # study user attribute: how many sampler slots claim_sampler_slot has handed out


def claim_sampler_slot(study: optuna.Study, storage: str) -> int:
    """0, 1, 2, ... for the worker processes of a study in a PostgreSQL database, in the order they start, on every machine.

    A worker seeds its sampler with the run's seed plus its slot. The machines sharing a study all run
    the same config, seed included; numbered by machine-local worker index instead, their samplers
    would draw the same particles in the same order.
    """
    with _database_lock(storage):
        slot = int(study.user_attrs.get(WORKER_SLOTS, 0))
        study.set_user_attr(WORKER_SLOTS, slot + 1)
    return slot


def dashboard_hint(location: str) -> str:
    """The optuna-dashboard command for a storage location."""
    return f"optuna-dashboard {location}"


def _start_ticks(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux), "" where unknown: tells a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    fields = stat.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 else ""


def worker_id() -> str:
    """``host:pid:start`` of this process, recorded on every trial it runs."""
    return f"{socket.gethostname()}:{os.getpid()}:{_start_ticks(os.getpid())}"


def worker_alive(worker: str) -> bool | None:
    """Whether the process named by ``worker_id()`` still runs (None: on another host, unknown)."""
    host, pid, start = (str(worker).rsplit(":", 2) + ["", "", ""])[:3]
    if host != socket.gethostname() or not pid.isdigit():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return not start or _start_ticks(int(pid)) in ("", start)


@contextlib.contextmanager
def run_lock(run_dir: Path, *, storage: str | None = None) -> Iterator[None]:
    """An exclusive lock on the run, held while a worker decides whether to start a trial.

    A file lock in the run directory excludes the workers of this machine; with a PostgreSQL
    ``storage`` an advisory lock on the database also excludes the workers of other machines.
    """
    path = Path(run_dir) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            if storage is not None and storage.startswith("postgresql"):
                with _database_lock(storage):
                    yield
            else:
                yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
