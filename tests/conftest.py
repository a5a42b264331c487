"""Shared fixtures: a real PostgreSQL server for the store's tests, a real Redis server
for the shared-state tests.

The server starts once per session, and only if a test asks for it. Every test that needs
it is marked `postgres`, so `pytest -m "not postgres"` runs the rest (the SQLite half of
the store's tests) without one. Missing PostgreSQL binaries FAIL the PostgreSQL tests (CI
installs them with .ci/run); they are never skipped silently. The same holds for Redis
(Debian's redis-server): the tests that need it are marked `redis`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from relay.cluster.testing import RedisServer, RedisUnavailable
from relay.store.testing import PostgresServer, PostgresUnavailable


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    try:
        server = PostgresServer.start()
    except PostgresUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_env(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """The env of a fresh, empty store on each backend."""
    if request.param == "sqlite":
        return {"RELAY_DATA_DIR": str(tmp_path_factory.mktemp("data"))}
    server: PostgresServer = request.getfixturevalue("pg_server")
    return {"DATABASE_URL": server.create_database("t_" + uuid.uuid4().hex[:12])}


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    try:
        server = RedisServer.start()
    except RedisUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of an empty Redis (flushed before each test)."""
    redis_server.flush()
    return redis_server.url
