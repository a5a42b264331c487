"""The call history on a real SQLite file and a real PostgreSQL server: what a call leaves
behind survives a restart, the list pages and filters correctly, old calls go, numbers can
be redacted, the schema is what the models say."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from relay.store import (
    CallFilter,
    CallRecord,
    EndReason,
    SessionChange,
    Store,
    ToolCall,
    Turn,
    TurnLatency,
    Usage,
    from_env,
)
from relay.store.db import alembic_config, current_revision
from relay.store.models import Base
from relay.store.queries import CursorError, summary_of

NOW = float(int(time.time()) - 3600)  # recent: start-up retention must keep these calls


def full_record(sid: str = "CA" + "1" * 32, started_at: float = NOW) -> CallRecord:
    """A call with one of everything the store keeps."""
    return CallRecord(
        call_sid=sid,
        stream_sid="MZ" + "2" * 32,
        direction="inbound",
        from_="+15551234567",
        to="+15557654321",
        started_at=started_at,
        answered_at=started_at + 1.5,
        ended_at=started_at + 61.25,
        end_reason=EndReason.TRANSFERRED,
        end_reason_text="to +15550001111",
        model="gpt-realtime",
        voice="marin",
        profile="sales",
        turns=[
            Turn(
                role="assistant",
                text="Hello! How can I help?",
                item_id="item_a1",
                at=started_at + 2,
            ),
            Turn(
                role="user",
                text="What's the weather in Paris?",
                item_id="item_u1",
                at=started_at + 5,
            ),
            Turn(
                role="assistant",
                text="It is sunny and twenty degrees, and tomorrow",
                item_id="item_a2",
                at=started_at + 8,
                interrupted=True,
                heard_ms=1840,
            ),
        ],
        tool_calls=[
            ToolCall(
                call_id="call_1",
                name="get_weather",
                arguments='{"city":"Paris"}',
                output='{"temp_c":20}',
                ok=True,
                duration_ms=312,
                source="backend",
                at=started_at + 6,
            ),
            ToolCall(
                call_id="call_2",
                name="crm_lookup",
                arguments="{}",
                output="timed out",
                ok=False,
                duration_ms=30000,
                source="timeout",
                at=started_at + 9,
            ),
        ],
        session_changes=[
            SessionChange(kind="reconnect", at=started_at + 20, reason="close 1006"),
            SessionChange(kind="rollover", at=started_at + 40, reason="session rollover"),
        ],
        usage=Usage(
            input_text=1200,
            input_audio=3000,
            input_cached_text=1000,
            input_cached_audio=500,
            output_text=150,
            output_audio=2400,
        ),
        latency=[
            TurnLatency(item_id="item_a1", latency_ms=640),
            TurnLatency(item_id="item_a2", latency_ms=710),
        ],
        recording_sids=["RE" + "3" * 32],
    )


def settings_with(env: dict[str, str], **changes: Any) -> Any:
    return dataclasses.replace(from_env(env), **changes)


@pytest.fixture
async def store(store_env: dict[str, str]) -> AsyncIterator[Store]:
    s = await Store.open(from_env(store_env))
    try:
        yield s
    finally:
        await s.close()


async def write(store: Store, *records: CallRecord) -> None:
    for r in records:
        store.submit(r)
    assert await store.flush(10), "the writer did not drain"


async def test_a_call_survives_a_restart_with_everything_in_it(store_env: dict[str, str]) -> None:
    record = full_record()
    first = await Store.open(from_env(store_env))
    first.submit(record)
    await first.close()  # flushes: a shutdown right after a call keeps it

    again = await Store.open(from_env(store_env))  # runs the migrations again: a no-op
    try:
        stored = await again.get_call(record.call_sid)
        assert stored is not None
        # Everything came back, plus the estimated cost the store adds.
        assert stored == msgspec.structs.replace(record, cost_usd=stored.cost_usd)
        assert stored.cost_usd == pytest.approx(
            (200 * 4 + 1000 * 0.4 + 150 * 16 + 2500 * 32 + 500 * 0.4 + 2400 * 64) / 1e6
        )
        assert stored.end_reason is EndReason.TRANSFERRED
        assert stored.turns[2].interrupted and stored.turns[2].heard_ms == 1840
        assert stored.tool_calls[1].source == "timeout" and not stored.tool_calls[1].ok
        # The JSON the API and the webhook serve names the numbers `from` and `to`.
        wire = msgspec.json.decode(msgspec.json.encode(stored))
        assert wire["from"] == "+15551234567" and wire["to"] == "+15557654321"
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        assert await current_revision(again.engine) == head
        assert await again.get_call("CA-missing") is None
    finally:
        await again.close()


async def test_a_newer_snapshot_of_a_call_replaces_the_older(store: Store) -> None:
    live = CallRecord(call_sid="CA-live", started_at=NOW, turns=[Turn(role="user", text="hi")])
    await write(store, live)
    ended = msgspec.structs.replace(
        live,
        ended_at=NOW + 5,
        end_reason=EndReason.CALLER_HUNG_UP,
        turns=[*live.turns, Turn(role="assistant", text="bye")],
    )
    await write(store, ended)
    stored = await store.get_call("CA-live")
    assert stored is not None and stored.end_reason is EndReason.CALLER_HUNG_UP
    assert [t.text for t in stored.turns] == ["hi", "bye"]
    page = await store.list_calls()
    assert [c.call_sid for c in page.calls] == ["CA-live"]


async def test_the_list_is_newest_first_and_the_cursor_never_skips_or_repeats(store: Store) -> None:
    # 23 calls, several sharing a start time (the cursor's tie-break is the CallSid).
    records = [
        CallRecord(call_sid=f"CA{i:03d}", started_at=NOW + (i // 3), ended_at=NOW + 60 + i)
        for i in range(23)
    ]
    await write(store, *records)
    expected = sorted(records, key=lambda r: (r.started_at, r.call_sid), reverse=True)

    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = await store.list_calls(limit=5, cursor=cursor)
        seen += [c.call_sid for c in page.calls]
        if len(seen) == 10:
            # Calls written while someone pages (newer ones, and one at a tied time)
            # do not shift the pages still to come.
            await write(
                store,
                CallRecord(call_sid="CA900", started_at=NOW + 100),
                CallRecord(call_sid="CA000a", started_at=NOW + 7),
            )
        if page.next_cursor is None:
            assert len(page.calls) <= 5
            break
        cursor = page.next_cursor
    assert seen == [r.call_sid for r in expected]
    first = await store.list_calls(limit=1)
    assert first.calls[0].call_sid == "CA900"
    assert first.calls[0] == summary_of(CallRecord(call_sid="CA900", started_at=NOW + 100))
    with pytest.raises(CursorError):
        await store.list_calls(cursor="not-a-cursor")


async def test_every_filter_narrows_the_list(store: Store) -> None:
    def call(sid: str, start: float, **kw: Any) -> CallRecord:
        return CallRecord(call_sid=sid, started_at=start, ended_at=start + 30, **kw)

    await write(
        store,
        call(
            "CA-a",
            NOW - 86400 * 3,
            from_="+15551230001",
            to="+15559990000",
            end_reason=EndReason.CALLER_HUNG_UP,
            profile="sales",
            turns=[Turn(role="user", text="I want a REFUND for order 100%")],
        ),
        call(
            "CA-b",
            NOW - 86400 * 2,
            from_="+15551230002",
            to="+15559990000",
            end_reason=EndReason.AGENT_ENDED,
            profile="support",
            turns=[
                Turn(role="user", text="Where is my parcel?"),
                Turn(role="assistant", text="Refunds take 5 days"),
            ],
        ),
        call(
            "CA-c",
            NOW - 86400,
            direction="outbound",
            from_="+15559990000",
            to="+447700900123",
            end_reason=EndReason.ERROR,
            end_reason_text="model error",
            turns=[Turn(role="assistant", text="Calling about your_account")],
        ),
    )

    async def sids(**where: Any) -> list[str]:
        page = await store.list_calls(CallFilter(**where))
        return sorted(c.call_sid for c in page.calls)

    assert await sids() == ["CA-a", "CA-b", "CA-c"]
    # Text: anywhere in the transcript, either side, case-insensitive; % and _ are literal.
    assert await sids(text="refund") == ["CA-a", "CA-b"]
    assert await sids(text="100%") == ["CA-a"]
    assert await sids(text="your_account") == ["CA-c"]
    assert await sids(text="your%account") == []
    assert await sids(text="your account") == []
    # Number: in from or to, however it is typed.
    assert await sids(number="+1 (555) 123-0002") == ["CA-b"]
    assert await sids(number="5559990000") == ["CA-a", "CA-b", "CA-c"]
    assert await sids(number="+44 7700 900123") == ["CA-c"]
    # Date range: since inclusive, until exclusive, on the start time.
    assert await sids(since=NOW - 86400 * 2) == ["CA-b", "CA-c"]
    assert await sids(until=NOW - 86400 * 2) == ["CA-a"]
    assert await sids(since=NOW - 86400 * 2.5, until=NOW - 86400 * 1.5) == ["CA-b"]
    # End reason, one or several; profile.
    assert await sids(end_reasons=(EndReason.ERROR,)) == ["CA-c"]
    assert await sids(end_reasons=(EndReason.ERROR, EndReason.AGENT_ENDED)) == ["CA-b", "CA-c"]
    assert await sids(profile="sales") == ["CA-a"]
    # All together.
    assert await sids(text="refund", number="9990000", profile="support") == ["CA-b"]


async def test_retention_deletes_calls_older_than_the_limit(store_env: dict[str, str]) -> None:
    store = await Store.open(settings_with(store_env, history_days=90))
    try:
        day = 86400.0
        now = time.time()
        await write(
            store,
            CallRecord(call_sid="CA-old", started_at=now - 91 * day),
            CallRecord(call_sid="CA-edge", started_at=now - 89 * day),
            CallRecord(call_sid="CA-new", started_at=now - 60),
        )
        # As the hourly task does (open() started it: it may have run already).
        await store.apply_retention(now)
        page = await store.list_calls()
        assert sorted(c.call_sid for c in page.calls) == ["CA-edge", "CA-new"]
        assert await store.get_call("CA-old") is None
        # A day later the edge call goes too.
        assert await store.apply_retention(now + 2 * day) == 1
    finally:
        await store.close()


async def test_retention_runs_at_start_up(store_env: dict[str, str]) -> None:
    first = await Store.open(settings_with(store_env, history_days=0))  # 0 = keep forever
    await write(first, CallRecord(call_sid="CA-ancient", started_at=time.time() - 400 * 86400))
    assert await first.apply_retention() == 0
    await first.close()
    second = await Store.open(settings_with(store_env, history_days=30))
    try:
        for _ in range(100):  # the start-up run is a task: wait for its effect
            if await second.get_call("CA-ancient") is None:
                break
            await _tick()
        assert await second.get_call("CA-ancient") is None
    finally:
        await second.close()


async def _tick() -> None:
    await asyncio.sleep(0.02)


async def test_redaction_keeps_only_the_last_four_digits(store_env: dict[str, str]) -> None:
    store = await Store.open(settings_with(store_env, redact_numbers=True))
    try:
        record = full_record()
        await write(
            store,
            record,
            CallRecord(
                call_sid="CA-client", started_at=NOW, from_="client:alice", to="+15557654321"
            ),
        )
        stored = await store.get_call(record.call_sid)
        assert stored is not None
        assert (stored.from_, stored.to) == ("***4567", "***4321")
        # Nothing else was touched.
        assert stored.turns == record.turns and stored.end_reason_text == record.end_reason_text
        page = await store.list_calls(
            CallFilter(number="+1 555 123 4567")
        )  # searched by its last four
        assert [c.call_sid for c in page.calls] == [record.call_sid]
        assert page.calls[0].from_ == "***4567"
        client = await store.get_call("CA-client")
        assert client is not None and client.from_ == "client:alice"
        # The full numbers are nowhere in the database.
        async with store.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT * FROM calls"))).all()
        assert "5551234567" not in repr(rows) and "5557654321" not in repr(rows)
    finally:
        await store.close()


async def test_nul_characters_are_removed_not_refused(store: Store) -> None:
    """PostgreSQL refuses NUL in text and JSON; a tool's output may contain one."""
    record = CallRecord(
        call_sid="CA-nul",
        started_at=NOW,
        turns=[Turn(role="user", text="a\x00b")],
        tool_calls=[ToolCall(call_id="c", name="t", output="bin\x00ary", arguments="{}")],
    )
    await write(store, record)
    stored = await store.get_call("CA-nul")
    assert stored is not None
    assert stored.turns[0].text == "ab" and stored.tool_calls[0].output == "binary"
    assert store.writer.stats.dropped == 0


async def test_the_migrations_make_exactly_the_models_schema(store: Store) -> None:
    async with store.engine.connect() as conn:
        diff = await conn.run_sync(
            lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata)
        )
    assert diff == [], f"relay/store/models.py and the migrations disagree: {diff}"
