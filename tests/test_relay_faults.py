"""The relay keeps the caller talking through model faults and hangs up politely when it cannot."""

from __future__ import annotations

import asyncio

import aiohttp
import httpx
import pytest
import respx
from twilio.request_validator import RequestValidator

from relay.harness import next_event, running_relay
from relay.sim.caller import (
    Hangup,
    Silence,
    SimCaller,
    Speak,
    one_turn,
    parse_twiml,
    place_call,
)
from relay.sim.script import ModelScript, Reply, ToolCall

QUICK_VAD = '{"type":"server_vad","silence_duration_ms":300,"create_response":true}'
ENV = {"OPENAI_TURN_DETECTION_JSON": QUICK_VAD, "RELAY_PREWARM": "false"}
TWO_REPLIES = [Reply("First answer.", audio_ms=500), Reply("Second answer.", audio_ms=500)]


async def _console(base_ws: str) -> tuple[aiohttp.ClientSession, aiohttp.ClientWebSocketResponse]:
    http = aiohttp.ClientSession()
    ws = await http.ws_connect(f"{base_ws}/logs")
    return http, ws


@pytest.mark.parametrize("code", [1011, 1006, 1001])
async def test_model_drop_mid_call_reconnects_reseeds_and_the_caller_hears_the_next_answer(
    code: int,
) -> None:
    async with running_relay(ENV, ModelScript(replies=TWO_REPLIES)) as relay:
        http, console = await _console(relay.ws_url)
        async with http, console:
            caller = SimCaller(
                f"{relay.ws_url}/call",
                custom_parameters={"stream_token": await relay.ctx.tokens.issue("CA" + "7" * 32)},
                call_sid="CA" + "7" * 32,
            )
            async with caller:
                for step in one_turn():
                    assert await caller.do(step)
                first = relay.sim.sessions[0]
                await first.close(code)
                reconnect = await next_event(console, "model.reconnecting")
                assert reconnect["code"] in (code, None)
                second = await relay.sim.wait_for_session(2)
                await second.wait_for("session.update")
                for step in one_turn():
                    assert await caller.do(step)
                record = await caller.hangup()
        assert record.ok, record.summary()
        assert len(record.heard_ms) == 2  # an answer before and one after the drop
        # The new session got the config and the conversation so far, as items.
        kinds = [e["type"] for e in second.received]
        assert kinds[0] == "session.update"
        seeded = [e["item"] for e in second.received if e["type"] == "conversation.item.create"]
        texts = [c["text"] for item in seeded for c in item["content"]]
        assert "First answer." in texts
        assert any(item["role"] == "user" for item in seeded)


async def test_session_rolls_over_before_it_expires_without_the_caller_noticing() -> None:
    env = {**ENV, "RELAY_ROLLOVER_MARGIN_S": "3"}
    script = ModelScript(replies=TWO_REPLIES, expire_after_s=4.0)
    async with running_relay(env, script) as relay:
        http, console = await _console(relay.ws_url)
        async with http, console:
            steps = [*one_turn(), Silence(ms=1500), *one_turn(), Hangup()]
            call = asyncio.create_task(place_call(relay.base_url, steps=steps))
            switched = await next_event(console, "model.switched", timeout=10)
            assert switched["reason"] == "session rollover"
            record = await call
        assert record.ok, record.summary()
        assert len(record.heard_ms) == 2
        first, second = relay.sim.sessions[:2]
        # The old session was closed by the relay, before the server expired it.
        assert not any(
            e["type"] == "error" and e["error"]["code"] == "session_expired" for e in first.sent
        )
        seeded = [e for e in second.received if e["type"] == "conversation.item.create"]
        assert seeded, "the new session must know the conversation so far"


async def test_model_unreachable_for_too_long_ends_the_call_with_an_apology() -> None:
    env = {
        **ENV,
        "RELAY_RECONNECT_GIVE_UP_S": "1",
        "TWILIO_ACCOUNT_SID": "AC" + "a" * 32,
        "TWILIO_AUTH_TOKEN": "b" * 32,
    }
    with respx.mock(assert_all_mocked=False) as mock:
        update = mock.post(url__regex=r"https://api\.twilio\.com/.*/Calls/CA\w+\.json").mock(
            return_value=httpx.Response(200, json={"sid": "CA1", "status": "in-progress"})
        )
        async with running_relay(env, ModelScript(replies=TWO_REPLIES)) as relay:
            steps = [*one_turn(), Silence(ms=4000), Hangup()]
            call = asyncio.create_task(place_call(relay.base_url, steps=steps, auth_token="b" * 32))
            session = await relay.sim.wait_for_session(1)
            await session.wait_for("input_audio_buffer.append")
            await asyncio.sleep(1.5)  # let the first answer play
            await relay.sim.stop()  # the model is gone, and stays gone
            record = await call
        assert record.closed_by == "relay", record.summary()
        assert update.called
        body = update.calls.last.request.content.decode()
        assert "Twiml=" in body and "Say" in body


