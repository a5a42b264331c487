"""Several relay processes sharing state through a real Redis.

Each `running_relay` here is one relay process as far as the relay can tell (its own
context, hub, pre-warm pool, Redis connections and port), so two of them on two ports are
two instances sharing one Redis, and the same code paths as two workers behind one port.
tests/test_workers.py runs real worker processes and kills one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from relay import metrics
from relay.cluster.base import Node
from relay.cluster.redis_state import RedisDefaults, RedisLink, RedisTokens
from relay.harness import RunningRelay, next_event, running_relay, wait_until
from relay.hub import Hub
from relay.sim.caller import Hangup, Silence, SimCaller, new_sid, one_turn, parse_twiml
from relay.sim.script import ModelScript, Reply
from relay.sim.sip import place_sip_call
from relay.sip import IncomingCall, incoming_call

pytestmark = pytest.mark.redis

QUICK_VAD = '{"type":"server_vad","silence_duration_ms":300,"create_response":true}'
REPLIES = [Reply("First answer.", audio_ms=400), Reply("Second answer.", audio_ms=400)]


def env(redis_url: str, **extra: str) -> dict[str, str]:
    return {"REDIS_URL": redis_url, "OPENAI_TURN_DETECTION_JSON": QUICK_VAD, **extra}


@asynccontextmanager
async def two_relays(
    redis_url: str, **extra: str
) -> AsyncIterator[tuple[RunningRelay, RunningRelay]]:
    script = ModelScript(replies=REPLIES)
    async with running_relay(env(redis_url, **extra), script) as a:
        async with running_relay(env(redis_url, **extra), ModelScript(replies=REPLIES)) as b:
            yield a, b


async def ring(relay: RunningRelay, call_sid: str) -> tuple[str, dict[str, str]]:
    """Twilio's webhook on `relay`: the stream URL and parameters its TwiML names."""
    form = {"CallSid": call_sid, "From": "+15550001111", "To": "+15550002222"}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{relay.base_url}/twiml", data=form) as resp:
            assert resp.status == 200
            return parse_twiml(await resp.text())


async def stream(
    relay: RunningRelay, call_sid: str, url_and_params: tuple[str, dict[str, str]]
) -> SimCaller:
    """The call's media stream, reaching `relay` (whichever served the webhook)."""
    signed, params = url_and_params
    caller = SimCaller(
        f"{relay.ws_url}/call", signed_url=signed, custom_parameters=params, call_sid=call_sid
    )
    await caller.connect()
    return caller


async def call_on(relay: RunningRelay) -> SimCaller:
    sid = new_sid("CA")
    return await stream(relay, sid, await ring(relay, sid))


@asynccontextmanager
async def console(relay: RunningRelay) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{relay.ws_url}/logs") as ws:
        hello = json.loads((await ws.receive()).data)
        assert hello["type"] == "relay.hello"
        ws._hello = hello  # type: ignore[attr-defined]
        yield ws


async def until_watched(relay: RunningRelay) -> None:
    """A console on another process: this one publishes its calls' events from now on."""
    await wait_until(lambda: relay.ctx.hub.watched, timeout=5)


async def test_stream_tokens_are_spent_once_across_processes(redis_url: str) -> None:
    a = RedisLink(redis_url, Node("a:1", 1), Hub())
    b = RedisLink(redis_url, Node("b:1", 1), Hub())
    try:
        tokens_a, tokens_b = RedisTokens(a), RedisTokens(b, ttl_s=0.05)
        token = await tokens_a.issue("CA1")
        assert not await tokens_b.redeem(token + "x", "CA1")
        assert await tokens_b.redeem(token, "CA1")  # issued by one process, spent by another
        assert not await tokens_a.redeem(token, "CA1")  # once
        wrong = await tokens_a.issue("CA1")
        assert not await tokens_b.redeem(wrong, "CA2")  # bound to its call, and now spent
        assert not await tokens_a.redeem(wrong, "CA1")
        short = await tokens_b.issue("CA3")
        key = "relay:token:" + short
        async with asyncio.timeout(5):
            while await b.client.exists(key):  # Redis expires it
                await asyncio.sleep(0.02)
        assert not await tokens_a.redeem(short, "CA3")
    finally:
        await a.client.aclose()
        await b.client.aclose()


async def test_a_webhook_on_one_process_and_its_stream_on_another(redis_url: str) -> None:
    async with two_relays(redis_url, RELAY_PREWARM_TIMEOUT_S="1") as (a, b):
        misses = metrics.value("relay_prewarm_total", outcome="miss")
        expired = metrics.value("relay_prewarm_total", outcome="expired")
        sid = new_sid("CA")
        twiml = await ring(a, sid)
        assert len(a.ctx.prewarm) == 1  # pre-warmed where the webhook was served
        caller = await stream(b, sid, twiml)
        for step in one_turn():
            assert await caller.do(step), caller.record.summary()
        assert sid in b.ctx.hub.calls and sid not in a.ctx.hub.calls
        # The stream's process opened its own session at once: a miss, counted.
        assert metrics.value("relay_prewarm_total", outcome="miss") == misses + 1
        # The same token cannot start the call again, on either process.
        again = await stream(a, sid, twiml)
        await asyncio.wait_for(again._ended.wait(), 5)
        assert again.record.close_code == 1008
        await again.hangup()
        record = await caller.hangup()
        assert record.ok, record.summary()
        assert record.heard_ms
        # The orphaned pre-warm is closed after its timeout, on the webhook's process.
        await wait_until(lambda: len(a.ctx.prewarm) == 0, timeout=5)
        assert metrics.value("relay_prewarm_total", outcome="expired") == expired + 1


