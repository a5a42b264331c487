"""Call records (docs/history-api.md) as the History and call detail views show them.

Plain data in, rows of strings out (what Reflex state holds). Times are in the console
server's time zone, as the History filter's dates are; offsets within a call are m:ss from
when it was answered.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from console.calls import END_REASONS, percentile

DIRECTIONS = {"inbound": "in", "outbound": "out", "browser": "browser", "sip": "SIP"}
SOURCES = {"backend": "the relay", "console": "the console", "timeout": "nobody (timed out)"}
CHANGES = {
    "reconnect": "reconnected to the model",
    "rollover": "moved to a fresh session (rollover)",
    "switch": "moved to another model session",
}
USAGE = (
    ("input_text", "input_cached_text", "Text in"),
    ("input_audio", "input_cached_audio", "Audio in"),
    ("output_text", "", "Text out"),
    ("output_audio", "", "Audio out"),
)


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def when(ts: Any) -> str:
    t = _num(ts)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else ""


def zone() -> str:
    """The zone `when` shows times in, e.g. 'UTC' or 'CET'."""
    return time.strftime("%Z") or "local time"


def clock(seconds: Any) -> str:
    """62.4 -> '1:02'; '' when unknown."""
    s = _num(seconds)
    if s is None:
        return ""
    whole = max(0, round(s))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


# What the relay writes as `end_reason_text` when it has no detail of its own (relay/call.py):
# a restatement of the reason, not worth repeating after it.
RELAY_DEFAULT_TEXT = {
    "the caller hung up",
    "the agent ended the call",
    "transferred",
    "ended from the console",
    "the model was unavailable",
    "the relay shut down",
    "an internal error",
}


def end_words(code: Any, text: Any = "") -> str:
    """Why a call ended, in plain words, with the relay's detail (e.g. 'transferred: to +1...')."""
    if not code:
        return "not ended (or not recorded)"
    words = END_REASONS.get(str(code), str(code).replace("_", " "))
    detail = str(text or "").strip()
    if not detail or detail.lower() in (words.lower(), *RELAY_DEFAULT_TEXT):
        return words
    return f"{words}: {detail}"


def money(cost: Any) -> str:
    c = _num(cost)
    if c is None:
        return ""
    return f"${c:.4f}" if c < 0.01 else f"${c:.3f}" if c < 1 else f"${c:.2f}"


def detail_href(call_sid: str) -> str:
    return "/history/" + quote(call_sid, safe="")


def call_row(call: dict[str, Any]) -> dict[str, str]:
    """One line of the History table, from a `GET /api/calls` summary."""
    sid = str(call.get("call_sid") or "")
    return {
        "sid": sid,
        "href": detail_href(sid),
        "started": when(call.get("started_at")),
        "direction": DIRECTIONS.get(str(call.get("direction")), str(call.get("direction") or "")),
        "from": str(call.get("from") or ""),
        "to": str(call.get("to") or ""),
        "duration": clock(call.get("duration_s")),
        "end": END_REASONS.get(str(call.get("end_reason")), str(call.get("end_reason") or "")),
        "end_code": str(call.get("end_reason") or ""),
        "profile": str(call.get("profile") or "default"),
        "turns": str(call.get("turns") or 0),
        "cost": money(call.get("cost_usd")) or "n/a",
    }


@dataclass
class CallDetail:
    """Everything the call detail view shows, as strings."""

    facts: list[dict[str, str]] = field(default_factory=list)  # label, value, id
    end: str = ""
    lines: list[dict[str, str]] = field(default_factory=list)
    tools: list[dict[str, str]] = field(default_factory=list)
    latency: list[dict[str, str]] = field(default_factory=list)
    latency_p50: str = ""
    latency_p95: str = ""
    usage: list[dict[str, str]] = field(default_factory=list)
    cost: str = ""
    changes: list[dict[str, str]] = field(default_factory=list)
    recording_sids: list[str] = field(default_factory=list)


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.0f} ms"


def _compact(arguments: str) -> str:
    try:
        return json.dumps(json.loads(arguments), separators=(", ", ": "), ensure_ascii=False)
    except ValueError:
        return arguments