async def test_failed_response_is_reported_and_the_call_goes_on() -> None:
    script = ModelScript(replies=TWO_REPLIES, fail_response_with="server_error")
    async with running_relay(ENV, script) as relay:
        http, console = await _console(relay.ws_url)
        async with http, console:
            call = asyncio.create_task(
                place_call(relay.base_url, steps=[Speak(600), Silence(1500), Hangup()])
            )
            error = await next_event(console, "error")
            assert error["code"] == "server_error"
            assert error["source"] == "model"
            record = await call
        assert record.ok, record.summary()


async def test_an_account_out_of_quota_ends_the_call_at_once_with_the_reason() -> None:
    script = ModelScript(replies=TWO_REPLIES, fail_response_with="insufficient_quota")
    async with running_relay(ENV, script) as relay:
        http, console = await _console(relay.ws_url)
        async with http, console:
            call = asyncio.create_task(
                place_call(relay.base_url, steps=[Speak(600), Silence(5000), Hangup()])
            )
            ended = await next_event(console, "call.ended")
            record = await call
        assert ended["summary"]["end_reason"] == "model_unavailable"
        assert "quota" in ended["summary"]["reason"]
        assert record.closed_by == "relay", record.summary()


async def test_model_change_from_the_console_opens_a_new_session_between_turns() -> None:
    async with running_relay(ENV, ModelScript(replies=TWO_REPLIES)) as relay:
        http, console = await _console(relay.ws_url)
        async with http, console:
            steps = [*one_turn(), Silence(ms=1500), *one_turn(), Hangup()]
            call = asyncio.create_task(place_call(relay.base_url, steps=steps))
            started = await next_event(console, "call.started")
            first = await relay.sim.wait_for_session(1)
            await first.wait_sent("response.done", timeout=10)
            await console.send_json(
                {
                    "type": "session.update",
                    "call_sid": started["call_sid"],
                    "session": {"model": "gpt-realtime-mini"},
                }
            )
            switched = await next_event(console, "model.switched")
            assert switched["model"] == "gpt-realtime-mini"
            record = await call
        assert record.ok, record.summary()
        second = relay.sim.sessions[1]
        assert second.model == "gpt-realtime-mini"
        assert second.received[0]["session"]["model"] == "gpt-realtime-mini"
        assert len(record.heard_ms) == 2


async def test_twilio_socket_dropping_without_stop_cleans_the_call_up() -> None:
    async with running_relay(ENV, ModelScript(replies=TWO_REPLIES)) as relay:
        sid = "CA" + "5" * 32
        caller = SimCaller(
            f"{relay.ws_url}/call",
            custom_parameters={"stream_token": await relay.ctx.tokens.issue(sid)},
            call_sid=sid,
        )
        await caller.connect()
        assert await caller.do(Speak(ms=300))
        session = await relay.sim.wait_for_session(1)
        assert sid in relay.ctx.hub.calls
        assert caller._ws is not None
        await caller._ws.close()  # no `stop`: the network dropped
        await asyncio.wait_for(session.closed.wait(), 5)
        assert sid not in relay.ctx.hub.calls
        assert relay.ctx.hub.ended[-1]["call_sid"] == sid
        await caller.hangup()


async def test_end_call_hangs_up_through_twilio_only_after_the_goodbye_played() -> None:
    env = {**ENV, "TWILIO_ACCOUNT_SID": "AC" + "a" * 32, "TWILIO_AUTH_TOKEN": "c" * 32}
    script = ModelScript(replies=[ToolCall("end_call", {}), Reply("Goodbye!", audio_ms=800)])
    heard_at_hangup: list[float] = []
    caller_box: dict[str, SimCaller] = {}

    def on_update(request: httpx.Request) -> httpx.Response:
        caller = caller_box.get("c")
        heard_at_hangup.append(caller.played_ms() if caller else -1)
        return httpx.Response(200, json={"sid": "CA1", "status": "completed"})

    with respx.mock(assert_all_mocked=False) as mock:
        update = mock.post(url__regex=r"https://api\.twilio\.com/.*/Calls/CA\w+\.json").mock(
            side_effect=on_update
        )
        async with running_relay(env, script) as relay:
            sid = "CA" + "6" * 32
            async with aiohttp.ClientSession() as http:
                params = {"CallSid": sid, "From": "+1", "To": "+2"}
                sig = RequestValidator("c" * 32).compute_signature(
                    f"{relay.base_url}/twiml", params
                )
                async with http.post(
                    f"{relay.base_url}/twiml", data=params, headers={"X-Twilio-Signature": sig}
                ) as resp:
                    assert resp.status == 200
                    twiml = await resp.text()
            url, custom = parse_twiml(twiml)
            caller = SimCaller(
                f"{relay.ws_url}/call",
                auth_token="c" * 32,
                signed_url=url,
                custom_parameters=custom,
                call_sid=sid,
            )
            caller_box["c"] = caller
            record = await caller.run([Speak(600), Silence(400), Silence(6000), Hangup()])
        assert update.called
        assert "Status=completed" in update.calls.last.request.content.decode()
        assert heard_at_hangup and heard_at_hangup[0] >= 795  # the whole goodbye was heard
        assert record.closed_by == "relay"
