"""Opening a run's Optuna study storage, and telling which process runs a trial.

Where the study lives (``study.db``, ``study.journal`` or a database URL named
in ``run.json``) is decided by ``_layout.RunLayout.storage``; this module opens
such a location, and names the worker processes that share it.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import optuna


def is_url(location: str) -> bool:
    return "://" in location


# Opening a new SQLite study file creates its schema; a second process opening it at that moment (optuna-dashboard,
# a script reading the study) makes one of the two fail with a duplicate alembic_version row or "table already
# exists". The schema is complete once either has finished, so the loser opens it again.
_SCHEMA_RACE_ATTEMPTS = 5


def open_storage(location: str) -> optuna.storages.BaseStorage:
    """What ``optuna.create_study(storage=...)`` takes for a location from ``resolve_storage``.

    A SQLite study whose schema another process is creating at the same moment is opened again
    (a few times, 0.1-0.8 s apart) instead of failing.
    """
    if is_url(location):
        if not location.startswith("sqlite"):
            return optuna.storages.get_storage(location)
        from sqlalchemy.exc import IntegrityError, OperationalError

        for attempt in range(_SCHEMA_RACE_ATTEMPTS):
            try:
                return optuna.storages.get_storage(location)
            except (IntegrityError, OperationalError):
                if attempt == _SCHEMA_RACE_ATTEMPTS - 1:
                    raise
                time.sleep(0.1 * 2**attempt)
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(location))


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
