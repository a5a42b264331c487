"""The official openai SDK drives the simulated model: every event must parse with its models."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from relay.sim.model import SimModel
from relay.sim.script import ModelScript, Reply, ToolCall
from shared.audio import silence_mulaw, tone_mulaw

openai = pytest.importorskip("openai")
pytest.importorskip("websockets")  # the SDK's realtime transport
pydantic = pytest.importorskip("pydantic")
from openai.types.realtime import RealtimeServerEvent  # noqa: E402

SERVER_EVENT = pydantic.TypeAdapter(RealtimeServerEvent)

SESSION: dict[str, Any] = {
    "type": "realtime",
    "instructions": "Be brief.",
    "output_modalities": ["audio"],
    "audio": {
        "input": {
            "format": {"type": "audio/pcmu"},
            "turn_detection": {"type": "semantic_vad", "eagerness": "auto"},
            "transcription": {"model": "gpt-4o-mini-transcribe"},
        },
        "output": {"format": {"type": "audio/pcmu"}, "voice": "marin"},
    },
    "tools": [{"type": "function", "name": "lookup", "parameters": {"type": "object"}}],
}


def validate_all(model: SimModel) -> list[str]:
    """Strict pydantic validation of every event the fake sent (required fields, literals)."""
    kinds = []
    for session in model.sessions:
        for event in session.sent:
            parsed = SERVER_EVENT.validate_python(event)
            assert parsed.type == event["type"]
            kinds.append(event["type"])
    return kinds


async def test_sdk_session_vad_turn_and_audio_response() -> None:
    script = ModelScript(replies=[Reply("Hi from the simulator.", audio_ms=500)])
    async with SimModel(script) as model:
        base = model.url.removesuffix("/realtime")
        client = openai.AsyncOpenAI(api_key="x", websocket_base_url=base)
        audio = b""
        seen: list[str] = []
        async with client.realtime.connect(model="gpt-realtime") as conn:
            await conn.session.update(session=SESSION)  # type: ignore[arg-type]
            async for event in conn:
                seen.append(event.type)
                if event.type == "session.updated":
                    speech = tone_mulaw(500) + silence_mulaw(500)
                    for i in range(0, len(speech), 160):
                        chunk = base64.b64encode(speech[i : i + 160]).decode()
                        await conn.input_audio_buffer.append(audio=chunk)
                elif event.type == "response.output_audio.delta":
                    audio += base64.b64decode(event.delta)
                elif event.type == "response.done":
                    assert event.response.status == "completed"
                    assert event.response.usage is not None
                    break
        session = model.sessions[0]
    assert seen[0] == "session.created"
    assert "input_audio_buffer.speech_started" in seen
    assert "conversation.item.input_audio_transcription.completed" in seen
    assert len(audio) == 500 * 8
    assert session.effective["audio"]["input"]["turn_detection"]["type"] == "semantic_vad"
    kinds = validate_all(model)
    assert set(seen) <= set(kinds)


async def test_sdk_parses_errors_tool_calls_truncation_and_cancel() -> None:
    script = ModelScript(
        replies=[
            Reply("First answer, rather long.", audio_ms=800),
            ToolCall("lookup", {"q": "x"}),
            Reply("Long answer to cancel.", audio_ms=5000),
        ],
        pacing="realtime",  # the third answer must still be streaming when cancel arrives
    )
    async with SimModel(script) as model:
        base = model.url.removesuffix("/realtime")
        client = openai.AsyncOpenAI(api_key="x", websocket_base_url=base)
        async with client.realtime.connect(model="gpt-realtime") as conn:
            no_vad = {**SESSION, "audio": {"input": {"turn_detection": None}}}
            await conn.session.update(session=no_vad)  # type: ignore[arg-type]
            await conn.session.update(session={"type": "realtime", "temperature": 1})  # type: ignore[typeddict-unknown-key]
            await conn.response.create()
            item_id = ""
            dones = 0
            cancelled = False
            async for event in conn:
                if event.type == "response.output_item.added" and not item_id:
                    item_id = event.item.id or ""
                if event.type == "response.done":
                    dones += 1
                    if dones == 1:
                        await conn.conversation.item.truncate(
                            item_id=item_id, content_index=0, audio_end_ms=300
                        )
                        await conn.conversation.item.truncate(
                            item_id=item_id, content_index=0, audio_end_ms=9000
                        )
                        await conn.response.create()
                    elif dones == 2:
                        call = event.response.output[0]
                        assert call.type == "function_call"
                        await conn.conversation.item.create(
                            item={
                                "type": "function_call_output",
                                "call_id": call.call_id or "",
                                "output": "{}",
                            }
                        )
                        await conn.response.create()
                    else:
                        assert event.response.status == "cancelled"
                        break
                if event.type == "response.output_audio.delta" and dones == 2 and not cancelled:
                    cancelled = True
                    await conn.response.cancel()
        session = model.sessions[0]
    kinds = validate_all(model)
    assert kinds.count("error") == 2  # unknown parameter, truncate past the end
    assert "conversation.item.truncated" in kinds
    assert "response.function_call_arguments.done" in kinds
    assert session.truncations[0]["audio_end_ms"] == 300
