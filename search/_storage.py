"""Opening a run's Optuna study storage, and telling which process runs a trial.

Where the study lives (``study.db``, ``study.journal`` or a database URL named
in ``run.json``) is decided by ``_layout.RunLayout.storage``; this module opens
such a location, and names the worker processes that share it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from pathlib import Path
from typing import Any, Iterator

import optuna


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
def database_lock(url: str) -> Iterator[None]:
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
    with database_lock(storage):
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
