"""The write-behind queue on its own, against a fake database: batches, coalescing, the
drop-oldest bound, retries while the database is away, a refused record set aside, and
what shutdown does with what is left."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from sqlalchemy import exc as sa_exc

from relay import metrics as relay_metrics
from relay.store import CallRecord
from relay.store.writer import WriteBehind, is_transient


class FakeDatabase:
    def __init__(self) -> None:
        self.rows: dict[str, CallRecord] = {}
        self.down = False
        self.refuse: set[str] = set()
        self.batches: list[list[str]] = []
        self.failures = 0
        self.gate: asyncio.Event | None = None  # a write waits for it, then fails if down

    async def write(self, records: Sequence[CallRecord]) -> None:
        self.batches.append([r.call_sid for r in records])
        if self.gate is not None:
            await self.gate.wait()
        if self.down:
            self.failures += 1
            raise ConnectionRefusedError("connection refused")
        if any(r.call_sid in self.refuse for r in records):
            raise sa_exc.IntegrityError("INSERT ...", {}, Exception("violates a constraint"))
        self.rows.update({r.call_sid: r for r in records})


def rec(sid: str, **kw: Any) -> CallRecord:
    return CallRecord(call_sid=sid, started_at=1.0, **kw)


def writer(db: FakeDatabase, **kw: Any) -> WriteBehind:
    w = WriteBehind(db.write, retry_initial_s=0.01, retry_max_s=0.05, **kw)
    w.start()
    return w


async def until(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


async def test_submit_never_waits_and_writes_in_batches() -> None:
    db = FakeDatabase()
    w = writer(db, batch_size=100)
    for i in range(250):
        assert w.submit(rec(f"CA{i:03d}")) is None  # a plain call: nothing to await
    assert w.depth == 250 and not db.rows  # nothing written until the loop gets a turn
    assert await w.flush(5)
    assert len(db.rows) == 250
    assert [len(b) for b in db.batches] == [100, 100, 50]
    assert w.stats.written == 250 and w.stats.dropped == 0
    await w.close()


async def test_a_newer_snapshot_of_a_call_replaces_the_queued_one() -> None:
    db = FakeDatabase()
    w = writer(db)
    w.submit(rec("CA1", end_reason_text="first"))
    w.submit(rec("CA2"))
    w.submit(rec("CA1", end_reason_text="last"))
    assert w.depth == 2
    assert await w.flush(5)
    assert db.rows["CA1"].end_reason_text == "last"
    assert db.batches == [["CA1", "CA2"]]
    await w.close()


async def test_a_full_queue_drops_the_oldest_and_counts_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    db = FakeDatabase()
    db.down = True
    before = relay_metrics.value("relay_history_dropped_total", reason="queue_full")
    w = writer(db, max_pending=3, batch_size=2)
    for i in range(6):
        w.submit(rec(f"CA{i}"))
    await until(lambda: db.failures >= 2)  # the first batch failed and went back in line
    assert w.depth == 3
    assert w.stats.dropped == 3
    assert relay_metrics.value("relay_history_dropped_total", reason="queue_full") == before + 3
    dropped_logs = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert any("CA0" in m for m in dropped_logs) and any("CA2" in m for m in dropped_logs)
    db.down = False
    assert await w.flush(5)
    assert sorted(db.rows) == ["CA3", "CA4", "CA5"]  # the most recent calls are kept
    await w.close()


async def test_an_unreachable_database_is_retried_until_it_answers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="relay.store.writer")
    db = FakeDatabase()
    db.down = True
    retries_before = relay_metrics.value("relay_history_write_retries_total")
    w = writer(db)
    for i in range(3):
        w.submit(rec(f"CA{i}"))
    await until(lambda: db.failures >= 4)
    assert w.failing and w.depth == 3 and not db.rows
    assert w.stats.retries >= 4
    assert relay_metrics.value("relay_history_write_retries_total") >= retries_before + 4
    assert not await w.flush(0.05)
    # One warning for the outage, not one per retry.
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "unreachable" in warnings[0].getMessage()
    db.down = False
    assert await w.flush(5)
    assert sorted(db.rows) == ["CA0", "CA1", "CA2"] and not w.failing
    assert any("reachable again" in r.getMessage() for r in caplog.records)
    await w.close()


async def test_a_record_the_database_refuses_is_set_aside_not_retried_forever() -> None:
    db = FakeDatabase()
    db.refuse = {"CA-bad"}
    before = relay_metrics.value("relay_history_dropped_total", reason="rejected")
    w = writer(db)
    for sid in ("CA1", "CA-bad", "CA2"):
        w.submit(rec(sid))
    assert await w.flush(5)
    assert sorted(db.rows) == ["CA1", "CA2"]
    assert w.stats.dropped == 1
    assert relay_metrics.value("relay_history_dropped_total", reason="rejected") == before + 1
    await w.close()


async def test_a_retry_never_overwrites_a_newer_snapshot() -> None:
    db = FakeDatabase()
    db.down = True
    db.gate = asyncio.Event()
    w = writer(db)
    w.submit(rec("CA1", end_reason_text="old"))
    await until(lambda: db.batches)  # the old snapshot is being written (and will fail)
    w.submit(rec("CA1", end_reason_text="new"))
    db.gate.set()
    await until(lambda: db.failures >= 1)
    db.down = False
    assert await w.flush(5)
    assert db.rows["CA1"].end_reason_text == "new"
    await w.close()


async def test_close_writes_what_it_can_and_counts_the_rest() -> None:
    db = FakeDatabase()
    w = writer(db)
    for i in range(5):
        w.submit(rec(f"CA{i}"))
    assert await w.close(timeout=5) == 0
    assert len(db.rows) == 5

    down = FakeDatabase()
    down.down = True
    before = relay_metrics.value("relay_history_dropped_total", reason="shutdown")
    w2 = writer(down)
    w2.submit(rec("CA-a"))
    w2.submit(rec("CA-b"))
    assert await w2.close(timeout=0.3) == 2
    w2.submit(rec("CA-late"))  # after close: counted, never raised
    assert relay_metrics.value("relay_history_dropped_total", reason="shutdown") == before + 3


def test_what_counts_as_the_database_being_away() -> None:
    assert is_transient(ConnectionRefusedError())
    assert is_transient(TimeoutError())
    assert is_transient(sa_exc.OperationalError("SELECT 1", {}, Exception("server closed")))
    assert is_transient(sa_exc.InterfaceError("SELECT 1", {}, Exception("connection is closed")))
    assert not is_transient(sa_exc.IntegrityError("INSERT", {}, Exception("duplicate")))
    assert not is_transient(sa_exc.DataError("INSERT", {}, Exception("value too long")))
    assert not is_transient(ValueError("bad record"))

    class ServerSays(Exception):
        def __init__(self, sqlstate: str) -> None:
            self.sqlstate = sqlstate

    # PostgreSQL starting up or shutting down, too many connections: try again later.
    for code in ("57P03", "57P01", "53300", "08006", "40001"):
        assert is_transient(sa_exc.DBAPIError("SELECT 1", {}, ServerSays(code))), code
        assert is_transient(ServerSays(code)), code
    # Bad data (invalid text, a constraint): retrying would never help.
    for code in ("22021", "23505", "42P01"):
        assert not is_transient(sa_exc.DBAPIError("INSERT", {}, ServerSays(code))), code
