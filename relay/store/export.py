"""CSV exports: a list of calls (one row per call) and one call (one row per turn or tool
call, in time order). Cells a spreadsheet would run as a formula are defused."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from typing import Any

from .records import CallRecord, CallSummary

SUMMARY_COLUMNS = (
    "call_sid", "started_at", "answered_at", "ended_at", "duration_s", "direction", "from",
    "to", "end_reason", "end_reason_text", "profile", "model", "voice", "turns", "tool_calls",
    "total_tokens", "cost_usd",
)  # fmt: skip
CALL_COLUMNS = (
    "at", "kind", "role", "text", "item_id", "interrupted", "heard_ms",
    "tool", "arguments", "output", "ok", "duration_ms", "source",
)  # fmt: skip

# A plain number ("+15551234567", "-3.5") is data, not a formula: it keeps its sign.
_NUMBER = re.compile(r"^[+-]?[\d\s().-]+$")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in _FORMULA_START and not _NUMBER.match(value):
        return "'" + value
    return value


def _csv(columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if v is None else _cell(v) for v in row])
    return out.getvalue()


def summaries_csv(calls: Iterable[CallSummary]) -> str:
    return _csv(
        SUMMARY_COLUMNS,
        (
            (
                c.call_sid, c.started_at, c.answered_at, c.ended_at, c.duration_s, c.direction,
                c.from_, c.to, c.end_reason, c.end_reason_text, c.profile, c.model, c.voice,
                c.turns, c.tool_calls, c.total_tokens, c.cost_usd,
            )
            for c in calls
        ),
    )  # fmt: skip


def call_csv(record: CallRecord) -> str:
    rows: list[tuple[float, int, tuple[Any, ...]]] = []
    for i, t in enumerate(record.turns):
        at = t.at if t.at is not None else record.started_at
        turn: tuple[Any, ...] = (at, "turn", t.role, t.text, t.item_id, t.interrupted, t.heard_ms)
        rows.append((at, i, turn + ("",) * 6))
    for i, tc in enumerate(record.tool_calls):
        at = tc.at if tc.at is not None else record.started_at
        tool = (at, "tool", "", "", "", "", "", tc.name, tc.arguments, tc.output, tc.ok,
               tc.duration_ms, tc.source)  # fmt: skip
        rows.append((at, len(record.turns) + i, tool))
    rows.sort(key=lambda r: (r[0], r[1]))
    return _csv(CALL_COLUMNS, (r[2] for r in rows))
