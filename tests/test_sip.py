"""SIP mode end to end: OpenAI (simulated) carries the audio, the relay accepts, steers and
ends the calls, with the same console events, tools, end reasons and history."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import aiohttp
import pydantic
import pytest
from openai.types.realtime import (
    RealtimeSessionCreateRequest,
    call_accept_params,
    call_refer_params,
    call_reject_params,
)
from test_openai_compat import assert_no_extra, validate

from relay.harness import (
    RunningRelay,
    give_number_a_profile,
    next_event,
    running_relay,
    wait_until,
)
from relay.sim.caller import (
    Dtmf,
    Hangup,
    Silence,
    Speak,
    WaitForAssistant,
    WaitForAssistantDone,
)
from relay.sim.script import ModelScript, Reply, ToolCall
from relay.sim.sip import SimSipCall, place_sip_call
from relay.store.webhook import signed_headers, signing_key
from relay.tools.registry import Tool

QUICK_VAD = '{"type":"server_vad","silence_duration_ms":300,"create_response":true}'
TOKEN = "sip-test-token"
ENV = {"OPENAI_TURN_DETECTION_JSON": QUICK_VAD, "RELAY_CONSOLE_TOKEN": TOKEN}
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TURN = [Speak(600), Silence(300), WaitForAssistant(timeout=8), WaitForAssistantDone(timeout=10)]


async def console(relay: RunningRelay, http: aiohttp.ClientSession) -> Any:
    return await http.ws_connect(f"{relay.ws_url}/logs", headers=AUTH)


def sip_call(relay: RunningRelay, call_id: str) -> SimSipCall:
    return relay.sim.sip_calls[call_id]


async def test_a_sip_call_gets_its_numbers_profile_and_is_seen_and_stored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    script = ModelScript(replies=[Reply("Support here, how can I help?", audio_ms=700)])
    async with running_relay(ENV, script) as relay, aiohttp.ClientSession() as http:
        profile = {"instructions": "You are the support line.", "voice": "cedar"}
        await give_number_a_profile(relay.base_url, TOKEN, "+15550003333", "support", profile)
        ws = await console(relay, http)
        steps = [*TURN, Silence(200), Hangup()]
        record = await place_sip_call(relay.sim, relay.base_url, steps=steps, to="+15550003333")
        started = await next_event(ws, "call.started")
        latency = await next_event(ws, "turn.latency")
        ended = await next_event(ws, "call.ended")
        await ws.close()
        assert relay.ctx.store is not None and await relay.ctx.store.flush(10)
        async with http.get(f"{relay.base_url}/api/calls/{record.call_id}", headers=AUTH) as r:
            stored = await r.json()
    assert record.ok and record.heard_ms and record.heard_ms[0] >= 650, record
    assert record.config["instructions"] == "You are the support line."
    assert record.config["audio"]["output"]["voice"] == "cedar"
    assert "format" not in json.dumps(record.config["audio"])  # SIP negotiates the codec
    assert started["call"]["direction"] == "sip" and started["call"]["profile"] == "support"
    assert 250 < latency["latency_ms"] < 1000
    assert ended["summary"]["end_reason"] == "caller_hung_up"
    assert (stored["direction"], stored["profile"], stored["to"]) == (
        "sip",
        "support",
        "+15550003333",
    )
    assert [t["role"] for t in stored["turns"]] == ["user", "assistant"]


async def test_a_tool_runs_in_a_sip_call_and_its_answer_is_heard() -> None:
    async def lookup(args: dict[str, Any], ctx: Any) -> Any:
        return {"status": "shipped"}

    script = ModelScript(
        replies=[ToolCall("lookup_order", {"order_id": "A1"}), Reply("It shipped.", audio_ms=500)]
    )
    async with running_relay(ENV, script) as relay, aiohttp.ClientSession() as http:
        relay.ctx.tools.add(Tool("lookup_order", "Look up an order", {"type": "object"}, lookup))
        ws = await console(relay, http)
        record = await place_sip_call(relay.sim, relay.base_url, steps=[*TURN, Hangup()])
        finished = await next_event(ws, "tool.finished")
        await ws.close()
    assert record.ok and record.heard_ms and record.heard_ms[-1] >= 450, record
    assert (finished["name"], finished["ok"], finished["source"]) == (
        "lookup_order",
        True,
        "backend",
    )


async def test_a_console_hang_up_reaches_the_hangup_endpoint() -> None:
    async with running_relay(ENV) as relay, aiohttp.ClientSession() as http:
        ws = await console(relay, http)
        call = asyncio.create_task(
            place_sip_call(relay.sim, relay.base_url, steps=[Silence(10_000), Hangup()])
        )
        started = await next_event(ws, "call.started")
        sid = started["call_sid"]
        await ws.send_str(json.dumps({"type": "call.end", "call_sid": sid}))
        ended = await next_event(ws, "call.ended")
        record = await call
        await ws.close()
    assert ("hangup", None) in sip_call(relay, sid).requests
    assert ended["summary"]["end_reason"] == "console_ended"
    assert record.ended_by == "relay"


async def test_end_call_hangs_up_after_the_goodbye_is_heard() -> None:
    script = ModelScript(replies=[ToolCall("end_call", {}), Reply("Goodbye!", audio_ms=800)])
    async with running_relay(ENV, script) as relay:
        record = await place_sip_call(
            relay.sim, relay.base_url, steps=[Speak(600), Silence(8000), Hangup()]
        )
        call = sip_call(relay, record.call_id)
        await wait_until(lambda: not relay.ctx.hub.calls)
    assert [verb for verb, _ in call.requests] == ["accept", "hangup"]
    assert record.ended_by == "relay"
    assert record.heard_ms and record.heard_ms[-1] >= 780  # the whole goodbye, then hang-up
    assert relay.ctx.hub.ended[-1]["summary"]["end_reason"] == "agent_ended"


async def test_a_transfer_reaches_refer() -> None:
    env = {**ENV, "RELAY_TRANSFER_NUMBER": "+15550009999"}
    script = ModelScript(
        replies=[ToolCall("transfer_call", {}), Reply("Transferring you now.", audio_ms=500)]
    )
    async with running_relay(env, script) as relay:
        record = await place_sip_call(
            relay.sim, relay.base_url, steps=[Speak(600), Silence(8000), Hangup()]
        )
        await wait_until(lambda: not relay.ctx.hub.calls)
    assert record.referred_to == "tel:+15550009999"
    assert relay.ctx.hub.ended[-1]["summary"]["end_reason"] == "transferred"


async def test_a_keypress_in_a_sip_call_gets_an_answer() -> None:
    script = ModelScript(replies=[Reply("You pressed four.", audio_ms=500)])
    async with running_relay(ENV, script) as relay:
        steps = [Silence(200), Dtmf("4"), WaitForAssistant(8), WaitForAssistantDone(8), Hangup()]
        record = await place_sip_call(relay.sim, relay.base_url, steps=steps)
        session = sip_call(relay, record.call_id).sessions[0]
    assert record.ok and record.heard_ms, record
    items = [e["item"] for e in session.received if e["type"] == "conversation.item.create"]
    assert "4" in items[0]["content"][0]["text"]


async def test_forged_and_stale_webhooks_are_refused_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    event = {"type": "realtime.call.incoming", "id": "evt_1", "data": {"call_id": "rtc_x"}}
    body = json.dumps(event).encode()
    async with running_relay(ENV) as relay, aiohttp.ClientSession() as http:
        url = f"{relay.base_url}/openai/webhook"
        forged = signed_headers(signing_key("whsec_" + "A" * 44), "evt_1", body)
        stale = signed_headers(
            signing_key(relay.sim.webhook_secret), "evt_1", body, now=time.time() - 600
        )
        statuses = []
        for headers in (forged, forged, stale, stale, {"content-type": "application/json"}):
            async with http.post(url, data=body, headers=headers) as resp:
                statuses.append(resp.status)
        accepts = [v for c in relay.sim.sip_calls.values() for v, _ in c.requests]
    assert statuses == [401, 401, 400, 400, 400]
    assert accepts == []
    lines = [r.getMessage() for r in caplog.records if "/openai/webhook" in r.getMessage()]
    assert len(lines) == 2, lines  # once forged, once stale


async def test_a_busy_relay_rejects_a_sip_call_with_486() -> None:
    async with running_relay({**ENV, "RELAY_MAX_CALLS": "1"}) as relay:
        first = asyncio.create_task(
            place_sip_call(relay.sim, relay.base_url, steps=[Silence(3000), Hangup()])
        )
        await wait_until(lambda: len(relay.ctx.hub.calls) == 1)
        second = await place_sip_call(relay.sim, relay.base_url, steps=[Hangup()])
        await first
        relay.ctx.draining = True
        third = await place_sip_call(relay.sim, relay.base_url, steps=[Hangup()])
    assert (second.accepted, second.rejected_with) == (False, 486)
    assert (third.accepted, third.rejected_with) == (False, 486)


async def test_a_dropped_control_socket_rejoins_the_same_call() -> None:
    script = ModelScript(replies=[Reply("First.", audio_ms=400), Reply("Second.", audio_ms=400)])
    async with running_relay(ENV, script) as relay, aiohttp.ClientSession() as http:
        ws = await console(relay, http)
        call_id = "rtc_" + "d" * 32
        call = asyncio.create_task(
            place_sip_call(
                relay.sim,
                relay.base_url,
                call_id=call_id,
                steps=[*TURN, Silence(1500), *TURN, Hangup()],
            )
        )
        await next_event(ws, "turn.latency")
        await wait_until(lambda: call_id in relay.sim.sip_calls)
        sim_call = sip_call(relay, call_id)
        await wait_until(lambda: bool(sim_call.session and sim_call.session.heard_ms))
        assert sim_call.session is not None
        await sim_call.session.close(1006)
        await next_event(ws, "model.reconnecting")
        record = await call
        await ws.close()
    assert len(sim_call.sessions) == 2  # the same call, joined again
    assert record.ok and len(record.heard_ms) >= 1, record


async def test_every_request_to_openai_validates_against_the_sdk_types() -> None:
    env = {**ENV, "RELAY_TRANSFER_NUMBER": "+15550009999", "RELAY_GREETING": "Say hello."}
    script = ModelScript(
        replies=[
            Reply("Hello.", audio_ms=300),
            ToolCall("transfer_call", {}),
            Reply("Transferring.", audio_ms=300),
        ]
    )
    async with running_relay({**env, "RELAY_MAX_CALLS": "1"}, script) as relay:
        first = asyncio.create_task(
            place_sip_call(
                relay.sim,
                relay.base_url,
                steps=[WaitForAssistantDone(8), Dtmf("1"), *TURN, Silence(3000), Hangup()],
            )
        )
        await wait_until(lambda: len(relay.ctx.hub.calls) == 1)
        busy = await place_sip_call(relay.sim, relay.base_url, steps=[Hangup()])
        record = await first
        calls = list(relay.sim.sip_calls.values())
    assert busy.rejected_with == 486 and record.referred_to
    requests = [(verb, body) for c in calls for verb, body in c.requests]
    checked = set()
    for verb, body in requests:
        params: Any = {
            "accept": call_accept_params.CallAcceptParams,
            "refer": call_refer_params.CallReferParams,
            "reject": call_reject_params.CallRejectParams,
        }.get(verb)
        if params is None:
            assert body is None, (verb, body)  # hangup has no body
            continue
        pydantic.TypeAdapter(params).validate_python(body)
        if verb == "accept":  # the same shape as a session: nothing the SDK does not know
            assert_no_extra(RealtimeSessionCreateRequest.model_validate(body))
        checked.add(verb)
    assert checked == {"accept", "refer", "reject"}
    sent = [e for c in calls for s in c.sessions for e in s.received]
    assert {e["type"] for e in sent} >= {"conversation.item.create", "response.create"}
    for event in sent:
        validate(event)
