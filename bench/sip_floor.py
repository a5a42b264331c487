"""The floor of SIP mode: holding N control sockets and reading every event, nothing else.

An experiment, not a product path. It answers `realtime.call.incoming` by accepting the
call over REST and joining its control socket, then reads and drops every event: no
signature check, no decoding, no call core, no console. The relay in SIP mode does this
plus its own work per event, so the gap between the two is what the relay adds, and this
row is the least any relay on aiohttp can cost for the same calls.

    python -m bench.sip_floor PORT MODEL_URL API_BASE
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import aiohttp
from aiohttp import web

AUTH = {"Authorization": "Bearer sk-bench-not-a-key"}


def make_app(model_url: str, api_base: str) -> web.Application:
    app = web.Application()
    tasks: set[asyncio.Task[Any]] = set()

    async def on_startup(app: web.Application) -> None:
        app["http"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def on_cleanup(app: web.Application) -> None:
        for task in tasks:
            task.cancel()
        await app["http"].close()

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def webhook(request: web.Request) -> web.Response:
        call_id = json.loads(await request.read())["data"]["call_id"]
        http: aiohttp.ClientSession = request.app["http"]
        url = f"{api_base}/realtime/calls/{call_id}/accept"
        async with http.post(url, json={"type": "realtime"}, headers=AUTH) as resp:
            await resp.read()
        task = asyncio.get_running_loop().create_task(control(http, call_id))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return web.Response(status=200)

    async def control(http: aiohttp.ClientSession, call_id: str) -> None:
        async with http.ws_connect(f"{model_url}?call_id={call_id}", headers=AUTH) as ws:
            async for _ in ws:
                pass

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app.router.add_get("/health", health)
    app.router.add_post("/openai/webhook", webhook)
    return app


def main() -> None:
    port, model_url, api_base = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    import uvloop

    app = make_app(model_url, api_base)
    web.run_app(
        app, host="127.0.0.1", port=port, print=None, access_log=None, loop=uvloop.new_event_loop()
    )


if __name__ == "__main__":
    main()
