"""Run a whole relay in-process on loopback, against the simulated model.

Used by the end-to-end tests and the benchmarks: the relay's own aiohttp server (as
`python -m relay` runs it), one real SimModel, real sockets; nothing mocked but the
outside world.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from . import server as relay_server
from .context import RelayContext
from .keys import RELAY
from .settings import Settings, from_env
from .sim.model import SimModel
from .sim.script import ModelScript


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class RunningRelay:
    base_url: str
    settings: Settings
    app: web.Application
    sim: SimModel

    @property
    def ctx(self) -> RelayContext:
        return self.app[RELAY]

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://")


@contextlib.asynccontextmanager
async def running_relay(
    env: dict[str, str] | None = None, script: ModelScript | None = None
) -> AsyncIterator[RunningRelay]:
    sim = SimModel(script)
    model_url = await sim.start("127.0.0.1", 0)
    port = free_port()
    data = tempfile.TemporaryDirectory(prefix="relay-data-")  # a call history of its own
    settings = from_env(
        {
            "PUBLIC_URL": f"http://127.0.0.1:{port}",
            "PORT": str(port),
            "OPENAI_REALTIME_URL": model_url,
            "OPENAI_API_BASE": sim.api_base,  # SIP calls' REST
            "OPENAI_WEBHOOK_SECRET": sim.webhook_secret,  # SIP webhooks, signed by the sim
            "RELAY_DATA_DIR": data.name,
            **(env or {}),
        }
    )
    running = await relay_server.start(settings)
    base = f"http://127.0.0.1:{port}"
    try:
        yield RunningRelay(base, settings, running.app, sim)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(running.stop(), 10)
        await sim.stop()
        data.cleanup()


async def wait_healthy(
    base: str, *, timeout: float, alive: Callable[[], None] = lambda: None
) -> dict[str, Any]:
    """Poll GET /health until the relay answers (200, or 503 while draining); its JSON.

    `alive` is called before each try and raises if the server waited for has died.
    Raises TimeoutError when `timeout` seconds pass first.
    """
    async with aiohttp.ClientSession() as http, asyncio.timeout(timeout):
        while True:
            alive()
            try:
                async with http.get(f"{base}/health") as resp:
                    if resp.status in (200, 503):
                        data: dict[str, Any] = await resp.json()
                        return data
            except (aiohttp.ClientError, ValueError):
                pass
            await asyncio.sleep(0.02)


async def next_event(
    ws: aiohttp.ClientWebSocketResponse,
    kind: str,
    timeout: float = 10.0,
    seen: list[str] | None = None,
) -> dict[str, Any]:
    """The next console event of type `kind` on a /logs socket, skipping the others.

    `seen`, if given, receives every frame read on the way (e.g. to grep them all).
    """
    async with asyncio.timeout(timeout):
        while True:
            msg = await ws.receive()
            if msg.type is not aiohttp.WSMsgType.TEXT:
                raise AssertionError(f"socket closed while waiting for {kind}: {msg}")
            if seen is not None:
                seen.append(msg.data)
            data: dict[str, Any] = json.loads(msg.data)
            if data.get("type") == kind:
                return data


async def wait_until(pred: Callable[[], bool], timeout: float = 5.0) -> None:
    """Until `pred()` holds, for state that has no event to await (e.g. "no tasks left")."""
    async with asyncio.timeout(timeout):
        while not pred():  # noqa: ASYNC110 -- polling a state, bounded by the timeout
            await asyncio.sleep(0.02)


async def give_number_a_profile(
    base_url: str, token: str, number: str, name: str, profile: dict[str, Any]
) -> None:
    """Save the agent profile `name` and send calls to `number` to it, through the relay's
    history API (`PUT /api/profiles/{name}`, `PUT /api/numbers/{number}`)."""
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        for path, body in (
            (f"/api/profiles/{name}", profile),
            (f"/api/numbers/{number}", {"profile": name}),
        ):
            async with http.put(base_url + path, json=body) as resp:
                assert resp.status == 200, f"PUT {path}: {resp.status} {await resp.text()}"
