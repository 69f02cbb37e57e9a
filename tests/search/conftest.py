"""Fixtures for the search tests: a real PostgreSQL server (skipped, saying why, only where none is installed)."""

from __future__ import annotations

import itertools
from typing import Iterator

import pytest

from postgres_server import PostgresServer, find_bindir

_databases = itertools.count()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session, on 127.0.0.1 at a free port, removed at the end."""
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("needs PostgreSQL's initdb and postgres (apt-get install -y postgresql; .ci/run installs it)")
    server = PostgresServer(bindir)
    try:
        yield server.start()
    finally:
        server.remove()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL of a new, empty database on the session's server (one per test)."""
    return postgres_server.create_database(f"test_{next(_databases)}")