async def test_one_console_watches_calls_on_both_and_hangs_up_one_on_the_other(
    redis_url: str,
) -> None:
    async with two_relays(redis_url) as (a, b), console(a) as feed:
        await until_watched(b)
        on_a, on_b = await call_on(a), await call_on(b)
        started = {
            (await next_event(feed, "call.started"))["call_sid"],
            (await next_event(feed, "call.started"))["call_sid"],
        }
        assert started == {on_a.record.call_sid, on_b.record.call_sid}
        # Events of the other process's call reach this console: its answer, say.
        for step in one_turn():
            assert await on_b.do(step)
        # A second console, on the other process, is told about both calls at once.
        async with console(b) as other:
            live = {c["call_sid"] for c in other._hello["calls"]}  # type: ignore[attr-defined]
            assert live == started
        # Hang up the call on b from the console on a: routed there, answered here.
        await feed.send_json({"type": "call.end", "call_sid": on_b.record.call_sid, "id": "h1"})
        ok = await next_event(feed, "command.ok")
        assert ok == {**ok, "id": "h1", "command": "call.end", "call_sid": on_b.record.call_sid}
        ended = await next_event(feed, "call.ended")
        assert ended["call_sid"] == on_b.record.call_sid
        assert ended["summary"]["end_reason"] == "console_ended"
        await asyncio.wait_for(on_b._ended.wait(), 5)
        assert on_a.record.call_sid in a.ctx.hub.calls  # the other call goes on
        # A call no process holds is refused, as before.
        await feed.send_json({"type": "call.end", "call_sid": "CA" + "0" * 32, "id": "h2"})
        refused = await next_event(feed, "command.error")
        assert refused["id"] == "h2" and "no live call" in refused["message"]
        await on_a.hangup()
        await on_b.hangup()
        # Ended calls of both processes are in a new console's hello.
        async with asyncio.timeout(5):
            while True:
                async with console(b) as late:
                    hello: dict[str, Any] = late._hello  # type: ignore[attr-defined]
                if {c["call_sid"] for c in hello["ended"]} >= started and not hello["calls"]:
                    break
                await asyncio.sleep(0.05)


async def test_defaults_saved_on_one_process_apply_on_every_process(redis_url: str) -> None:
    async with two_relays(redis_url) as (a, b), console(a) as feed_a, console(b) as feed_b:
        update = {
            "type": "session.update",
            "scope": "default",
            "session": {"instructions": "Speak like a pirate."},
            "greeting": "Ahoy!",
            "id": "d1",
        }
        await feed_a.send_json(update)
        # Each console hears of it once, from its own process, with what that process uses.
        for feed in (feed_a, feed_b):
            event = await next_event(feed, "session.default")
            assert event["greeting"] == "Ahoy!"
            assert event["session"]["instructions"] == "Speak like a pirate."
        assert (await next_event(feed_a, "command.ok"))["id"] == "d1"
        assert b.ctx.greeting == "Ahoy!"
        assert b.ctx.default_session["instructions"] == "Speak like a pirate."
        assert b.ctx.default_session == a.ctx.default_session
        # A new call on the other process starts with them.
        caller = await call_on(b)
        session = await b.sim.wait_for_session(1)
        first = await session.wait_for("session.update")
        assert first["session"]["instructions"] == "Speak like a pirate."
        await caller.hangup()
        # A process started later takes the newest defaults from Redis.
        async with running_relay(env(redis_url)) as c:
            assert c.ctx.greeting == "Ahoy!"
            assert c.ctx.default_session == a.ctx.default_session


async def test_concurrent_saves_on_two_processes_leave_both_with_the_same_defaults(
    redis_url: str,
) -> None:
    async with two_relays(redis_url) as (a, b), console(a) as feed_a, console(b) as feed_b:
        for feed, n in ((feed_a, "one"), (feed_b, "two")):
            await feed.send_json(
                {"type": "session.update", "scope": "default", "session": {}, "greeting": n}
            )
        await next_event(feed_a, "command.ok")
        await next_event(feed_b, "command.ok")
        await wait_until(lambda: a.ctx.greeting == b.ctx.greeting, timeout=5)
        assert a.ctx.default_session == b.ctx.default_session


