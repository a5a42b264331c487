"""The call record: what the store keeps of one call, as msgspec Structs.

The same shape is written to the database, served by `GET /api/calls/{CallSid}` and sent
in the post-call webhook (docs/history-api.md). Times are unix seconds (floats), as in the
console protocol. Decoding tolerates unknown fields, so older relays read newer records.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from relay.actions import EndReason as _EndReason
from shared.usage import TokenUsage

# Why a call ended: the call core's one enum; `end_reason_text` carries the detail.
EndReason = _EndReason


Direction = Literal["inbound", "outbound", "browser", "sip"]
DIRECTIONS: tuple[str, ...] = ("inbound", "outbound", "browser", "sip")


class Turn(msgspec.Struct, kw_only=True):
    """One utterance: the caller's transcript or the assistant's answer."""

    role: Literal["user", "assistant"]
    text: str
    item_id: str = ""
    at: float | None = None  # when it started
    interrupted: bool = False  # the caller barged in while it played
    heard_ms: int | None = None  # what the caller had heard when interrupted (ms of audio)


class ToolCall(msgspec.Struct, kw_only=True):
    call_id: str
    name: str
    arguments: str = ""  # the model's JSON arguments, as sent
    output: str = ""
    ok: bool = True
    duration_ms: int = 0
    source: Literal["backend", "console", "timeout"] = "backend"  # who answered
    at: float | None = None


class SessionChange(msgspec.Struct, kw_only=True):
    """The call moved to a new model socket: a reconnect, a planned rollover, a switch."""

    kind: Literal["reconnect", "rollover", "switch"]
    at: float
    reason: str = ""


class TurnLatency(msgspec.Struct, kw_only=True):
    """Voice to voice: the caller's end of speech -> first assistant audio sent to Twilio."""

    item_id: str
    latency_ms: int


class Usage(msgspec.Struct, kw_only=True):
    """Tokens by kind, summed over the call's `response.done` events.

    `input_text` and `input_audio` include their cached part (as the API reports them);
    `input_cached_*` says how much of each was cached.
    """

    input_text: int = 0
    input_audio: int = 0
    input_cached_text: int = 0
    input_cached_audio: int = 0
    output_text: int = 0
    output_audio: int = 0

    @property
    def total(self) -> int:
        return self.input_text + self.input_audio + self.output_text + self.output_audio

    @classmethod
    def from_tokens(cls, tokens: TokenUsage) -> Usage:
        """What the record keeps of a call's summed usage (the totals are derived)."""
        return cls(
            input_text=tokens.input_text_tokens,
            input_audio=tokens.input_audio_tokens,
            input_cached_text=tokens.input_cached_text_tokens,
            input_cached_audio=tokens.input_cached_audio_tokens,
            output_text=tokens.output_text_tokens,
            output_audio=tokens.output_audio_tokens,
        )


class CallRecord(msgspec.Struct, kw_only=True):
    """Everything kept of one call. Submit it when the call ends (or earlier, as a snapshot:
    records are upserted by `call_sid`, the latest submitted wins)."""

    call_sid: str
    started_at: float
    stream_sid: str = ""
    direction: Direction = "inbound"
    from_: str = msgspec.field(default="", name="from")
    to: str = ""
    answered_at: float | None = None  # Twilio's `start`: the media stream began
    ended_at: float | None = None
    end_reason: EndReason | None = None
    end_reason_text: str = ""
    model: str = ""
    voice: str = ""
    profile: str | None = None  # the agent profile the call used (None: the defaults)
    turns: list[Turn] = []
    tool_calls: list[ToolCall] = []
    session_changes: list[SessionChange] = []
    usage: Usage = msgspec.field(default_factory=Usage)
    cost_usd: float | None = None  # estimated from usage (relay/store/cost.py); None: unknown
    latency: list[TurnLatency] = []
    recording_sids: list[str] = []

    @property
    def duration_s(self) -> float | None:
        if self.ended_at is None:
            return None
        return max(0.0, self.ended_at - (self.answered_at or self.started_at))

    @property
    def transcript(self) -> str:
        """The turns' text, one per line: what the history search looks in."""
        return "\n".join(t.text for t in self.turns if t.text)


class CallSummary(msgspec.Struct, kw_only=True):
    """One line of `GET /api/calls`: the record without its turns and tool calls."""

    call_sid: str
    started_at: float
    direction: str
    from_: str = msgspec.field(name="from")
    to: str
    answered_at: float | None
    ended_at: float | None
    duration_s: float | None
    end_reason: str | None
    end_reason_text: str
    profile: str | None
    model: str
    voice: str
    turns: int
    tool_calls: int
    total_tokens: int
    cost_usd: float | None


_encoder = msgspec.json.Encoder()


def encode(value: CallRecord | CallSummary | Any) -> bytes:
    return _encoder.encode(value)


def strip_nul(record: CallRecord) -> CallRecord:
    """The record without NUL characters in any string (a tool's output may hold them)."""
    if b"\\u0000" not in _encoder.encode(record):
        return record
    return msgspec.convert(_without_nul(msgspec.to_builtins(record)), CallRecord)


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    if isinstance(value, dict):
        return {k: _without_nul(v) for k, v in value.items()}
    return value


def to_builtins(record: CallRecord) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(record)
    return out


def from_builtins(data: Any) -> CallRecord:
    return msgspec.convert(data, CallRecord)
