"""Driving a CallBridge by hand in tests: events in, actions out, no sockets or clocks."""

from __future__ import annotations

import base64
import json
from typing import Any

from relay.actions import Action, Connect, ToConsole, ToModel, ToTwilio
from relay.call import CallBridge, CallConfig
from shared.session import build_session

SID = "MZ" + "0" * 32


def bridge(**session: Any) -> CallBridge:
    cfg = CallConfig(
        session=build_session(override=session or None),
        backend_tools=frozenset({"get_weather_from_coords", "end_call"}),
        console_tool_timeout_s=5.0,
    )
    return CallBridge(call_sid="CA1", stream_sid=SID, config=cfg, started_at=0.0)


def model_events(actions: list[Action]) -> list[dict[str, Any]]:
    """The client events sent, each checked for an event_id (appends excepted), then
    without it, to compare the rest."""
    out = []
    for a in actions:
        if isinstance(a, ToModel):
            event = json.loads(a.data)
            if event["type"] != "input_audio_buffer.append":
                assert event.pop("event_id").startswith("relay_"), event
            out.append(event)
    return out


def twilio_frames(actions: list[Action]) -> list[dict[str, Any]]:
    return [json.loads(a.data) for a in actions if isinstance(a, ToTwilio)]


def console(actions: list[Action]) -> list[dict[str, Any]]:
    out = []
    for a in actions:
        if isinstance(a, ToConsole):
            out.append(json.loads(a.event) if isinstance(a.event, bytes) else a.event)
    return out


def ev(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


def delta(item: str, ms: int, resp: str = "resp_1") -> bytes:
    audio = base64.b64encode(b"\xff" * (8 * ms)).decode()
    return ev(type="response.output_audio.delta", response_id=resp, item_id=item, delta=audio)


def connect(b: CallBridge, now: float) -> list[Action]:
    """Start the call and open the model socket it asks for."""
    (first,) = b.start(prewarmed=False)
    assert isinstance(first, Connect) and first.delay_s == 0
    return b.on_model_open(first.gen, now)


def open_bridge(**session: Any) -> CallBridge:
    b = bridge(**session)
    connect(b, 0.0)
    return b


def start_response(b: CallBridge, resp: str = "resp_1") -> None:
    b.on_model(ev(type="response.created", response={"id": resp, "status": "in_progress"}), 0.0)


def connects(actions: list[Action]) -> list[Connect]:
    return [a for a in actions if isinstance(a, Connect)]


def added(item_id: str, role: str, previous: str | None, **item: Any) -> bytes:
    """conversation.item.added for a message (or any item type given as type=...)."""
    body = {"id": item_id, "type": "message", "role": role, "content": [], **item}
    return ev(type="conversation.item.added", previous_item_id=previous, item=body)


def heard_text(item_id: str, text: str) -> bytes:
    return ev(
        type="conversation.item.input_audio_transcription.completed",
        item_id=item_id,
        content_index=0,
        transcript=text,
    )


def said_text(item_id: str, text: str, resp: str = "resp_1") -> bytes:
    return ev(
        type="response.output_audio_transcript.done",
        response_id=resp,
        item_id=item_id,
        output_index=0,
        content_index=0,
        transcript=text,
    )


def done(resp: str = "resp_1", status: str = "completed") -> bytes:
    return ev(type="response.done", response={"id": resp, "status": status})


def error(code: str, event_id: str | None = None, type: str = "invalid_request_error") -> bytes:
    err = {"type": type, "code": code, "message": f"simulated {code}", "event_id": event_id}
    return ev(type="error", error=err)


def sent_ids(actions: list[Action], kind: str) -> list[str]:
    """The event_ids of the client events of this type among the actions."""
    out = []
    for a in actions:
        if isinstance(a, ToModel):
            event = json.loads(a.data)
            if event["type"] == kind:
                out.append(event["event_id"])
    return out
