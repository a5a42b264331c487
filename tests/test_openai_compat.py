"""Every client event the relay sends validates against the official openai SDK's models.

The SDK's models accept extra fields, so a beta field would slip through a plain parse;
each parsed model (and every nested one) must also have nothing in `model_extra`.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pydantic
import pytest
from openai.types.realtime import RealtimeClientEvent

from relay.actions import Connect, Hangup, ToModel
from relay.call import CallBridge, CallConfig
from shared.console_protocol import decode_command
from shared.session import build_session

ADAPTER: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(RealtimeClientEvent)


def assert_no_extra(model: Any, path: str = "$") -> None:
    if isinstance(model, pydantic.BaseModel):
        assert not model.model_extra, f"fields unknown to the SDK at {path}: {model.model_extra}"
        for name in type(model).model_fields:
            assert_no_extra(getattr(model, name), f"{path}.{name}")
    elif isinstance(model, (list, tuple)):
        for i, value in enumerate(model):
            assert_no_extra(value, f"{path}[{i}]")


def validate(event: dict[str, Any]) -> None:
    parsed = ADAPTER.validate_python(event)
    assert_no_extra(parsed)


def every_event_a_call_sends() -> list[dict[str, Any]]:
    """Drive one bridge through every path that talks to the model."""
    session = build_session(
        env={
            "voice": "ash",
            "input_audio_transcription": {"model": "whisper-1"},
            "input_audio_noise_reduction": {"type": "near_field"},
            "tools": [{"type": "function", "name": "t", "parameters": {"type": "object"}}],
            "max_response_output_tokens": 512,
        }
    )
    b = CallBridge(
        call_sid="CA1",
        stream_sid="MZ1",
        config=CallConfig(session=session, backend_tools=frozenset({"t"}), greeting="Say hi."),
        started_at=0.0,
    )
    out: list[Any] = []
    b.on_media("AAAA", 0.0)
    (connect,) = b.start(prewarmed=False)
    assert isinstance(connect, Connect)
    out += b.on_model_open(connect.gen, 0.0)
    out += b.on_model(b'{"type":"session.updated","session":{}}', 0.1)  # greeting
    out.append(ToModel(b.on_media("AAAA", 0.2) or b""))

    def ev(**f: Any) -> bytes:
        return json.dumps(f).encode()

    user = {"id": "u1", "type": "message", "role": "user", "content": []}
    out += b.on_model(ev(type="conversation.item.added", previous_item_id=None, item=user), 0.3)
    out += b.on_model(
        ev(
            type="conversation.item.input_audio_transcription.completed",
            item_id="u1",
            content_index=0,
            transcript="hello",
        ),
        0.3,
    )
    out += b.on_model(ev(type="response.created", response={"id": "r1"}), 0.3)
    audio = base64.b64encode(b"\xff" * 800).decode()
    out += b.on_model(ev(type="response.output_audio.delta", item_id="i1", delta=audio), 0.3)
    out += b.on_model(ev(type="input_audio_buffer.speech_started"), 0.35)  # truncate
    out += b.on_model(ev(type="response.done", response={"id": "r1", "status": "cancelled"}), 0.4)
    out += b.on_model(
        ev(type="response.function_call_arguments.done", call_id="c1", name="t", arguments="{}"),
        0.5,
    )
    out += b.on_tool_result("c1", '{"ok": true}', ok=True, source="backend", duration_ms=1, now=1)
    out += b.on_dtmf("4", 1.0)
    reconnect = b.on_model_closed(connect.gen, 1006, 1.5)
    (again,) = [a for a in reconnect if isinstance(a, Connect)]
    out += b.on_model_open(again.gen, 2.0)  # re-seeding after a reconnect
    b.config.session["audio"]["input"]["turn_detection"] = None
    for raw in [
        {"type": "session.update", "call_sid": "CA1", "session": {"instructions": "Be brief."}},
        {
            "type": "conversation.item.create",
            "call_sid": "CA1",
            "item": {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "hi"}],
            },
        },
        {"type": "input_audio_buffer.commit", "call_sid": "CA1"},
    ]:
        out += b.on_console(decode_command(json.dumps(raw).encode()), 3.0)
    out += b.on_model(ev(type="response.created", response={"id": "r2"}), 3.1)
    out += b.on_console(decode_command(b'{"type":"response.cancel","call_sid":"CA1"}'), 3.2)
    out += b.on_console(decode_command(b'{"type":"response.create","call_sid":"CA1"}'), 3.3)
    assert not any(isinstance(a, Hangup) for a in out)
    return [json.loads(a.data) for a in out if isinstance(a, ToModel)]


EVENTS = every_event_a_call_sends()


def test_the_scenario_covers_every_kind_of_client_event_the_relay_sends() -> None:
    kinds = {e["type"] for e in EVENTS}
    assert kinds >= {
        "session.update",
        "input_audio_buffer.append",
        "input_audio_buffer.commit",
        "conversation.item.create",
        "conversation.item.truncate",
        "response.create",
        "response.cancel",
    }


@pytest.mark.parametrize("event", EVENTS, ids=[e["type"] for e in EVENTS])
def test_client_event_validates_against_the_sdk(event: dict[str, Any]) -> None:
    validate(event)


def test_a_beta_field_would_be_caught() -> None:
    with pytest.raises(AssertionError):
        validate({"type": "session.update", "session": {"type": "realtime", "voice": "ash"}})
