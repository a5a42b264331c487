"""No dead air, end to end: a real relay on loopback against the simulator's faults.

For each fault that used to leave a caller in silence with the line open, the caller now
hears an answer or the apology, and the call ends with a reason a person can act on.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import httpx
import pytest
import respx

from relay.call import CallBridge
from relay.harness import next_event, running_relay
from relay.sim.caller import Dtmf, Hangup, Silence, Speak, WaitForAssistant, place_call
from relay.sim.script import ModelScript, Reply, ToolCall
from relay.tools.registry import Tool

QUICK_VAD = '{"type":"server_vad","silence_duration_ms":300,"create_response":true}'
ENV = {"OPENAI_TURN_DETECTION_JSON": QUICK_VAD, "RELAY_PREWARM": "false"}
TWILIO = {"TWILIO_ACCOUNT_SID": "AC" + "a" * 32, "TWILIO_AUTH_TOKEN": "d" * 32}
CALLS_URL = r"https://api\.twilio\.com/.*/Calls/CA\w+\.json"


@pytest.fixture
def twilio_rest() -> Iterator[respx.Route]:
    """Twilio's REST API, mocked: the relay's apology and hang-up go here."""
    with respx.mock(assert_all_mocked=False) as mock:
        yield mock.post(url__regex=CALLS_URL).mock(
            return_value=httpx.Response(200, json={"sid": "CA1", "status": "in-progress"})
        )


def apology_sent(route: respx.Route) -> bool:
    bodies = [call.request.content.decode() for call in route.calls]
    return any("Twiml=" in body and "Say" in body for body in bodies)


async def _console(relay_ws: str) -> tuple[aiohttp.ClientSession, aiohttp.ClientWebSocketResponse]:
    http = aiohttp.ClientSession()
    return http, await http.ws_connect(f"{relay_ws}/logs")


async def test_after_a_refused_response_create_a_later_keypress_is_answered() -> None:
    script = ModelScript(
        replies=[Reply("You pressed two.", audio_ms=500)],
        refuse_response_create_with="invalid_value",
        refuse_response_create_times=1,
    )
    async with running_relay(ENV, script) as relay:
        http, console = await _console(relay.ws_url)
        async with http, console:
            steps = [Silence(300), Dtmf("1"), Silence(500), Dtmf("2")]
            steps += [WaitForAssistant(timeout=5), Silence(300), Hangup()]
            call = asyncio.create_task(place_call(relay.base_url, steps=steps))
            dropped = await next_event(console, "error")
            while dropped.get("code") != "response_dropped":
                dropped = await next_event(console, "error")
            record = await call
    assert record.ok, record.summary()
    assert record.total_heard_ms > 0


async def test_a_tool_result_during_a_reconnect_is_answered_without_the_caller_speaking() -> None:
    async def slow_lookup(args: dict[str, Any], ctx: Any) -> Any:
        await asyncio.sleep(0.2)  # finishes while the model is reconnecting
        return {"status": "shipped"}

    tool = Tool("lookup_order", "Look up an order", {"type": "object"}, slow_lookup)
    script = ModelScript(
        replies=[ToolCall("lookup_order", {}), Reply("Your order has shipped.", audio_ms=600)],
        drop_after_tool_call=1006,
        connect_delay_s=0.5,
    )
    async with running_relay(ENV, script) as relay:
        relay.ctx.tools.add(tool)
        http, console = await _console(relay.ws_url)
        async with http, console:
            steps = [Speak(600), Silence(400), WaitForAssistant(timeout=10), Silence(700)]
            call = asyncio.create_task(place_call(relay.base_url, steps=[*steps, Hangup()]))
            seen: list[str] = []
            await next_event(console, "model.reconnecting", seen=seen)
            finished = await next_event(console, "tool.finished", seen=seen)
            assert len(relay.sim.sessions) == 1, "the tool must finish while the model is away"
            assert finished["ok"] is True
            record = await call
        second = relay.sim.sessions[1]
    assert record.ok, record.summary()
    assert record.total_heard_ms >= 500  # the answer, heard with no second question
    assert len(record.turns) == 1
    kinds = [(e["type"], e.get("item", {}).get("type")) for e in second.received]
    assert ("conversation.item.create", "function_call") in kinds
    output = kinds.index(("conversation.item.create", "function_call_output"))
    assert ("response.create", None) in kinds[output:]


async def test_a_refused_key_ends_the_call_in_seconds_with_the_apology(
    twilio_rest: respx.Route,
) -> None:
    env = {**ENV, **TWILIO, "RELAY_PREWARM": "true"}
    async with running_relay(env, ModelScript(refuse_upgrade_with=401)) as relay:
        http, console = await _console(relay.ws_url)
        async with http, console:
            started = time.monotonic()
            steps = [Speak(600), Silence(8000), Hangup()]
            call = asyncio.create_task(
                place_call(relay.base_url, steps=steps, auth_token=TWILIO["TWILIO_AUTH_TOKEN"])
            )
            ended = await next_event(console, "call.ended")
            record = await call
            took = time.monotonic() - started
            async with http.get(f"{relay.base_url}/health") as resp:
                health = await resp.json()
    assert took < 3.0
    assert len(relay.sim.rejected) <= 3  # the pre-warm and one attempt; no retry loop
    assert record.closed_by == "relay", record.summary()
    assert ended["summary"]["end_reason"] == "model_unavailable"
    assert "OPENAI_API_KEY" in ended["summary"]["reason"]
    assert health["model"]["status"] == "refused"
    assert apology_sent(twilio_rest)


async def test_a_crashing_task_ends_the_call_with_the_apology(
    monkeypatch: pytest.MonkeyPatch, twilio_rest: respx.Route
) -> None:
    def broken_timer(self: CallBridge, now: float) -> list[Any]:
        raise RuntimeError("a bug in the timer")

    monkeypatch.setattr(CallBridge, "on_timer", broken_timer)
    async with running_relay({**ENV, **TWILIO}) as relay:
        http, console = await _console(relay.ws_url)
        async with http, console:
            steps = [Speak(600), Silence(5000), Hangup()]
            call = asyncio.create_task(
                place_call(relay.base_url, steps=steps, auth_token=TWILIO["TWILIO_AUTH_TOKEN"])
            )
            ended = await next_event(console, "call.ended")
            record = await call
    assert record.closed_by == "relay", record.summary()
    assert ended["summary"]["end_reason"] == "error"
    assert "timer" in ended["summary"]["reason"]
    assert apology_sent(twilio_rest)


async def test_a_console_hang_up_ends_the_call_with_its_own_reason() -> None:
    async with running_relay(ENV) as relay:
        http, console = await _console(relay.ws_url)
        async with http, console:
            steps = [Speak(600), Silence(8000), Hangup()]
            call = asyncio.create_task(place_call(relay.base_url, steps=steps))
            started = await next_event(console, "call.started")
            sid = started["call_sid"]
            await console.send_str(json.dumps({"type": "call.end", "call_sid": sid, "id": "h"}))
            ok = await next_event(console, "command.ok")
            assert ok["id"] == "h"
            ended = await next_event(console, "call.ended")
            record = await call
    assert ended["summary"]["end_reason"] == "console_ended"
    assert record.closed_by == "relay"
