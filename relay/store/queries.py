"""Every statement on the calls table: upsert a batch, get one, list a page, delete old.

The list is newest first with a keyset cursor over (started_at, call_sid): a page never
repeats or skips a call, however many are written meanwhile (started_at never changes).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import ColumnElement, and_, delete, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from .models import CallRow
from .records import CallRecord, CallSummary, EndReason, from_builtins, to_builtins
from .redact import number_query

MAX_LIMIT = 1000  # per page (exports); the API's default page is smaller


class CursorError(ValueError):
    pass


@dataclass(frozen=True)
class CallFilter:
    """All given criteria must hold. `number` is matched in from or to, on its digits."""

    text: str = ""  # in the transcript, case-insensitive (ASCII case on SQLite)
    number: str = ""
    since: float | None = None  # started_at >= since
    until: float | None = None  # started_at < until
    end_reasons: tuple[EndReason, ...] = ()
    profile: str | None = None


@dataclass(frozen=True)
class Page:
    calls: list[CallSummary]
    next_cursor: str | None  # None: this was the last page


def row_values(record: CallRecord) -> dict[str, Any]:
    return {
        "call_sid": record.call_sid,
        "started_at": record.started_at,
        "answered_at": record.answered_at,
        "ended_at": record.ended_at,
        "stream_sid": record.stream_sid,
        "direction": record.direction,
        "from_number": record.from_,
        "to_number": record.to,
        "end_reason": None if record.end_reason is None else record.end_reason.value,
        "end_reason_text": record.end_reason_text,
        "model": record.model,
        "voice": record.voice,
        "profile": record.profile,
        "turn_count": len(record.turns),
        "tool_call_count": len(record.tool_calls),
        "total_tokens": record.usage.total,
        "cost_usd": record.cost_usd,
        "transcript": record.transcript,
        "record": to_builtins(record),
    }


async def upsert_calls(conn: AsyncConnection, records: Sequence[CallRecord]) -> None:
    """Insert or replace by call_sid (call_sids must be distinct within one batch)."""
    if not records:
        return
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(CallRow)
    stmt = stmt.on_conflict_do_update(
        index_elements=[CallRow.call_sid],
        set_={c.name: stmt.excluded[c.name] for c in CallRow.__table__.c if c.name != "call_sid"},
    )
    await conn.execute(stmt, [row_values(r) for r in records])


async def get_call(conn: AsyncConnection, call_sid: str) -> CallRecord | None:
    data = await conn.scalar(select(CallRow.record).where(CallRow.call_sid == call_sid))
    return None if data is None else from_builtins(data)


async def list_calls(
    conn: AsyncConnection,
    where: CallFilter,
    *,
    limit: int = 50,
    cursor: str | None = None,
    redacted: bool = False,
) -> Page:
    limit = max(1, min(limit, MAX_LIMIT))
    query = select(*_SUMMARY_COLUMNS).where(*_conditions(where, redacted))
    if cursor:
        started, sid = decode_cursor(cursor)
        query = query.where(
            or_(
                CallRow.started_at < started,
                and_(CallRow.started_at == started, CallRow.call_sid < sid),
            )
        )
    query = query.order_by(CallRow.started_at.desc(), CallRow.call_sid.desc()).limit(limit + 1)
    rows = (await conn.execute(query)).all()
    calls = [_summary(row._mapping) for row in rows[:limit]]
    more = len(rows) > limit
    return Page(calls, encode_cursor(calls[-1].started_at, calls[-1].call_sid) if more else None)


async def delete_started_before(conn: AsyncConnection, cutoff: float) -> int:
    result = await conn.execute(delete(CallRow).where(CallRow.started_at < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)


def _conditions(where: CallFilter, redacted: bool) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = []
    if where.text:
        conds.append(CallRow.transcript.icontains(where.text, autoescape=True))
    if where.number:
        needle = number_query(where.number, redacted)
        conds.append(
            or_(
                CallRow.from_number.contains(needle, autoescape=True),
                CallRow.to_number.contains(needle, autoescape=True),
            )
        )
    if where.since is not None:
        conds.append(CallRow.started_at >= where.since)
    if where.until is not None:
        conds.append(CallRow.started_at < where.until)
    if where.end_reasons:
        conds.append(CallRow.end_reason.in_([r.value for r in where.end_reasons]))
    if where.profile is not None:
        conds.append(CallRow.profile == where.profile)
    return conds


_SUMMARY_COLUMNS = (
    CallRow.call_sid,
    CallRow.started_at,
    CallRow.direction,
    CallRow.from_number,
    CallRow.to_number,
    CallRow.answered_at,
    CallRow.ended_at,
    CallRow.end_reason,
    CallRow.end_reason_text,
    CallRow.profile,
    CallRow.model,
    CallRow.voice,
    CallRow.turn_count,
    CallRow.tool_call_count,
    CallRow.total_tokens,
    CallRow.cost_usd,
)


def _summary(m: Any) -> CallSummary:
    ended, answered, started = m["ended_at"], m["answered_at"], m["started_at"]
    return CallSummary(
        call_sid=m["call_sid"],
        started_at=started,
        direction=m["direction"],
        from_=m["from_number"],
        to=m["to_number"],
        answered_at=answered,
        ended_at=ended,
        duration_s=None if ended is None else max(0.0, ended - (answered or started)),
        end_reason=m["end_reason"],
        end_reason_text=m["end_reason_text"],
        profile=m["profile"],
        model=m["model"],
        voice=m["voice"],
        turns=m["turn_count"],
        tool_calls=m["tool_call_count"],
        total_tokens=m["total_tokens"],
        cost_usd=m["cost_usd"],
    )


def summary_of(record: CallRecord) -> CallSummary:
    """The list line of a record (what list_calls would return for it)."""
    return _summary({**row_values(record), "record": None})


# The cursor is opaque to clients: base64url of [started_at, call_sid].
def encode_cursor(started_at: float, call_sid: str) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode([started_at, call_sid])).decode()


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        started, sid = msgspec.json.decode(
            base64.urlsafe_b64decode(cursor.encode()), type=tuple[float, str]
        )
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise CursorError("cursor: not a cursor this API returned") from None
    return started, sid
