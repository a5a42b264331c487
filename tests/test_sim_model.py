"""The simulated Realtime model speaks the GA protocol: orders, errors, faults."""

from __future__ import annotations

import base64
import copy
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from relay.sim.model import SimModel
from relay.sim.script import ModelScript, Reply, ToolCall
from relay.sim.testing import GA_PCMU_SESSION, RealtimeTestClient
from shared import realtime as rt
from shared.audio import silence_mulaw, tone_mulaw


def session_with(**audio_input: Any) -> dict[str, Any]:
    s = copy.deepcopy(GA_PCMU_SESSION)
    s["audio"]["input"].update(audio_input)
    return s


@pytest.fixture
async def model() -> AsyncIterator[SimModel]:
    m = SimModel(ModelScript(replies=[Reply("Hello there, caller.", audio_ms=600)]))
    await m.start()
    yield m
    await m.stop()


async def configured(client: RealtimeTestClient, session: dict[str, Any]) -> dict[str, Any]:
    created = await client.recv()
    assert created["type"] == "session.created"
    await client.send({"type": "session.update", "session": session})
    updated = await client.recv()
    assert updated["type"] == "session.updated", updated
    return updated


def types(events: list[dict[str, Any]]) -> list[str]:
    skip = {"response.output_audio.delta", "response.output_audio_transcript.delta"}
    return [e["type"] for e in events if e["type"] not in skip]


def audio_bytes(events: list[dict[str, Any]]) -> bytes:
    return b"".join(
        base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta"
    )


RESPONSE_ORDER = [
    "response.created",
    "rate_limits.updated",
    "response.output_item.added",
    "conversation.item.added",
    "response.content_part.added",
    "response.output_audio.done",
    "response.output_audio_transcript.done",
    "response.content_part.done",
    "response.output_item.done",
    "conversation.item.done",
    "response.done",
]