async def test_own_save_announced_before_the_scripts_reply_still_wins(redis_url: str) -> None:
    """The order that left two processes with different defaults: another process's older
    save arrives, then our own newer one's announcement, then (late) the script's reply."""
    link = RedisLink(redis_url, Node("a:1", 1), Hub())
    applied: list[tuple[str, bool]] = []
    defaults = RedisDefaults(link, lambda session, greeting, tell: applied.append((greeting, tell)))
    try:
        defaults._on_defaults({"seq": 1, "from": "b:1/w1/9", "session": {}, "greeting": "one"})
        defaults._on_defaults({"seq": 2, "from": link.node.id, "session": {}, "greeting": "two"})
        assert applied == [("one", True), ("two", False)]  # ours back on, quietly
    finally:
        await link.client.aclose()


async def test_a_dead_process_calls_are_ended_by_the_survivors(redis_url: str) -> None:
    """A process that stops beating (here: its Redis link cut, as when it is killed) has its
    calls ended, with a reason, for every console; the other process carries on."""
    async with two_relays(redis_url) as (a, b), console(a) as feed:
        await until_watched(b)
        on_a, on_b = await call_on(a), await call_on(b)
        await next_event(feed, "call.started")
        await next_event(feed, "call.started")
        shared_b: Any = b.ctx.shared
        # b goes silent without leaving: its heartbeat stops, as if it had been killed.
        for task in list(shared_b.link.tasks):
            task.cancel()
        ended = await next_event(feed, "call.ended", timeout=10)
        assert ended["call_sid"] == on_b.record.call_sid
        summary = ended["summary"]
        assert summary["end_reason"] == "error"
        assert summary["reason"].startswith("relay worker 1 died (pid ")
        assert on_a.record.call_sid in a.ctx.hub.calls
        for step in one_turn():  # the survivor's call carries on
            assert await on_a.do(step)
        record = await on_a.hangup()
        assert record.ok, record.summary()
        assert metrics.value("relay_workers_lost_total") >= 1
        await on_b.hangup()
        # Its calls are in the history, ended with the reason.
        assert a.ctx.store is not None
        await a.ctx.store.flush(5)
        stored = await a.ctx.store.get_call(on_b.record.call_sid)
        assert stored is not None and stored.end_reason_text.startswith("relay worker 1 died")


async def test_max_calls_holds_per_instance(redis_url: str) -> None:
    async with two_relays(redis_url, RELAY_MAX_CALLS="1") as (a, b):
        first = await call_on(a)
        await wait_until(lambda: len(a.ctx.hub.calls) == 1)
        async with aiohttp.ClientSession() as http:
            form = {"CallSid": new_sid("CA")}
            async with http.post(f"{a.base_url}/twiml", data=form) as resp:
                assert "busy" in await resp.text()
        second = await call_on(b)  # another instance has its own places
        await wait_until(lambda: len(b.ctx.hub.calls) == 1)
        await first.hangup()
        await second.hangup()


async def test_health_and_metrics_say_which_process_answered(redis_url: str) -> None:
    async with two_relays(redis_url) as (a, b), aiohttp.ClientSession() as http:
        # Each process learns of the other at its next heartbeat.
        await wait_until(lambda: a.ctx.shared.status()["processes"] == 2, timeout=5)
        for relay in (a, b):
            async with http.get(f"{relay.base_url}/health") as resp:
                health = await resp.json()
            assert health["worker"] == relay.ctx.node.describe()
            assert health["shared"] == {"backend": "redis", "redis": "ok", "processes": 2}
        async with http.get(f"{b.base_url}/metrics") as resp:
            assert resp.headers["X-Relay-Worker"] == "1"
            assert 'relay_worker_info{instance="' in await resp.text()


async def test_sip_deliveries_are_admitted_once_across_processes(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with two_relays(redis_url, RELAY_MAX_CALLS="1") as (a, b):
        call_id = "rtc_" + "5" * 32
        on_a = asyncio.create_task(
            place_sip_call(a.sim, a.base_url, call_id=call_id, steps=[Silence(1500), Hangup()])
        )
        await wait_until(lambda: call_id in a.ctx.hub.calls)
        # OpenAI retries the delivery, and this time it reaches the other process (both
        # talk to one OpenAI, as in production).
        own_openai, b.ctx.realtime_calls = b.ctx.realtime_calls, a.ctx.realtime_calls
        await incoming_call(b.ctx, IncomingCall(call_id))
        b.ctx.realtime_calls = own_openai
        assert call_id not in b.ctx.hub.calls
        assert [verb for verb, _ in a.sim.sip_calls[call_id].requests] == ["accept"]
        # An accept that fails gives its place back: b (one place) takes the next call.
        await incoming_call(b.ctx, IncomingCall("rtc_" + "6" * 32))  # unknown to b's OpenAI
        assert "could not be accepted" in caplog.text
        on_b = await place_sip_call(b.sim, b.base_url, steps=[Silence(300), Hangup()])
        assert on_b.accepted and not on_b.failures
        assert (await on_a).ok
