"""A real PostgreSQL server going away and coming back: live calls carry on with every
audio frame delivered, their records queue and are retried, the backlog is written when
the server returns, a full backlog drops (and counts) the oldest, and the relay starts
even when the database is down."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from relay import metrics as relay_metrics
from relay.history_api import add_routes
from relay.store import CallRecord, EndReason, Profile, Store, Turn, from_env
from relay.store.db import current_revision
from relay.store.testing import PostgresServer
from shared.secret import Secret

pytestmark = pytest.mark.postgres

FRAME_MS = 20


@pytest.fixture
def database(pg_server: PostgresServer) -> Iterator[str]:
    """A fresh database; the server is running again when the test ends, whatever happened."""
    url = pg_server.create_database("t_" + uuid.uuid4().hex[:12])
    try:
        yield url
    finally:
        if not (pg_server.data / "postmaster.pid").exists():
            pg_server.start_again()


def settings(url: str, **changes: Any) -> Any:
    fast = {"retry_initial_s": 0.05, "retry_max_s": 0.2, "resolve_timeout_s": 1.0}
    return dataclasses.replace(from_env({"DATABASE_URL": url}), **{**fast, **changes})


@pytest.fixture
async def store(database: str) -> AsyncIterator[Store]:
    s = await Store.open(settings(database))
    try:
        yield s
    finally:
        await s.close(timeout=2)


async def until(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def live_call(sid: str, frames: int, store: Store) -> list[int]:
    """A call's audio path: a frame every 20 ms from the caller's side through a queue to
    the model's side; when it ends, its record is submitted. Returns the frames received."""
    pipe: asyncio.Queue[int | None] = asyncio.Queue()
    received: list[int] = []

    async def caller() -> None:
        for n in range(frames):
            pipe.put_nowait(n)
            await asyncio.sleep(FRAME_MS / 1000)
        pipe.put_nowait(None)

    async def model_side() -> None:
        while (frame := await pipe.get()) is not None:
            received.append(frame)

    started = time.time()
    await asyncio.gather(caller(), model_side())
    store.submit(
        CallRecord(
            call_sid=sid,
            started_at=started,
            ended_at=time.time(),
            end_reason=EndReason.CALLER_HUNG_UP,
            turns=[Turn(role="user", text=f"call {sid} during the outage")],
        )
    )
    return received


async def test_an_outage_during_live_calls_loses_no_audio_and_the_backlog_is_written(
    pg_server: PostgresServer, store: Store
) -> None:
    assert not inspect.iscoroutinefunction(store.submit)  # the call path never awaits it
    store.submit(CallRecord(call_sid="CA-before", started_at=time.time()))
    assert await store.flush(10) and store.ready

    retries_before = relay_metrics.value("relay_history_write_retries_total")
    pg_server.stop()
    frames = 60  # 1.2 s of audio per call
    results = await asyncio.gather(*(live_call(f"CA-live-{i}", frames, store) for i in range(4)))
    for received in results:
        assert received == list(range(frames))  # every frame, in order

    await until(lambda: store.writer.stats.retries >= 2)
    assert store.writer.depth == 4 and not store.ready
    assert store.status()["queued"] == 4
    assert relay_metrics.value("relay_history_write_retries_total") >= retries_before + 2
    assert store.writer.stats.dropped == 0

    pg_server.start_again()
    assert await store.flush(15), "the backlog was not written after the server came back"
    assert store.ready
    for i in range(4):
        stored = await store.get_call(f"CA-live-{i}")
        assert stored is not None and stored.turns[0].text == f"call CA-live-{i} during the outage"
    assert await store.get_call("CA-before") is not None


async def test_a_full_backlog_drops_the_oldest_and_counts_it(
    pg_server: PostgresServer, database: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = await Store.open(settings(database, queue_max=3))
    try:
        before = relay_metrics.value("relay_history_dropped_total", reason="queue_full")
        pg_server.stop()
        for i in range(5):
            store.submit(CallRecord(call_sid=f"CA{i}", started_at=time.time() + i))
        await until(lambda: store.writer.stats.retries >= 1)
        assert relay_metrics.value("relay_history_dropped_total", reason="queue_full") == before + 2
        logged = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
        assert "CA0" in logged and "CA1" in logged and "queue_full" in logged
        pg_server.start_again()
        assert await store.flush(15)
        page = await store.list_calls()
        assert sorted(c.call_sid for c in page.calls) == ["CA2", "CA3", "CA4"]
    finally:
        await store.close(timeout=2)


async def test_the_relay_starts_while_the_database_is_down(
    pg_server: PostgresServer, database: str
) -> None:
    pg_server.stop()
    store = await Store.open(settings(database))  # no exception: calls must go on
    try:
        assert not store.ready
        assert await store.profiles.resolve("+15551234567") is None  # the defaults
        store.submit(CallRecord(call_sid="CA-early", started_at=time.time()))
        await until(lambda: store.writer.stats.retries >= 1)
        pg_server.start_again()
        assert await store.flush(15)
        assert await current_revision(store.engine) is not None  # migrated on the way
        assert await store.get_call("CA-early") is not None
    finally:
        await store.close(timeout=2)


async def test_reads_during_an_outage(pg_server: PostgresServer, store: Store) -> None:
    await store.profiles.put(Profile(name="sales", voice="cedar"))
    await store.profiles.map_number("+15557654321", "sales")
    resolved = await store.profiles.resolve("+15557654321")
    assert resolved is not None and resolved.name == "sales"

    app = web.Application()
    add_routes(app, store, Secret("tok"))
    async with TestClient(TestServer(app)) as client:
        auth = {"Authorization": "Bearer tok"}
        pg_server.stop()
        # /twiml still gets the number's profile: the last one seen.
        again = await store.profiles.resolve("+15557654321")
        assert again is not None and again.name == "sales"
        # The API says the store is away, plainly.
        resp = await client.get("/api/calls", headers=auth)
        assert resp.status == 503
        assert "unreachable" in (await resp.json())["error"]
        pg_server.start_again()
        resp = await client.get("/api/calls", headers=auth)
        assert resp.status == 200
