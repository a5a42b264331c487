"""What the store keeps of a call, taken from its core when it ends.

From the core's own state, not from console events: those only flow while a console is
watching, and the store sees every call.
"""

from __future__ import annotations

from typing import Any, Literal, cast

from relay.store.records import (
    DIRECTIONS,
    CallRecord,
    Direction,
    SessionChange,
    ToolCall,
    Turn,
    TurnLatency,
    Usage,
)

from .call import REASON_TEXT, CallBridge


def call_record(
    bridge: CallBridge, *, ended_at: float, webhook_at: float | None = None
) -> CallRecord:
    """The record of `bridge`'s call. `webhook_at`: when /twiml answered for it, if this
    process saw that (the call started ringing then; the stream is when it was answered)."""
    turns = [
        Turn(
            role=cast(Literal["user", "assistant"], e.role),
            text=e.text,
            item_id=e.item_id,
            at=e.at or None,
            interrupted=e.heard_ms is not None,
            heard_ms=round(e.heard_ms) if e.heard_ms is not None else None,
        )
        for e in bridge.conversation.entries
        if e.kind == "message" and e.role in ("user", "assistant") and e.text
    ]
    direction = bridge.direction if bridge.direction in DIRECTIONS else "inbound"
    return CallRecord(
        call_sid=bridge.call_sid,
        started_at=webhook_at if webhook_at is not None else bridge.started_at,
        stream_sid=bridge.stream_sid,
        direction=cast(Direction, direction),
        from_=bridge.from_,
        to=bridge.to,
        answered_at=bridge.started_at,
        ended_at=ended_at,
        end_reason=bridge.end_reason,
        # Only a detail the reason does not already say ("the caller hung up" adds nothing).
        end_reason_text=""
        if bridge.end_detail == REASON_TEXT[bridge.end_reason]
        else bridge.end_detail,
        model=bridge.model,
        voice=_voice(bridge.config.session),
        profile=bridge.profile,
        turns=turns,
        tool_calls=[ToolCall(**_tool(t)) for t in bridge.tool_log],
        session_changes=[SessionChange(**c) for c in bridge.session_log],
        usage=Usage.from_tokens(bridge.usage),
        latency=[
            TurnLatency(item_id=item, latency_ms=round(ms)) for item, ms in bridge.latency_log
        ],
        recording_sids=list(bridge.recording_sids),
    )


def _detail(bridge: CallBridge) -> str:
    """Only a detail the end reason does not already say ("the caller hung up" adds none)."""
    return "" if bridge.end_detail == REASON_TEXT[bridge.end_reason] else bridge.end_detail


def _voice(session: dict[str, Any]) -> str:
    audio = session.get("audio")
    output = audio.get("output") if isinstance(audio, dict) else None
    voice = output.get("voice") if isinstance(output, dict) else None
    return voice if isinstance(voice, str) else ""


def _tool(entry: dict[str, Any]) -> dict[str, Any]:
    return {**entry, "source": entry["source"] if entry["source"] in _SOURCES else "backend"}


_SOURCES = ("backend", "console", "timeout")
