"""Fold relay events (docs/console-protocol.md) into what the console shows for each call.

Plain data, no Reflex: a `CallLog` per call takes events one by one and keeps the
transcript lines, function calls, per-turn latency, token usage and the session the model
says it applied. The UI state copies the selected call's rows out of it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from console.messages import relay_problem
from shared.usage import TokenUsage

Role = Literal[
    "caller",
    "assistant",
    "tool_call",
    "tool_output",
    "dtmf",
    "error",
    "system",
    "model",
    "recording",
]
LineStatus = Literal["streaming", "done", "interrupted"]
MAX_LINES = 500
MAX_ENDED = 50  # ended calls a book keeps (the History view has them all)


@dataclass
class Line:
    id: str
    role: Role
    text: str = ""
    status: LineStatus = "streaming"
    cut_text: str = ""  # for interrupted answers: the part the caller never heard
    note: str = ""
    ts: float = 0.0


@dataclass
class FunctionCall:
    call_id: str
    name: str
    arguments: str = ""
    status: Literal["running", "pending", "done", "failed", "timeout"] = "running"
    output: str = ""
    duration_ms: int = 0
    source: str = ""
    timeout_s: float = 0.0
    started_at: float = 0.0


@dataclass
class LatencyPoint:
    turn: int
    item_id: str
    latency_ms: int


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100), interpolated between ranks; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


# What the relay's end_reason codes mean to someone watching (the relay's own `reason`
# text wins when it sends one).
END_REASONS = {
    "caller_hung_up": "the caller hung up",
    "agent_ended": "the agent ended the call",
    "transferred": "transferred",
    "console_ended": "hung up from the console",
    "model_unavailable": "the model was unavailable",
    "relay_shutdown": "the relay shut down",
    "error": "an error ended the call",
}


@dataclass
class CallLog:
    call_sid: str
    from_: str = ""
    to: str = ""
    state: str = "connecting"
    started_at: float = 0.0
    model: str = ""
    direction: str = ""  # inbound | outbound (Twilio) | browser (the softphone) | sip
    lines: list[Line] = field(default_factory=list)
    functions: dict[str, FunctionCall] = field(default_factory=dict)
    latency: list[LatencyPoint] = field(default_factory=list)
    usage: TokenUsage = field(default_factory=TokenUsage)
    applied_session: dict[str, Any] | None = None
    last_error: str = ""
    summary: dict[str, Any] = field(default_factory=dict)
    seen_live: bool = True  # False: it ended before this console connected (no transcript)
    _sent_ms: dict[str, int] = field(default_factory=dict)
    _cut_ms: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> CallLog:
        log = cls(call_sid=str(info.get("call_sid", "")))
        log.update_info(info)
        return log

    def update_info(self, info: dict[str, Any]) -> None:
        self.from_ = str(info.get("from") or self.from_)
        self.to = str(info.get("to") or self.to)
        self.state = str(info.get("state") or self.state)
        self.started_at = float(info.get("started_at") or self.started_at)
        self.model = str(info.get("model") or self.model)
        self.direction = str(info.get("direction") or self.direction)

    @property
    def live(self) -> bool:
        return self.state != "ended"

    @property
    def browser(self) -> bool:
        """Placed from a console's softphone: no Twilio call behind it."""
        return self.direction == "browser"

    @property
    def end_reason(self) -> str:
        """Why the call ended, in plain words ("" while it is live)."""
        if self.live:
            return ""
        text = str(self.summary.get("reason") or "")
        return text or END_REASONS.get(str(self.summary.get("end_reason") or ""), "ended")

    def latency_stats(self) -> tuple[float | None, float | None]:
        """(p50, p95) of voice-to-voice latency in ms: the relay's figures once the call
        has ended, else computed from the turns seen so far."""
        p50, p95 = self.summary.get("latency_p50_ms"), self.summary.get("latency_p95_ms")
        if isinstance(p50, (int, float)) and isinstance(p95, (int, float)):
            return float(p50), float(p95)
        values = [float(p.latency_ms) for p in self.latency]
        return percentile(values, 50), percentile(values, 95)

    def end(self, summary: dict[str, Any], ts: float) -> None:
        self.state = "ended"
        for line in self.lines:  # nothing more is coming for lines still streaming
            if line.status == "streaming":
                line.status = "done"
                line.text = line.text or "(cut off)"
        self.summary = dict(summary)
        usage = self.summary.get("usage")
        if isinstance(usage, dict) and usage:
            self.usage = TokenUsage.from_summary(usage)  # the relay's sum, flat
        if not self.latency and isinstance(self.summary.get("latency_ms"), list):
            self.latency = [
                LatencyPoint(i + 1, "", round(float(ms)))
                for i, ms in enumerate(self.summary["latency_ms"])
                if isinstance(ms, (int, float))
            ]
        secs = self.summary.get("duration_s")
        self._add(
            "system",
            f"call ended: {self.end_reason}"
            + (f", after {float(secs):.0f} s" if isinstance(secs, (int, float)) else ""),
            ts,
        )

    # --- lines -------------------------------------------------------------------------

    def _line(self, line_id: str, role: Role, ts: float) -> Line:
        for line in reversed(self.lines):
            if line.id == line_id and line.role == role:
                return line
        line = Line(id=line_id, role=role, ts=ts)
        self.lines.append(line)
        if len(self.lines) > MAX_LINES:
            del self.lines[: len(self.lines) - MAX_LINES]
        return line

    def _add(self, role: Role, text: str, ts: float, line_id: str = "", note: str = "") -> None:
        self.lines.append(
            Line(
                id=line_id or f"{role}-{len(self.lines)}",
                role=role,
                text=text,
                status="done",
                note=note,
                ts=ts,
            )
        )

    def _split_cut(self, line: Line) -> None:
        """Mark where an interrupted answer was cut, in proportion to the audio heard."""
        cut = self._cut_ms.get(line.id)
        if cut is None:
            return
        full = line.text + line.cut_text
        sent = self._sent_ms.get(line.id, 0)
        heard = len(full) if sent <= 0 else round(len(full) * min(cut / sent, 1.0))
        # Cut on a word boundary so the marker does not split a word.
        while 0 < heard < len(full) and not full[heard - 1].isspace():
            heard -= 1
        line.text, line.cut_text = full[:heard], full[heard:]
        line.status = "interrupted"
        line.note = f"interrupted after {cut / 1000:.1f} s"

    # --- events ------------------------------------------------------------------------

    def apply(self, ev: dict[str, Any]) -> None:
        kind = ev.get("type")
        ts = float(ev.get("ts") or 0.0)
        if kind == "call.started":
            self.update_info(ev.get("call") or {})
        elif kind == "call.state":
            self.state = str(ev.get("state") or self.state)
        elif kind == "call.ended":
            self.end(dict(ev.get("summary") or {}), ts)
        elif kind == "model":
            self._model(ev.get("event") or {}, ts)
        elif kind == "audio.progress":
            item = str(ev.get("item_id", ""))
            self._sent_ms[item] = max(self._sent_ms.get(item, 0), int(ev.get("sent_ms") or 0))
        elif kind == "barge_in":
            item = str(ev.get("item_id", ""))
            self._cut_ms[item] = int(ev.get("audio_end_ms") or 0)
            self._sent_ms[item] = max(self._sent_ms.get(item, 0), int(ev.get("sent_ms") or 0))
            for line in self.lines:
                if line.id == item and line.role == "assistant":
                    self._split_cut(line)
        elif kind == "dtmf":
            self._add("dtmf", f"pressed {ev.get('digit', '?')}", ts)
        elif kind in ("tool.started", "tool.pending"):
            fc = self._function(str(ev.get("call_id", "")), str(ev.get("name", "")), ts)
            fc.arguments = str(ev.get("arguments") or fc.arguments)
            if kind == "tool.pending":
                fc.status = "pending"
                fc.timeout_s = float(ev.get("timeout_s") or 0.0)
        elif kind == "tool.finished":
            self._tool_finished(ev, ts)
        elif kind == "turn.latency":
            self.latency.append(
                LatencyPoint(
                    len(self.latency) + 1,
                    str(ev.get("item_id", "")),
                    round(float(ev.get("latency_ms") or 0)),
                )
            )
        elif kind == "model.reconnecting":
            self._add("model", _reconnecting(ev), ts)
        elif kind == "model.switched":
            self.model = str(ev.get("model") or self.model)
            reason = str(ev.get("reason") or "")
            self._add(
                "model",
                f"moved to a fresh model session ({self.model or 'model'})"
                + (f": {reason}" if reason else ""),
                ts,
            )
        elif kind == "error":
            msg = relay_problem(str(ev.get("source") or "relay"), str(ev.get("message") or ""))
            self.last_error = msg
            self._add("error", msg, ts, note=str(ev.get("code") or ""))

    def note(self, role: Role, text: str, ts: float) -> None:
        """A line from the console itself (e.g. a recording started)."""
        self._add(role, text, ts)

    def _function(self, call_id: str, name: str, ts: float) -> FunctionCall:
        fc = self.functions.get(call_id)
        if fc is None:
            fc = FunctionCall(call_id=call_id, name=name, started_at=ts)
            self.functions[call_id] = fc
        if name:
            fc.name = name
        return fc

    def _tool_finished(self, ev: dict[str, Any], ts: float) -> None:
        fc = self._function(str(ev.get("call_id", "")), str(ev.get("name", "")), ts)
        fc.output = str(ev.get("output") or "")
        fc.duration_ms = int(ev.get("duration_ms") or 0)
        fc.source = str(ev.get("source") or "")
        if fc.source == "timeout":
            fc.status = "timeout"
        else:
            fc.status = "done" if ev.get("ok", True) else "failed"
        label = {"timeout": "timed out", "failed": "failed"}.get(fc.status, "returned")
        self._add(
            "tool_output",
            f"{fc.name} {label}: {fc.output}",
            ts,
            note=f"{fc.duration_ms} ms, {fc.source}",
        )

    def _model(self, e: dict[str, Any], ts: float) -> None:
        kind = str(e.get("type", ""))
        item_id = str(e.get("item_id", ""))
        if kind == "input_audio_buffer.speech_started":
            self._line(item_id, "caller", ts)  # "…" until the transcript arrives
        elif kind == "conversation.item.input_audio_transcription.delta":
            self._line(item_id, "caller", ts).text += str(e.get("delta") or "")
        elif kind == "conversation.item.input_audio_transcription.completed":
            line = self._line(item_id, "caller", ts)
            line.text, line.status = str(e.get("transcript") or "").strip(), "done"
        elif kind == "conversation.item.input_audio_transcription.failed":
            line = self._line(item_id, "caller", ts)
            err = (e.get("error") or {}).get("message", "unknown error")
            line.text, line.status, line.note = "(not transcribed)", "done", str(err)
        elif kind in ("conversation.item.added", "conversation.item.done"):
            self._item(e.get("item") or {}, ts)
        elif kind == "response.output_item.added":
            item = e.get("item") or {}
            if item.get("type") == "message" and item.get("role") == "assistant":
                self._line(str(item.get("id", "")), "assistant", ts)
        elif kind in ("response.output_audio_transcript.delta", "response.output_text.delta"):
            line = self._line(item_id, "assistant", ts)
            if line.status == "interrupted":
                line.cut_text += str(e.get("delta") or "")
            else:
                line.text += str(e.get("delta") or "")
        elif kind in ("response.output_audio_transcript.done", "response.output_text.done"):
            line = self._line(item_id, "assistant", ts)
            full = str(e.get("transcript") or e.get("text") or "")
            if full:
                line.text, line.cut_text = full, ""
            if item_id in self._cut_ms:
                self._split_cut(line)
            else:
                line.status = "done"
        elif kind == "response.function_call_arguments.done":
            call_id = str(e.get("call_id", ""))
            fc = self._function(call_id, str(e.get("name", "")), ts)
            fc.arguments = str(e.get("arguments") or "")
            self._add(
                "tool_call", f"{fc.name}({_compact(fc.arguments)})", ts, line_id=f"call-{call_id}"
            )
        elif kind == "response.done":
            usage = (e.get("response") or {}).get("usage")
            if isinstance(usage, dict):
                self.usage.add(usage)
        elif kind in ("session.updated", "session.created"):
            session = e.get("session")
            if isinstance(session, dict):
                self.applied_session = session
        elif kind == "error":
            err = e.get("error") or {}
            msg = relay_problem("model", str(err.get("message") or ""))
            self.last_error = msg
            self._add("error", msg, ts, note=str(err.get("code") or err.get("type") or ""))

    def _item(self, item: dict[str, Any], ts: float) -> None:
        if item.get("type") != "message":
            return
        item_id = str(item.get("id", ""))
        role = item.get("role")
        if role == "user":
            line = self._line(item_id, "caller", ts)
            for part in item.get("content") or []:
                if part.get("transcript"):
                    line.text, line.status = str(part["transcript"]), "done"
                elif part.get("type") == "input_text" and part.get("text"):
                    line.text, line.status = str(part["text"]), "done"
        elif role == "assistant" and not any(
            ln.id == item_id and ln.role == "assistant" for ln in self.lines
        ):
            self._line(item_id, "assistant", ts)