async def test_session_created_first_with_ga_defaults(model: SimModel) -> None:
    async with RealtimeTestClient(model.url + "?model=gpt-realtime-mini") as client:
        created = await client.recv()
    assert created["type"] == "session.created"
    assert created["event_id"].startswith("event_")
    s = created["session"]
    assert s["id"].startswith("sess_") and s["object"] == "realtime.session"
    assert s["model"] == "gpt-realtime-mini" and s["type"] == "realtime"
    assert s["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert s["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    assert s["expires_at"] > 0


async def test_vad_turn_then_audio_response_in_ga_order(model: SimModel) -> None:
    async with RealtimeTestClient(model.url) as client:
        updated = await configured(client, session_with(transcription={"model": "whisper-1"}))
        assert updated["session"]["audio"]["input"]["format"] == {"type": "audio/pcmu"}
        await client.append(silence_mulaw(200) + tone_mulaw(600) + silence_mulaw(400))
        events = await client.until("response.done")
    turn = [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed",
    ]
    assert types(events) == turn + RESPONSE_ORDER
    started, stopped = events[0], events[1]
    assert started["audio_start_ms"] == 0  # speech at 200 ms minus 300 ms padding, clamped
    assert stopped["audio_end_ms"] == 1000  # 200 silence + 600 tone + 200 silence
    assert started["item_id"] == stopped["item_id"] == events[2]["item_id"]
    user = events[3]["item"]
    assert user["role"] == "user" and user["content"] == [
        {"type": "input_audio", "transcript": None}
    ]
    assert len(audio_bytes(events)) == 600 * 8
    transcript = "".join(
        e["delta"] for e in events if e["type"] == "response.output_audio_transcript.delta"
    )
    assert transcript == "Hello there, caller."
    done = events[-1]["response"]
    assert done["status"] == "completed" and done["id"].startswith("resp_")
    assert done["usage"]["output_token_details"]["audio_tokens"] > 0
    assert done["output"][0]["content"] == [{"type": "output_audio", "transcript": transcript}]
    # Everything decodes with the relay's own wire types.
    for e in events:
        decoded = rt.decode_server_event(msgspec_bytes(e))
        assert not isinstance(decoded, rt.UnknownServerEvent), e["type"]
    sim = model.sessions[0]
    assert [e["type"] for e in sim.sent if e["type"].startswith("output_audio_buffer")] == []


def msgspec_bytes(event: dict[str, Any]) -> bytes:
    import msgspec

    return msgspec.json.encode(event)


async def test_session_update_rejects_beta_fields_atomically(model: SimModel) -> None:
    async with RealtimeTestClient(model.url) as client:
        await client.recv()
        bad = {**session_with(), "instructions": "changed", "temperature": 0.7}
        await client.send({"type": "session.update", "event_id": "evt_1", "session": bad})
        err = await client.recv()
        assert err["type"] == "error"
        assert err["error"] == {
            "type": "invalid_request_error",
            "code": "unknown_parameter",
            "message": "Unknown parameter: 'session.temperature'.",
            "param": "session.temperature",
            "event_id": "evt_1",
        }
        beta = {"type": "realtime", "input_audio_format": "g711_ulaw"}
        await client.send({"type": "session.update", "session": beta})
        err = await client.recv()
        assert err["error"]["param"] == "session.input_audio_format"
        await client.send({"type": "session.update", "session": {"instructions": "x"}})
        err = await client.recv()
        assert err["error"]["code"] == "missing_required_parameter"
        assert err["error"]["param"] == "session.type"
        assert model.sessions[0].effective["instructions"] != "changed"  # nothing applied
        await client.send({"type": "session.update", "session": {"type": "realtime"}})
        updated = await client.recv()
    assert updated["type"] == "session.updated"
    assert updated["session"]["instructions"] != "changed"
    assert "event_id" in updated and updated["event_id"].startswith("event_")


async def response_without_vad(
    client: RealtimeTestClient,
) -> list[dict[str, Any]]:
    await configured(client, session_with(turn_detection=None))
    await client.send({"type": "response.create"})
    return await client.until("response.done")


async def test_truncate_is_validated_against_audio_sent(model: SimModel) -> None:
    async with RealtimeTestClient(model.url) as client:
        events = await response_without_vad(client)
        item_id = events[2]["item"]["id"]
        await client.send(
            {
                "type": "conversation.item.truncate",
                "event_id": "evt_t",
                "item_id": item_id,
                "content_index": 0,
                "audio_end_ms": 660,
            }
        )
        err = await client.recv()
        assert err["type"] == "error"
        assert err["error"]["code"] == "invalid_value"
        assert err["error"]["param"] == "audio_end_ms"
        assert err["error"]["message"] == "Audio content of 600ms is already shorter than 660ms"
        assert err["error"]["event_id"] == "evt_t"
        await client.send(
            {"type": "conversation.item.truncate", "item_id": item_id, "audio_end_ms": 420}
        )
        ok = await client.recv()
        assert ok == {
            "type": "conversation.item.truncated",
            "event_id": ok["event_id"],
            "item_id": item_id,
            "content_index": 0,
            "audio_end_ms": 420,
        }
        user = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "x"}]}
        await client.send({"type": "conversation.item.create", "item": user})
        added = (await client.until("conversation.item.done"))[0]
        await client.send(
            {
                "type": "conversation.item.truncate",
                "item_id": added["item"]["id"],
                "audio_end_ms": 0,
            }
        )
        err = await client.recv()
        assert err["error"]["code"] == "unsupported_content_type"
    assert model.sessions[0].truncations == [
        {"item_id": item_id, "audio_end_ms": 420, "sent_ms": 600}
    ]


