"""A real, throwaway PostgreSQL server for the tests: initdb in a temp directory, 127.0.0.1 on a free port, trust auth.

PostgreSQL refuses to run as root, and CI runs as root: there the server runs as the ``postgres`` system user
(Debian's package creates it) in a directory that user owns. Elsewhere it runs as the current user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SUPERUSER = "postgres"  # the database role initdb creates (-U), not the system user


def find_bindir() -> Path | None:
    """The bin directory of the newest installed PostgreSQL with initdb and postgres (Debian's layout, then PATH)."""
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    candidates = [Path(p).parent for p in reversed(debian)]
    if shutil.which("initdb"):
        candidates.append(Path(shutil.which("initdb")).resolve().parent)
    for bindir in candidates:
        if (bindir / "postgres").is_file():
            return bindir
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_as() -> dict[str, Any]:
    """subprocess arguments that drop root to the ``postgres`` system user ({} when not root)."""
    if os.geteuid() != 0:
        return {}
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError("PostgreSQL refuses to run as root and there is no 'postgres' system user to run it as") from None
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": [], "env": {"PATH": os.environ.get("PATH", ""), "HOME": "/tmp", "LC_ALL": "C"}}


@dataclass
class PostgresServer:
    """One running ``postgres`` process; ``url(db)`` for SQLAlchemy/Optuna, ``create_database(name)`` for a fresh one."""

    bindir: Path
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="particle-nas-pg-")))
    port: int = 0
    process: subprocess.Popen | None = None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def start(self, *, timeout: float = 60.0) -> PostgresServer:
        as_user = _run_as()
        data, log = self.root / "data", self.root / "server.log"
        if as_user:
            os.chown(self.root, as_user["user"], as_user["group"])
        subprocess.run(
            [str(self.bindir / "initdb"), "-D", str(data), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"],
            cwd=self.root, check=True, capture_output=True, text=True, timeout=timeout, **as_user,
        )
        for attempt in range(3):  # the free port may be taken between finding it and binding it
            self.port = _free_port()
            with open(log, "a") as out:
                self.process = subprocess.Popen(
                    [
                        str(self.bindir / "postgres"), "-D", str(data), "-p", str(self.port), "-h", "127.0.0.1", "-k", "",
                        # a test server: no durability, so commits cost no fsync on a loaded machine
                        "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=100",
                    ],
                    cwd=self.root, stdout=out, stderr=subprocess.STDOUT, **as_user,
                )
            if self._wait_ready(timeout):
                return self
            self.stop()
        raise RuntimeError(f"postgres did not start on 127.0.0.1; its log:\n{log.read_text()[-2000:]}")

    def _wait_ready(self, timeout: float) -> bool:
        import psycopg

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                psycopg.connect(self.url(), connect_timeout=2).close()
                return True
            except psycopg.OperationalError:
                time.sleep(0.1)
        return False

    def create_database(self, name: str) -> str:
        """A new, empty database; its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def password_role(self, role: str, password: str) -> str:
        """A login role that must give ``password`` (scram-sha-256) on 127.0.0.1, owning a new database of its name; its URL, without the password."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'")
            conn.execute(f'CREATE DATABASE "{role}" OWNER "{role}"')
            hba = Path(conn.execute("SHOW hba_file").fetchone()[0])
            hba.write_text(f"host all {role} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())  # first match wins: before initdb's trust lines
            conn.execute("SELECT pg_reload_conf()")
        return f"postgresql://{role}@127.0.0.1:{self.port}/{role}"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown: ends client sessions, then exits
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
