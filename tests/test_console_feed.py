"""The relay feed client against a tiny fake `/logs` server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import WSMsgType, web

from console.feed import FeedOffline, RelayFeed
from shared.secret import Secret


class FakeRelay:
    def __init__(self) -> None:
        self.auth: list[str] = []
        self.commands: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sockets: list[web.WebSocketResponse] = []
        self.refuse = False

    async def logs(self, request: web.Request) -> web.StreamResponse:
        self.auth.append(request.headers.get("Authorization", ""))
        if self.refuse or request.headers.get("Authorization") != "Bearer tok":
            raise web.HTTPForbidden()
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets.append(ws)
        await ws.send_json({"type": "relay.hello", "version": "t", "simulator": True, "calls": []})
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await self.commands.put(json.loads(msg.data))
        return ws


@pytest.fixture
async def relay() -> AsyncIterator[tuple[FakeRelay, str]]:
    fake = FakeRelay()
    app = web.Application()
    app.router.add_get("/logs", fake.logs)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield fake, f"ws://127.0.0.1:{port}/logs"
    await runner.cleanup()


class Recorder:
    def __init__(self) -> None:
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.status: asyncio.Queue[tuple[bool, str]] = asyncio.Queue()

    async def on_event(self, ev: dict[str, Any]) -> None:
        await self.events.put(ev)

    async def on_status(self, online: bool, why: str) -> None:
        await self.status.put((online, why))


async def test_connects_with_bearer_token_sends_commands_and_reconnects(
    relay: tuple[FakeRelay, str],
) -> None:
    fake, url = relay
    feed = RelayFeed(url, Secret("tok"), min_backoff=0.01, max_backoff=0.05)
    rec = Recorder()
    task = asyncio.create_task(feed.run(rec.on_event, rec.on_status))
    assert await asyncio.wait_for(rec.status.get(), 5) == (True, "")
    assert (await asyncio.wait_for(rec.events.get(), 5))["type"] == "relay.hello"
    assert fake.auth == ["Bearer tok"]

    cmd_id = await feed.send({"type": "sim.call", "seconds": 5})
    got = await asyncio.wait_for(fake.commands.get(), 5)
    assert got == {"type": "sim.call", "id": cmd_id, "seconds": 5.0, "mode": "twilio"}

    await fake.sockets[-1].close()  # the relay restarts
    online, why = await asyncio.wait_for(rec.status.get(), 5)
    assert not online and "closed" in why
    assert await asyncio.wait_for(rec.status.get(), 5) == (True, "")
    assert (await asyncio.wait_for(rec.events.get(), 5))["type"] == "relay.hello"

    feed.stop()
    await asyncio.wait_for(task, 5)


async def test_wrong_token_says_so_and_keeps_retrying(relay: tuple[FakeRelay, str]) -> None:
    fake, url = relay
    feed = RelayFeed(url, Secret("nope"), min_backoff=0.01, max_backoff=0.02)
    rec = Recorder()
    task = asyncio.create_task(feed.run(rec.on_event, rec.on_status))
    online, why = await asyncio.wait_for(rec.status.get(), 5)
    assert not online and "RELAY_CONSOLE_TOKEN" in why
    await asyncio.wait_for(rec.status.get(), 5)  # it retried
    assert len(fake.auth) >= 2
    with pytest.raises(FeedOffline):
        await feed.send({"type": "ping"})
    feed.stop()
    await asyncio.wait_for(task, 5)


async def test_relay_down_is_reported_and_bad_commands_refused_locally() -> None:
    feed = RelayFeed("ws://127.0.0.1:9/logs", Secret("tok"), min_backoff=0.01)
    rec = Recorder()
    task = asyncio.create_task(feed.run(rec.on_event, rec.on_status))
    online, why = await asyncio.wait_for(rec.status.get(), 5)
    assert not online and "cannot reach the relay" in why
    with pytest.raises(ValueError, match="allowed command types"):
        await feed.send({"type": "session.delete"})
    feed.stop()
    await asyncio.wait_for(task, 5)