def _reconnecting(ev: dict[str, Any]) -> str:
    code = ev.get("code")
    attempt = ev.get("attempt")
    text = "model connection lost" + (f" (close code {code})" if code is not None else "")
    text += "; reconnecting"
    return text + (f", attempt {attempt}" if attempt else "") + "…"


def _compact(arguments: str) -> str:
    try:
        return json.dumps(json.loads(arguments), separators=(", ", ": "))
    except ValueError:
        return arguments


class CallBook:
    """The calls seen this session, by CallSid, newest first: every live call and the
    newest `max_ended` ended ones (a console left open for weeks must not grow forever)."""

    def __init__(self, max_ended: int = MAX_ENDED) -> None:
        self.calls: dict[str, CallLog] = {}
        self.max_ended = max_ended

    def prune(self, keep: str = "") -> None:
        """Forget the oldest ended calls beyond the bound (never `keep`: someone reads it)."""
        ended = [c for c in self.calls.values() if not c.live and c.call_sid != keep]
        if len(ended) <= self.max_ended:
            return
        ended.sort(key=lambda c: c.started_at, reverse=True)
        for log in ended[self.max_ended :]:
            del self.calls[log.call_sid]

    def hello(self, calls: list[dict[str, Any]], ended: list[dict[str, Any]] | None = None) -> None:
        """The relay's live calls, and the calls that ended recently (before we connected:
        shown with their summary, so a call that was over before the page opened is listed)."""
        for info in calls:
            sid = str(info.get("call_sid", ""))
            if sid in self.calls:
                self.calls[sid].update_info(info)
            elif sid:
                self.calls[sid] = CallLog.from_info(info)
        # A call we watched that the relay no longer knows ended while we were away.
        known = {str(c.get("call_sid", "")) for c in calls}
        for sid, log in self.calls.items():
            if sid not in known and log.live:
                log.state = "ended"
        for info in ended or []:
            sid = str(info.get("call_sid", ""))
            if not sid:
                continue
            known_log = self.calls.get(sid)
            if known_log is None:
                log = self.calls[sid] = CallLog.from_info(info)
                log.seen_live = False
            else:
                log = known_log
            if not log.summary:
                summary = dict(info.get("summary") or {})
                secs = summary.get("duration_s")
                ended_at = log.started_at + (secs if isinstance(secs, (int, float)) else 0.0)
                log.end(summary, ended_at)

    def apply(self, ev: dict[str, Any]) -> CallLog | None:
        sid = ev.get("call_sid")
        if not sid:
            return None
        log = self.calls.get(str(sid))
        if log is None:
            log = CallLog.from_info(ev.get("call") or {"call_sid": sid})
            log.call_sid = str(sid)
            self.calls[log.call_sid] = log
        log.apply(ev)
        return log

    def ordered(self) -> list[CallLog]:
        return sorted(self.calls.values(), key=lambda c: (not c.live, -c.started_at))
