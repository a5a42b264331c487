"""Call history, saved defaults and profiles, end to end: a real relay on loopback with the
simulator, against a real SQLite file and a real PostgreSQL server, across restarts."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from relay.harness import (
    RunningRelay,
    give_number_a_profile,
    next_event,
    running_relay,
    wait_until,
)
from relay.sim.caller import Hangup, Silence, Speak, WaitForAssistant, one_turn, place_call
from relay.sim.script import ModelScript, Reply, ToolCall
from relay.store.testing import PostgresServer
from relay.store.webhook import verify
from relay.tools.registry import Tool

QUICK_VAD = '{"type":"server_vad","silence_duration_ms":300,"create_response":true}'
TOKEN = "history-test-token"
ENV = {"OPENAI_TURN_DETECTION_JSON": QUICK_VAD, "RELAY_CONSOLE_TOKEN": TOKEN}
AUTH = {"Authorization": f"Bearer {TOKEN}"}
Delivery = tuple[dict[str, str], bytes]
SCRIPT = ModelScript(
    replies=[
        ToolCall("lookup_order", {"order_id": "A17"}),
        Reply("Your order A17 has shipped.", audio_ms=600),
    ],
    caller_transcripts=["Where is my order A17?"],
)


def lookup_tool() -> Tool:
    async def lookup(args: dict[str, Any], ctx: Any) -> Any:
        return {"order": args.get("order_id"), "status": "shipped"}

    return Tool("lookup_order", "Look up an order", {"type": "object"}, lookup)


async def api(relay: RunningRelay, method: str, path: str, body: Any = None) -> Any:
    async with aiohttp.ClientSession() as http:
        async with http.request(method, f"{relay.base_url}{path}", json=body, headers=AUTH) as resp:
            text = await resp.text()
            assert resp.status < 300, f"{method} {path}: {resp.status} {text}"
            return json.loads(text) if text else None


async def stored(relay: RunningRelay, call_sid: str, timeout: float = 10.0) -> dict[str, Any]:
    """The call's record, once the writer has stored it."""
    store = relay.ctx.store
    assert store is not None
    assert await store.flush(timeout), "the backlog was not written"
    record: dict[str, Any] = await api(relay, "GET", f"/api/calls/{call_sid}")
    return record


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Env for a fresh store on each backend, kept across the relay restarts of a test."""
    if request.param == "sqlite":
        return json.dumps({"RELAY_DATA_DIR": str(tmp_path_factory.mktemp("data"))})
    server: PostgresServer = request.getfixturevalue("pg_server")
    url = server.create_database("e2e_" + uuid.uuid4().hex[:12])
    return json.dumps({"DATABASE_URL": url})


async def test_a_call_is_stored_whole_and_read_back_after_a_restart(database: str) -> None:
    env = {**ENV, **json.loads(database)}
    async with running_relay(env, SCRIPT) as relay:
        relay.ctx.tools.add(lookup_tool())
        steps = [*one_turn(), Silence(900), Hangup()]
        call = await place_call(relay.base_url, steps=steps)
        assert call.ok, call.summary()
        await stored(relay, call.call_sid)
    async with running_relay(env, SCRIPT) as relay:  # a new process's worth of relay
        page = await api(relay, "GET", "/api/calls?q=order%20A17")
        assert [c["call_sid"] for c in page["calls"]] == [call.call_sid]
        record = await api(relay, "GET", f"/api/calls/{call.call_sid}")
    assert record["end_reason"] == "caller_hung_up"
    assert record["stream_sid"] == call.stream_sid
    assert (record["from"], record["to"], record["direction"]) == (
        "+15550001111",
        "+15550002222",
        "inbound",
    )
    assert record["started_at"] <= record["answered_at"] < record["ended_at"]
    texts = [(t["role"], t["text"]) for t in record["turns"]]
    assert texts == [
        ("user", "Where is my order A17?"),
        ("assistant", "Your order A17 has shipped."),
    ]
    (tool,) = record["tool_calls"]
    assert (tool["name"], tool["source"], tool["ok"]) == ("lookup_order", "backend", True)
    assert json.loads(tool["arguments"]) == {"order_id": "A17"}
    assert json.loads(tool["output"]) == {"order": "A17", "status": "shipped"}
    assert record["usage"]["output_audio"] > 0 and record["cost_usd"] > 0
    assert record["latency"] and all(p["latency_ms"] > 0 for p in record["latency"])
    assert record["model"] == "gpt-realtime" and record["voice"]


async def test_a_default_saved_from_the_console_survives_a_restart(database: str) -> None:
    env = {**ENV, **json.loads(database)}
    update = {
        "type": "session.update",
        "scope": "default",
        "session": {"instructions": "Answer like a lighthouse keeper."},
        "greeting": "Ahoy from the lighthouse.",
        "id": "save",
    }
    async with running_relay(env) as relay, aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{relay.ws_url}/logs", headers=AUTH) as console:
            await console.send_str(json.dumps(update))
            ok = await next_event(console, "command.ok")
            assert ok["id"] == "save" and "warning" not in ok
    async with running_relay(env) as relay, aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{relay.ws_url}/logs", headers=AUTH) as console:
            hello = await next_event(console, "relay.hello")
        record = await place_call(relay.base_url, steps=[Silence(300), Hangup()])
        session = relay.sim.sessions[0]
        configured = await session.wait_for("session.update")
    assert hello["greeting"] == "Ahoy from the lighthouse."
    assert hello["default_session"]["instructions"] == "Answer like a lighthouse keeper."
    assert configured["session"]["instructions"] == "Answer like a lighthouse keeper."
    assert record.ok, record.summary()


async def test_a_called_number_gets_its_profile(database: str) -> None:
    env = {**ENV, **json.loads(database)}
    profile = {
        "instructions": "You are the pizza line.",
        "voice": "cedar",
        "greeting": "Pizza line, what can I get you?",
    }
    async with running_relay(env) as relay:
        await give_number_a_profile(relay.base_url, TOKEN, "+15550009999", "pizza", profile)
        steps = [WaitForAssistant(timeout=8), Silence(300), Hangup()]
        pizza = await place_call(relay.base_url, steps=steps, to="+15550009999")
        other = await place_call(relay.base_url, steps=[Silence(300), Hangup()])
        first, second = relay.sim.sessions[:2]
        pizza_update = await first.wait_for("session.update")
        other_update = await second.wait_for("session.update")
        pizza_record = await stored(relay, pizza.call_sid)
        other_record = await stored(relay, other.call_sid)
    assert pizza.ok and pizza.total_heard_ms > 0, pizza.summary()  # the greeting was spoken
    assert pizza_update["session"]["instructions"] == "You are the pizza line."
    assert pizza_update["session"]["audio"]["output"]["voice"] == "cedar"
    assert other_update["session"]["instructions"] != "You are the pizza line."
    assert (pizza_record["profile"], pizza_record["voice"]) == ("pizza", "cedar")
    assert other_record["profile"] is None


@pytest.fixture
async def webhook_receiver() -> AsyncIterator[tuple[str, asyncio.Queue[Delivery]]]:
    """A test server that hands over each delivery: (headers, raw body)."""
    got: asyncio.Queue[Delivery] = asyncio.Queue()

    async def receive(request: web.Request) -> web.Response:
        got.put_nowait((dict(request.headers), await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/hook", got
    finally:
        await runner.cleanup()


async def test_the_post_call_webhook_arrives_signed(
    webhook_receiver: tuple[str, asyncio.Queue[Delivery]], tmp_path: Any
) -> None:
    url, got = webhook_receiver
    secret = "a-test-secret-of-at-least-24-bytes"
    env = {
        **ENV,
        "RELAY_DATA_DIR": str(tmp_path),
        "RELAY_POSTCALL_WEBHOOK_URL": url,
        "RELAY_POSTCALL_WEBHOOK_SECRET": secret,
        "RELAY_REDACT_NUMBERS": "true",
    }
    async with running_relay(env) as relay:
        call = await place_call(relay.base_url, steps=[*one_turn(), Hangup()])
        headers, body = await asyncio.wait_for(got.get(), 10)
    verify(secret, headers, body)  # raises if forged, stale or altered
    event = json.loads(body)  # Standard Webhooks' envelope: type, timestamp, data
    assert event["type"] == "call.ended"
    record = event["data"]
    assert record["call_sid"] == call.call_sid and record["end_reason"] == "caller_hung_up"
    assert "+15550001111" not in body.decode() and record["from"].endswith("1111")


@pytest.mark.postgres
async def test_a_database_outage_during_live_calls_loses_no_audio_and_no_record(
    pg_server: PostgresServer,
) -> None:
    env = {**ENV, "DATABASE_URL": pg_server.create_database("outage_" + uuid.uuid4().hex[:8])}
    async with running_relay(env, ModelScript(replies=[Reply("Still here.", audio_ms=500)])) as r:
        store = r.ctx.store
        assert store is not None
        await asyncio.to_thread(pg_server.stop)
        try:
            steps = [Speak(600), Silence(400), WaitForAssistant(timeout=8), Silence(600)]
            calls = await asyncio.gather(
                *(place_call(r.base_url, steps=[*steps, Hangup()]) for _ in range(5))
            )
            for call in calls:  # the callers never noticed
                assert call.ok and call.total_heard_ms >= 450, call.summary()
            await wait_until(lambda: store.writer.depth >= 5, timeout=10)  # queued, unwritten
            assert not store.ready
        finally:
            await asyncio.to_thread(pg_server.start_again)
        started = time.monotonic()
        assert await store.flush(30), "the backlog was not written after the database returned"
        page = await api(r, "GET", "/api/calls")
    assert {c["call_sid"] for c in page["calls"]} == {c.call_sid for c in calls}
    assert time.monotonic() - started < 30


async def test_recording_sids_reach_the_record_whether_the_call_is_live_or_ended(
    tmp_path: Any,
) -> None:
    live_rec, later_rec = "RE" + "a" * 32, "RE" + "b" * 32
    async with running_relay({**ENV, "RELAY_DATA_DIR": str(tmp_path)}) as relay:
        call = asyncio.create_task(
            place_call(relay.base_url, steps=[*one_turn(), Silence(500), Hangup()])
        )
        await wait_until(lambda: bool(relay.ctx.hub.calls))
        sid = next(iter(relay.ctx.hub.calls))
        assert (
            await api(relay, "POST", f"/api/calls/{sid}/recordings", {"recording_sid": live_rec})
        )["live"]
        await call
        await stored(relay, sid)
        answer = await api(
            relay, "POST", f"/api/calls/{sid}/recordings", {"recording_sid": later_rec}
        )
        record = await stored(relay, sid)
        async with aiohttp.ClientSession() as http:
            for body, path, status in (
                ({"recording_sid": "not-one"}, f"/api/calls/{sid}/recordings", 400),
                ({"recording_sid": later_rec}, "/api/calls/CA404/recordings", 404),
            ):
                async with http.post(f"{relay.base_url}{path}", json=body, headers=AUTH) as resp:
                    assert resp.status == status
            async with http.post(
                f"{relay.base_url}/api/calls/{sid}/recordings", json={"recording_sid": live_rec}
            ) as resp:
                assert resp.status == 401  # the console token, as for the rest of the API
    assert answer["live"] is False
    assert record["recording_sids"] == [live_rec, later_rec]
