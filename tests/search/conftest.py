"""Fixtures for the search tests: a real PostgreSQL server (skipped, saying why, only where none is installed); a local Ray."""

from __future__ import annotations

import itertools
import os
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


@pytest.fixture(scope="module")
def local_ray(request):
    """One local Ray (2 CPUs) for the test module; the engine uses it and leaves it running. The workers get the module by value."""
    pytest.importorskip("ray.tune", reason='the ray backend needs pip install "ray[tune]"')
    import ray
    import ray.cloudpickle

    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"  # a throwaway local Ray
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.cloudpickle.register_pickle_by_value(request.module)  # the workers get the module's evaluator by value
    try:
        yield
    finally:
        ray.shutdown()
        if saved is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved
