"""Opening a run's Optuna study storage, and telling which process runs a trial.

Where the study lives (``study.db``, ``study.journal`` or a database URL named
in ``run.json``) is decided by ``_layout.RunLayout.storage``; this module opens
such a location, and names the worker processes that share it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import optuna


def is_url(location: str) -> bool:
    return "://" in location


STORAGE_ENV = "PARTICLE_NAS_STORAGE"  # a database URL with its password, for a run whose run.json names that database


def _split_password(location: str) -> tuple[str, str | None]:
    """(the location without its password, the password or None); a path or a URL that SQLAlchemy cannot parse is kept as it is."""
    if not is_url(location):
        return location, None
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(location)
    except ArgumentError:
        return location, None
    if url.password is None:
        return location, None
    return url._replace(password=None).render_as_string(hide_password=False), str(url.password)  # URL.set leaves a None as it was


def without_password(location: str) -> str:
    """``location`` with no password: what run.json keeps (libpq then reads PGPASSWORD or ~/.pgpass)."""
    return _split_password(location)[0]


def shown_location(location: str) -> str:
    """``location`` for people: a URL's password written ``***`` (terminal, logs, pages)."""
    if _split_password(location)[1] is None:
        return location
    from sqlalchemy.engine import make_url

    return make_url(location).render_as_string(hide_password=True)


def with_password(stored: str, given: str | None = None) -> str:
    """The stored (password-less) location, with the password of ``given`` or of $PARTICLE_NAS_STORAGE when either names the same database.

    ``given`` (``--storage``) naming another database is a ValueError: a run
    directory holds one study, and a second one in it would overwrite the
    first's weights. Without either, the stored URL is used as it is, and the
    database driver looks for the password where libpq does (PGPASSWORD, ~/.pgpass).
    """
    if given is not None:
        if without_password(given) != without_password(stored):
            raise ValueError(f"storage must be the one this run was started with ({shown_location(stored)}), but got {shown_location(given)}; use --name for a new run.")
        return given
    env = os.environ.get(STORAGE_ENV)
    if env and without_password(env) == without_password(stored):
        return env
    return stored


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

    recover_journal(location)
    return JournalStorage(JournalFileBackend(location))


def recover_journal(path: str | os.PathLike[str]) -> int:
    """Drop the torn last record of a journal file (a writer killed mid-write); the bytes dropped (0: it was whole).

    Optuna appends each batch of records as complete lines, under the journal's
    lock (a ``.lock`` symlink beside the file). A writer killed in the middle of
    an append (SIGKILL, a full disk) leaves a last line without its newline:
    Optuna skips it when reading, but the next append would glue a new record
    to it, and that journal could never be read again. The fragment is cut off
    under the same lock, so a live writer's append is never mistaken for one,
    with a one-line warning on stderr. A broken line before the last one is
    a ValueError naming it: that journal was damaged by something else.
    """
    from optuna.storages.journal import JournalFileSymlinkLock

    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return 0
    lock = JournalFileSymlinkLock(str(path))  # the lock JournalFileBackend takes by default, so appends and this exclude each other
    lock.acquire()
    try:
        with open(path, "rb+") as handle:
            size = handle.seek(0, os.SEEK_END)
            keep = _last_line_end(handle, size)
            if keep == size:
                return 0
            handle.truncate(keep)
            handle.flush()
            os.fsync(handle.fileno())
    finally:
        lock.release()
    print(f"particle-nas: warning: {path} ended in a record torn by a stopped writer ({size - keep} bytes without an end of line); dropped it, every whole record is kept", file=sys.stderr)
    _check_journal_lines(path)
    return size - keep


def _last_line_end(handle: Any, size: int, *, chunk: int = 1 << 16) -> int:
    """The offset just past the file's last newline (0 when it has none)."""
    end = size
    while end > 0:
        start = max(0, end - chunk)
        handle.seek(start)
        block = handle.read(end - start)
        newline = block.rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        end = start
    return 0


def _check_journal_lines(path: Path) -> None:
    """A ValueError naming the first line of the journal that is not a JSON record."""
    import json

    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                json.loads(line)
            except ValueError:
                raise ValueError(f"{path} must hold one JSON record per line, but line {number} is damaged ({len(line)} bytes); the records before it are intact") from None


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
                if "password" in reason and _split_password(url)[1] is None:
                    reason += f" (run.json keeps no password: give the URL with it as --storage or ${STORAGE_ENV}, or set PGPASSWORD or ~/.pgpass)"
                raise ValueError(f"storage must be a database particle-nas can open, but opening {shown} failed: {reason}") from None
    raise AssertionError("unreachable")


def storage_full(err: BaseException, *, where: str | os.PathLike[str] | None = None) -> str | None:
    """One line when ``err``, or an exception that caused it, is a full disk (ENOSPC, SQLite's "database or disk is full"); else None.

    ``where``: a folder on that disk, whose free bytes the line gives.
    """
    seen: BaseException | None = err
    while seen is not None:
        full = isinstance(seen, OSError) and seen.errno == errno.ENOSPC
        if full or "database or disk is full" in str(seen):
            free = ""
            if where is not None:
                with contextlib.suppress(OSError):
                    free = f": {shutil.disk_usage(where).free:,} bytes free in {where}"
            return f"the disk is full ({' '.join(str(getattr(seen, 'orig', None) or seen).split())}){free}"
        seen = seen.__cause__ or seen.__context__
    return None


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