def detail(record: dict[str, Any]) -> CallDetail:
    """The call detail view of one record (`GET /api/calls/{sid}`)."""
    started = _num(record.get("started_at")) or 0.0
    base = _num(record.get("answered_at")) or started

    def offset(at: Any) -> str:
        t = _num(at)
        return clock(t - base) if t is not None else ""

    out = CallDetail()
    ended = _num(record.get("ended_at"))
    duration = ended - base if ended is not None else None
    out.facts = [
        {"label": "Started", "value": when(started), "id": "started"},
        {"label": "Direction", "value": str(record.get("direction") or ""), "id": "direction"},
        {"label": "From", "value": str(record.get("from") or ""), "id": "from"},
        {"label": "To", "value": str(record.get("to") or ""), "id": "to"},
        {"label": "Duration", "value": clock(duration), "id": "duration"},
        {"label": "Profile", "value": str(record.get("profile") or "default"), "id": "profile"},
        {"label": "Model", "value": str(record.get("model") or ""), "id": "model"},
        {"label": "Voice", "value": str(record.get("voice") or ""), "id": "voice"},
    ]
    if record.get("answered_at") is None:
        out.facts.append({"label": "Answered", "value": "never", "id": "answered"})
    out.end = end_words(record.get("end_reason"), record.get("end_reason_text") or "")

    latency_by_item: dict[str, int] = {}
    for n, point in enumerate(record.get("latency") or [], start=1):
        ms = _num(point.get("latency_ms")) if isinstance(point, dict) else None
        if ms is None:
            continue
        latency_by_item[str(point.get("item_id") or "")] = round(ms)
        out.latency.append({"turn": str(n), "ms": str(round(ms))})
    values = [float(p["ms"]) for p in out.latency]
    out.latency_p50, out.latency_p95 = _ms(percentile(values, 50)), _ms(percentile(values, 95))

    timed: list[tuple[float, int, dict[str, str]]] = []
    for i, turn in enumerate(record.get("turns") or []):
        if not isinstance(turn, dict):
            continue
        role = "caller" if turn.get("role") == "user" else "assistant"
        heard = _num(turn.get("heard_ms"))
        interrupted = bool(turn.get("interrupted"))
        note = ""
        if interrupted:
            note = "interrupted" + (f": the caller heard {heard / 1000:.1f} s" if heard else "")
        latency = latency_by_item.get(str(turn.get("item_id") or ""))
        line = {
            "role": role,
            "at": offset(turn.get("at")),
            "text": str(turn.get("text") or ""),
            "interrupted": "1" if interrupted else "",
            "note": note,
            "latency": f"{latency} ms" if latency is not None and role == "assistant" else "",
        }
        timed.append((_num(turn.get("at")) or started, i, line))
    for tc in record.get("tool_calls") or []:
        if not isinstance(tc, dict):
            continue
        ok = bool(tc.get("ok", True))
        source = str(tc.get("source") or "")
        status = "timeout" if source == "timeout" else "done" if ok else "failed"
        duration_ms = _num(tc.get("duration_ms"))
        if not duration_ms and source != "backend":
            duration_ms = None  # the relay times only the tools it runs itself
        row = {
            "name": str(tc.get("name") or ""),
            "at": offset(tc.get("at")),
            "arguments": str(tc.get("arguments") or ""),
            "output": str(tc.get("output") or ""),
            "status": status,
            "ok": "yes" if ok else "no",
            "duration": f"{duration_ms:.0f} ms" if duration_ms is not None else "",
            "source": SOURCES.get(source, source),
        }
        out.tools.append(row)
        line = {
            "role": "tool",
            "at": row["at"],
            "text": f"{row['name']}({_compact(row['arguments'])})",
            "interrupted": "",
            "note": ", ".join(
                part for part in (status, row["duration"], f"answered by {row['source']}") if part
            ),
            "latency": "",
        }
        timed.append((_num(tc.get("at")) or started, len(timed), line))
    timed.sort(key=lambda t: (t[0], t[1]))
    out.lines = [line for _, _, line in timed]

    raw_usage = record.get("usage")
    usage: dict[str, Any] = raw_usage if isinstance(raw_usage, dict) else {}
    total = 0
    for key, cached_key, label in USAGE:
        tokens = int(_num(usage.get(key)) or 0)
        total += tokens
        cached = int(_num(usage.get(cached_key)) or 0) if cached_key else 0
        note = f"{cached} cached" if cached else ""
        out.usage.append({"label": label, "tokens": str(tokens), "note": note})
    out.usage.append({"label": "Total", "tokens": str(total), "note": ""})
    cost = money(record.get("cost_usd"))
    model = str(record.get("model") or "this model")
    out.cost = (
        f"{cost} (an estimate from the token counts and the relay's price table)"
        if cost
        else f"unknown: the relay has no price for {model} (RELAY_PRICES_JSON adds one)"
    )
    out.changes = [
        {
            "at": offset(c.get("at")),
            "what": CHANGES.get(str(c.get("kind")), str(c.get("kind") or "")),
            "reason": str(c.get("reason") or ""),
        }
        for c in record.get("session_changes") or []
        if isinstance(c, dict)
    ]
    out.recording_sids = [str(s) for s in record.get("recording_sids") or [] if s]
    return out