async def test_cancel_active_and_not_active() -> None:
    script = ModelScript(replies=[Reply("A long answer.", audio_ms=3000)], pacing="realtime")
    async with SimModel(script) as model, RealtimeTestClient(model.url) as client:
        await configured(client, session_with(turn_detection=None))
        await client.send({"type": "response.cancel", "event_id": "evt_c"})
        err = await client.recv()
        assert err["error"]["code"] == "response_cancel_not_active"
        assert err["error"]["message"] == "Cancellation failed: no active response found"
        await client.send({"type": "response.create"})
        await client.until("response.output_audio.delta")
        await client.send({"type": "response.create"})
        busy = await client.until("error")
        assert busy[-1]["error"]["code"] == "conversation_already_has_active_response"
        await client.send({"type": "response.cancel"})
        events = await client.until("response.done")
        session = model.sessions[0]
        item_id = events[-1]["response"]["output"][0]["id"]
    done = events[-1]["response"]
    assert done["status"] == "cancelled"
    assert done["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
    assert done["output"][0]["status"] == "incomplete"
    assert session.audio_sent_ms(item_id) < 3000  # stopped mid-stream


async def test_barge_in_cancels_the_running_response_in_order() -> None:
    script = ModelScript(
        replies=[Reply("Let me tell you a story.", audio_ms=4000)], pacing="realtime"
    )
    async with SimModel(script) as model, RealtimeTestClient(model.url) as client:
        await configured(client, session_with())
        await client.speak(400, 300)
        await client.until("response.output_audio.delta")
        await client.append(tone_mulaw(300) + silence_mulaw(300))
        events = await client.until("input_audio_buffer.speech_stopped")
    order = [t for t in types(events) if not t.startswith("response.output_")]
    i = order.index("input_audio_buffer.speech_started")
    assert order[i:] == [
        "input_audio_buffer.speech_started",
        "response.content_part.done",
        "conversation.item.done",
        "response.done",
        "input_audio_buffer.speech_stopped",
    ]
    done = next(e for e in events if e["type"] == "response.done")["response"]
    assert done["status_details"] == {"type": "cancelled", "reason": "turn_detected"}


async def test_tool_call_round_trip() -> None:
    script = ModelScript(
        replies=[ToolCall("get_weather", {"city": "Paris"}), Reply("It is sunny.", audio_ms=400)]
    )
    async with SimModel(script) as model, RealtimeTestClient(model.url) as client:
        await configured(client, session_with(turn_detection=None))
        await client.send({"type": "response.create"})
        events = await client.until("response.done")
        assert types(events) == [
            "response.created",
            "rate_limits.updated",
            "response.output_item.added",
            "conversation.item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "conversation.item.done",
            "response.done",
        ]
        args_done = events[6]
        assert args_done["name"] == "get_weather"
        assert args_done["arguments"] == '{"city": "Paris"}'
        assert args_done["call_id"].startswith("call_")
        output = {
            "type": "function_call_output",
            "call_id": args_done["call_id"],
            "output": '{"sky": "sunny"}',
        }
        await client.send({"type": "conversation.item.create", "item": output})
        added = await client.until("conversation.item.done")
        assert added[0]["item"]["type"] == "function_call_output"
        await client.send({"type": "response.create"})
        answer = await client.until("response.done")
        session = model.sessions[0]
    assert answer[-1]["response"]["status"] == "completed"
    assert [i["type"] for i in session.conversation] == [
        "function_call",
        "function_call_output",
        "message",
    ]


async def test_commit_too_small_and_unknown_events(model: SimModel) -> None:
    async with RealtimeTestClient(model.url) as client:
        await configured(client, session_with(turn_detection=None))
        await client.append(silence_mulaw(40))
        await client.send({"type": "input_audio_buffer.commit"})
        err = await client.recv()
        assert err["error"]["code"] == "input_audio_buffer_commit_empty"
        assert err["error"]["message"] == (
            "Error committing input audio buffer: buffer too small. Expected at least 100ms of "
            "audio, but buffer only has 40.00ms of audio."
        )
        await client.append(silence_mulaw(100))
        await client.send({"type": "input_audio_buffer.commit"})
        committed = await client.until("conversation.item.done")
        assert committed[0]["type"] == "input_audio_buffer.committed"
        await client.send({"type": "output_audio_buffer.clear"})
        err = await client.recv()
        assert (err["error"]["code"], err["error"]["param"]) == ("invalid_value", "type")
        await client.send({"event_id": "evt_x"})
        err = await client.recv()
        assert err["error"]["code"] == "invalid_event"
        assert err["error"]["message"] == "The 'type' field is missing."
        session = model.sessions[0]
        got = await session.wait_for("input_audio_buffer.commit", count=2)
    assert got["type"] == "input_audio_buffer.commit"
    assert [e.get("type") for e in session.received][-2:] == ["output_audio_buffer.clear", None]


async def test_failed_response_reports_insufficient_quota() -> None:
    async with (
        SimModel(ModelScript(fail_response_with="insufficient_quota")) as model,
        RealtimeTestClient(model.url) as client,
    ):
        events = await response_without_vad(client)
    done = events[-1]["response"]
    assert done["status"] == "failed"
    assert done["status_details"]["error"]["code"] == "insufficient_quota"
    assert done["usage"]["total_tokens"] == 0


async def test_session_expiry_sends_error_then_closes_1001() -> None:
    async with (
        SimModel(ModelScript(expire_after_s=0.2)) as model,
        RealtimeTestClient(model.url) as client,
    ):
        created = await client.recv()
        assert created["session"]["expires_at"] <= created["session"]["expires_at"]
        err = await client.recv()
        assert err["error"]["code"] == "session_expired"
        assert err["error"]["message"] == "Your session hit the maximum duration of 60 minutes."
        msg = await client.ws.receive(timeout=2)
    assert msg.type == aiohttp.WSMsgType.CLOSE
    assert msg.data == 1001
    assert msg.extra == "Your session hit the maximum duration of 60 minutes."


async def test_handshake_needs_auth_and_refuses_beta(model: SimModel) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
        async with RealtimeTestClient(model.url, api_key=None):
            pass
    assert exc.value.status == 401
    async with RealtimeTestClient(model.url, beta=True) as client:
        msg = await client.ws.receive(timeout=2)
    assert (msg.type, msg.data, msg.extra) == (
        aiohttp.WSMsgType.CLOSE,
        4000,
        "beta_api_shape_disabled",
    )
    assert model.sessions == []


async def test_fault_injection_close_and_error(model: SimModel) -> None:
    async with RealtimeTestClient(model.url) as client:
        await client.recv()
        session = await model.wait_for_session()
        await session.send_error("server_error", None, "boom")
        err = await client.recv()
        assert err["error"]["message"] == "boom"
        await session.close(1011, "overloaded")
        msg = await client.ws.receive(timeout=2)
    assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, 1011)
    async with RealtimeTestClient(model.url) as client:
        await client.recv()
        session = await model.wait_for_session(2)
        await session.close(1006)
        msg = await client.ws.receive(timeout=2)
    assert msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.ERROR)


@pytest.mark.parametrize("pacing", ["realtime", "slow"])
async def test_pacing_modes_send_the_same_audio(pacing: str) -> None:
    reply = Reply("Same words.", audio_ms=300)
    got: dict[str, tuple[bytes, str]] = {}
    for mode in ("burst", pacing):
        script = ModelScript(replies=[reply], pacing=mode)  # type: ignore[arg-type]
        async with SimModel(script) as model, RealtimeTestClient(model.url) as client:
            events = await response_without_vad(client)
        transcript = "".join(
            e["delta"] for e in events if e["type"] == "response.output_audio_transcript.delta"
        )
        got[mode] = (audio_bytes(events), transcript)
    assert got["burst"] == got[pacing]
    assert len(got["burst"][0]) == 300 * 8
