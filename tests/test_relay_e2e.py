"""The relay end to end on loopback: real Hypercorn, real sockets, the simulator on both sides."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from relay import metrics
from relay.harness import RunningRelay, next_event, running_relay, wait_until
from relay.sim.caller import (
    Dtmf,
    Hangup,
    Silence,
    Speak,
    WaitForAssistant,
    WaitForAssistantDone,
    barge_in,
    one_turn,
    place_call,
)
from relay.sim.script import ModelScript, Reply, ToolCall
from relay.tools import Tool

QUICK_VAD = '{"type":"server_vad","silence_duration_ms":300,"create_response":true}'
BASE_ENV = {"OPENAI_TURN_DETECTION_JSON": QUICK_VAD, "RELAY_PREWARM": "false"}

ONE_TURN = [*one_turn(), Hangup()]


def sent_types(relay: RunningRelay, n: int = 1) -> list[str]:
    return [e["type"] for e in relay.sim.sessions[n - 1].received]


async def test_a_full_call_hears_the_answer_and_ends_cleanly() -> None:
    script = ModelScript(replies=[Reply("Hello there, how can I help?", audio_ms=600)])
    async with running_relay(BASE_ENV, script) as relay:
        record = await place_call(relay.base_url, steps=ONE_TURN)
        assert record.ok, record.summary()
        assert record.total_heard_ms == pytest.approx(600, abs=1)
        assert record.protocol_errors == []
        types = sent_types(relay)
        assert types[0] == "session.update"  # configured before any audio
        assert "input_audio_buffer.append" in types
        assert relay.sim.sessions[0].effective["audio"]["input"]["format"] == {"type": "audio/pcmu"}
        # Marks were echoed as their audio played (the very last echo may race the hang-up).
        assert (
            len(record.marks_received) - 1 <= len(record.marks_echoed) <= len(record.marks_received)
        )
        assert record.marks_echoed
        await wait_until(lambda: not relay.ctx.hub.calls)
        assert relay.sim.sessions[0].ws.closed


async def test_ten_concurrent_calls_have_independent_conversations() -> None:
    script = ModelScript(replies=[Reply("Independent answer.", audio_ms=500)])
    async with running_relay(BASE_ENV, script) as relay:
        records = await asyncio.gather(
            *(place_call(relay.base_url, steps=ONE_TURN) for _ in range(10))
        )
        assert all(r.ok for r in records), [r.summary() for r in records if not r.ok]
        assert len({r.call_sid for r in records}) == 10
        assert len(relay.sim.sessions) == 10
        for record in records:
            assert record.total_heard_ms == pytest.approx(500, abs=1)
            assert len(record.heard_ms) == 1  # heard only its own answer


async def test_audio_sent_before_the_model_is_ready_is_not_lost() -> None:
    script = ModelScript(connect_delay_s=0.6, replies=[Reply("ok", audio_ms=400)])
    async with running_relay(BASE_ENV, script) as relay:
        record = await place_call(relay.base_url, steps=ONE_TURN)
        assert record.ok, record.summary()
        session = relay.sim.sessions[0]
        appends = [e for e in session.received if e["type"] == "input_audio_buffer.append"]
        # Every frame the caller sent reached the model, in order, after session.update.
        assert len(appends) == record.frames_sent
        assert session.received[0]["type"] == "session.update"


async def test_prewarm_opens_the_model_while_ringing_and_hands_it_over() -> None:
    env = {**BASE_ENV, "RELAY_PREWARM": "true"}
    script = ModelScript(connect_delay_s=0.3, replies=[Reply("ok", audio_ms=400)])
    async with running_relay(env, script) as relay:
        async with aiohttp.ClientSession() as http:
            await http.post(f"{relay.base_url}/twiml", data={"CallSid": "CA" + "1" * 32})
        await relay.sim.wait_for_session(1, timeout=3)  # opened on the webhook alone
        record = await place_call(relay.base_url, steps=ONE_TURN)
        assert record.ok, record.summary()
        # The first session was for the unused webhook; the call used exactly one more.
        assert len(relay.sim.sessions) == 2
        used = relay.sim.sessions[1]
        assert [e["type"] for e in used.received].count("session.update") == 1


async def test_unused_prewarmed_session_is_closed_after_the_timeout() -> None:
    env = {**BASE_ENV, "RELAY_PREWARM": "true", "RELAY_PREWARM_TIMEOUT_S": "1"}
    async with running_relay(env) as relay:
        async with aiohttp.ClientSession() as http:
            await http.post(f"{relay.base_url}/twiml", data={"CallSid": "CA" + "2" * 32})
        session = await relay.sim.wait_for_session(1, timeout=3)
        await wait_until(lambda: session.ws.closed, timeout=4)
        assert len(relay.ctx.prewarm) == 0


BARGE_IN = [*barge_in(), Hangup()]


@pytest.mark.parametrize("pacing", ["burst", "realtime", "slow"])
async def test_barge_in_truncates_within_40ms_of_what_the_caller_heard(pacing: str) -> None:
    script = ModelScript(
        pacing=pacing,  # type: ignore[arg-type]
        replies=[Reply("A long answer " * 10, audio_ms=4000), Reply("Short.", audio_ms=300)],
    )
    async with running_relay(BASE_ENV, script) as relay:
        record = await place_call(relay.base_url, steps=BARGE_IN)
        assert record.ok, record.summary()
        session = relay.sim.sessions[0]
        assert len(record.clears) == 1, record.summary()
        (truncation,) = session.truncations
        clear = record.clears[0]
        assert truncation["item_id"] == clear.item_id
        error = abs(truncation["audio_end_ms"] - clear.played_ms)
        assert error <= 40, f"{pacing}: truncated at {truncation}, caller heard {clear.played_ms}"
        # Nothing of the interrupted answer played after the clear.
        assert record.heard_ms[clear.item_id] == pytest.approx(clear.played_ms, abs=25)


async def test_speaking_after_a_finished_answer_sends_no_truncate_and_no_clear() -> None:
    script = ModelScript(replies=[Reply("Short.", audio_ms=400)])
    steps = [*one_turn(), *one_turn(), Hangup()]
    async with running_relay(BASE_ENV, script) as relay:
        record = await place_call(relay.base_url, steps=steps)
        assert record.ok, record.summary()
        assert record.clears == []
        assert "conversation.item.truncate" not in sent_types(relay)


async def test_dtmf_reaches_the_model_as_text() -> None:
    async with running_relay(BASE_ENV) as relay:
        record = await place_call(
            relay.base_url, steps=[Silence(ms=200), Dtmf("5"), Silence(200), Hangup()]
        )
        assert record.ok, record.summary()
        session = relay.sim.sessions[0]
        item = await session.wait_for("conversation.item.create")
        assert item["item"]["content"][0]["text"] == "The caller pressed the 5 key."


# --- tools ---------------------------------------------------------------------------------


def _lookup_tool(delay: float = 0.0, fail: bool = False) -> Tool:
    async def handler(args: dict[str, Any], ctx: Any) -> Any:
        if delay:
            await asyncio.sleep(delay)
        if fail:
            raise RuntimeError("database is down")
        return {"order": args["order_id"], "status": "shipped"}

    return Tool(
        name="lookup_order",
        description="Look up an order",
        parameters={
            "type": "object",
            "properties": {"order_id": {"type": "string"}},
            "required": ["order_id"],
        },
        handler=handler,
    )


TOOL_STEPS = ONE_TURN


async def _run_tool_call(
    arguments: dict[str, Any], tool: Tool | None, env: dict[str, str] | None = None
) -> tuple[dict[str, Any], RunningRelay, Any]:
    script = ModelScript(
        replies=[
            ToolCall("lookup_order", arguments),
            Reply("Your order has shipped.", audio_ms=400),
        ]
    )
    async with running_relay({**BASE_ENV, **(env or {})}, script) as relay:
        if tool is not None:
            relay.ctx.tools.add(tool)
            relay.ctx.default_session["tools"] = relay.ctx.tools.schemas()
        record = await place_call(relay.base_url, steps=TOOL_STEPS)
        session = relay.sim.sessions[0]
        outputs = [
            e["item"]
            for e in session.received
            if e["type"] == "conversation.item.create"
            and e["item"]["type"] == "function_call_output"
        ]
        assert len(outputs) == 1, record.summary()
        return outputs[0], relay, record


async def test_tool_success_output_is_json_encoded_once() -> None:
    output, _, record = await _run_tool_call({"order_id": "A1"}, _lookup_tool())
    assert record.ok, record.summary()
    assert json.loads(output["output"]) == {"order": "A1", "status": "shipped"}


async def test_tool_with_bad_arguments_gets_an_error_output() -> None:
    output, _, record = await _run_tool_call({"order": 5}, _lookup_tool())
    assert "invalid arguments" in json.loads(output["output"])["error"]
    assert record.total_heard_ms > 0  # the model still answered the caller


async def test_tool_that_hangs_times_out_and_the_call_goes_on() -> None:
    output, _, record = await _run_tool_call(
        {"order_id": "A1"}, _lookup_tool(delay=30), {"RELAY_TOOL_TIMEOUT_S": "0.3"}
    )
    assert "did not answer" in json.loads(output["output"])["error"]
    assert record.ok, record.summary()


async def test_tool_that_raises_gets_an_error_output() -> None:
    output, _, _ = await _run_tool_call({"order_id": "A1"}, _lookup_tool(fail=True))
    assert "database is down" in json.loads(output["output"])["error"]


async def test_unknown_tool_unanswered_times_out_so_the_call_never_hangs() -> None:
    output, _, record = await _run_tool_call(
        {"order_id": "A1"}, None, {"RELAY_CONSOLE_TOOL_TIMEOUT_S": "0.5"}
    )
    assert "no answer" in json.loads(output["output"])["error"]
    assert record.total_heard_ms > 0


async def test_unknown_tool_answered_by_the_console() -> None:
    script = ModelScript(
        replies=[ToolCall("crm_lookup", {"q": "x"}), Reply("Found it.", audio_ms=400)]
    )
    async with running_relay(BASE_ENV, script) as relay:
        async with aiohttp.ClientSession() as http, http.ws_connect(f"{relay.ws_url}/logs") as ws:
            await next_event(ws, "relay.hello")
            call = asyncio.create_task(place_call(relay.base_url, steps=TOOL_STEPS))
            pending = await next_event(ws, "tool.pending")
            await ws.send_json(
                {
                    "type": "function_call.output",
                    "call_sid": pending["call_sid"],
                    "call_id": pending["call_id"],
                    "output": '{"customer": "Ada"}',
                }
            )
            finished = await next_event(ws, "tool.finished")
            assert finished["source"] == "console"
            record = await call
        assert record.ok, record.summary()
        outputs = [
            e["item"]["output"]
            for e in relay.sim.sessions[0].received
            if e["type"] == "conversation.item.create"
        ]
        assert outputs == ['{"customer": "Ada"}']


# --- console feed --------------------------------------------------------------------------


async def test_console_needs_the_token_when_one_is_set() -> None:
    async with running_relay({**BASE_ENV, "RELAY_CONSOLE_TOKEN": "s3cret-token"}) as relay:
        async with aiohttp.ClientSession() as http:
            for url, headers in [
                (f"{relay.ws_url}/logs", {}),
                (f"{relay.ws_url}/logs?token=wrong", {}),
                (f"{relay.ws_url}/logs", {"Authorization": "Bearer nope"}),
            ]:
                with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                    await http.ws_connect(url, headers=headers)
                assert err.value.status == 403
            async with http.ws_connect(
                f"{relay.ws_url}/logs", headers={"Authorization": "Bearer s3cret-token"}
            ) as ws:
                hello = await next_event(ws, "relay.hello")
                assert hello["simulator"] is True
            async with http.ws_connect(f"{relay.ws_url}/logs?token=s3cret-token") as ws:
                await next_event(ws, "relay.hello")


async def test_console_commands_are_an_allow_list() -> None:
    async with running_relay(BASE_ENV) as relay:
        async with aiohttp.ClientSession() as http, http.ws_connect(f"{relay.ws_url}/logs") as ws:
            await next_event(ws, "relay.hello")
            for bad in [
                {"type": "input_audio_buffer.append", "audio": "AAAA"},  # raw passthrough
                {"type": "response.create"},  # missing call_sid
                {"type": "call.end", "call_sid": "CA1", "extra": True},
                {"type": "call.end", "call_sid": "CA-nope"},  # no such call
            ]:
                await ws.send_json(bad)
                refused = await next_event(ws, "command.error")
                assert refused["message"]
            await ws.send_str("x" * 70_000)
            assert "limit" in (await next_event(ws, "command.error"))["message"]
            await ws.send_json(
                {"type": "session.update", "scope": "default", "session": {"voice": "ash"}}
            )
            await next_event(ws, "command.ok")
            assert relay.ctx.default_session["audio"]["output"]["voice"] == "ash"


async def test_console_sees_the_call_and_can_change_its_session() -> None:
    script = ModelScript(replies=[Reply("Hi!", audio_ms=400)])
    async with running_relay(BASE_ENV, script) as relay:
        async with aiohttp.ClientSession() as http, http.ws_connect(f"{relay.ws_url}/logs") as ws:
            await next_event(ws, "relay.hello")
            steps = [
                Speak(ms=600),
                Silence(ms=400),
                WaitForAssistantDone(timeout=10),
                Silence(1500),
                Hangup(),
            ]
            call = asyncio.create_task(place_call(relay.base_url, steps=steps))
            started = await next_event(ws, "call.started")
            sid = started["call_sid"]
            await next_event(ws, "audio.progress")
            await ws.send_json(
                {
                    "type": "session.update",
                    "call_sid": sid,
                    "session": {"instructions": "Speak like a pirate."},
                }
            )
            await next_event(ws, "command.ok")
            session = relay.sim.sessions[0]
            update = await session.wait_for("session.update", count=2)
            assert update["session"] == {"type": "realtime", "instructions": "Speak like a pirate."}
            ended = await next_event(ws, "call.ended", timeout=15)
            assert ended["summary"]["turns"] >= 1
            await call


async def test_a_slow_console_is_dropped_and_calls_go_on() -> None:
    script = ModelScript(replies=[Reply("Hello " * 20, audio_ms=3000)])
    dropped_before = metrics.value("relay_consoles_dropped_total")
    async with running_relay(BASE_ENV, script) as relay:
        relay.ctx.hub.queue_size = 5
        async with aiohttp.ClientSession() as http:
            slow = await http.ws_connect(f"{relay.ws_url}/logs")  # never reads
            record = await place_call(relay.base_url, steps=ONE_TURN)
            assert record.ok, record.summary()
            assert record.total_heard_ms == pytest.approx(3000, abs=1)
            assert not relay.ctx.hub.consoles
            msg = None
            async with asyncio.timeout(5):
                while msg is None or msg.type not in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSED,
                ):
                    msg = await slow.receive()
            # The close frame says why (the socket's own code may read 1006: the relay does
            # not wait for a reader that stopped reading to answer the close).
            assert (msg.type, msg.data, msg.extra) == (aiohttp.WSMsgType.CLOSE, 1008, "too slow")
            await slow.close()
    assert metrics.value("relay_consoles_dropped_total") == dropped_before + 1


async def test_hundreds_of_calls_leave_no_tasks_or_sockets_behind() -> None:
    script = ModelScript(replies=[Reply("ok", audio_ms=100)])
    async with running_relay(BASE_ENV, script) as relay:
        await place_call(relay.base_url, steps=[Silence(ms=60), Hangup()])
        await wait_until(lambda: not relay.ctx.hub.calls)
        baseline = len(asyncio.all_tasks())
        for _ in range(10):
            records = await asyncio.gather(
                *(place_call(relay.base_url, steps=[Silence(ms=60), Hangup()]) for _ in range(25))
            )
            assert all(r.ok for r in records)
        await wait_until(lambda: not relay.ctx.hub.calls)
        await wait_until(lambda: all(s.ws.closed for s in relay.sim.sessions))
        assert len(relay.sim.sessions) <= 251  # a call may end before its model connects
        try:
            # Server connection tasks end as their sockets close; give a busy box time.
            await wait_until(lambda: len(asyncio.all_tasks()) <= baseline + 2, timeout=15)
        except TimeoutError:
            left = sorted(repr(t.get_coro()) for t in asyncio.all_tasks())
            raise AssertionError(f"{len(left)} tasks, baseline {baseline}: {left}") from None


# --- helpers ---------------------------------------------------------------------------------


async def test_console_places_a_simulated_call_in_simulator_mode() -> None:
    async with running_relay({**BASE_ENV, "PUBLIC_URL": ""}) as relay:
        relay.ctx.public_base = relay.base_url
        async with aiohttp.ClientSession() as http, http.ws_connect(f"{relay.ws_url}/logs") as ws:
            await next_event(ws, "relay.hello")
            await ws.send_json({"type": "sim.call", "seconds": 6, "id": "c1"})
            ok = await next_event(ws, "command.ok")
            assert ok["id"] == "c1" and ok["call_sid"].startswith("CA")
            started = await next_event(ws, "call.started")
            assert started["call_sid"] == ok["call_sid"]
            await next_event(ws, "turn.latency", timeout=15)
            ended = await next_event(ws, "call.ended", timeout=30)
            assert ended["summary"]["turns"] >= 1


async def test_a_greeting_set_from_the_console_makes_the_agent_speak_first() -> None:
    script = ModelScript(replies=[Reply("Welcome to the line!", audio_ms=500)])
    async with running_relay(BASE_ENV, script) as relay:
        async with aiohttp.ClientSession() as http, http.ws_connect(f"{relay.ws_url}/logs") as ws:
            hello = await next_event(ws, "relay.hello")
            assert hello["greeting"] == ""
            await ws.send_json(
                {
                    "type": "session.update",
                    "scope": "default",
                    "session": {},
                    "greeting": "Greet the caller warmly.",
                }
            )
            assert (await next_event(ws, "session.default"))[
                "greeting"
            ] == "Greet the caller warmly."
        steps = [WaitForAssistant(timeout=5), WaitForAssistantDone(timeout=10), Hangup()]
        record = await place_call(relay.base_url, steps=steps)  # the caller says nothing
        assert record.ok, record.summary()
        assert record.total_heard_ms == pytest.approx(500, abs=1)
        create = await relay.sim.sessions[0].wait_for("response.create")
        assert create["response"] == {"instructions": "Greet the caller warmly."}


async def test_json_log_lines_of_a_call_carry_its_call_sid() -> None:
    import io
    import logging

    from relay import logs

    stream = io.StringIO()
    handler = logs.configure("INFO", "json", stream=stream)
    try:
        async with running_relay(BASE_ENV) as relay:
            record = await place_call(relay.base_url, steps=[Silence(ms=200), Hangup()])
            await wait_until(lambda: not relay.ctx.hub.calls)
    finally:
        logging.getLogger().removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    mine = [line for line in lines if line.get("call_sid") == record.call_sid]
    assert any("started" in line["msg"] for line in mine), lines
    assert any("ended" in line["msg"] for line in mine), lines
