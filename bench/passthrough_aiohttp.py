"""The same trivial pass-through as `bench.passthrough`, served by aiohttp's web server.

An experiment, not a product path: it measures what the WebSocket stack costs when the
server side parses frames with aiohttp's C reader instead of Hypercorn's wsproto, with
the same load, the same model client (aiohttp) and the same logic.

    python -m bench.passthrough_aiohttp PORT MODEL_URL
"""

from __future__ import annotations

import asyncio
import sys

import aiohttp
from aiohttp import web

from bench.passthrough import TEXT, ToTwilio, from_twilio


def make_app(model_url: str, public: str) -> web.Application:
    app = web.Application()

    async def on_startup(app: web.Application) -> None:
        app["http"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def on_cleanup(app: web.Application) -> None:
        await app["http"].close()

    async def twiml(request: web.Request) -> web.Response:
        await request.read()
        body = (
            '<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
            f'<Stream url="{public}/call"><Parameter name="stream_token" value="x" />'
            "</Stream></Connect></Response>"
        )
        return web.Response(text=body, content_type="text/xml")

    async def call(request: web.Request) -> web.WebSocketResponse:
        http: aiohttp.ClientSession = request.app["http"]
        tw = web.WebSocketResponse(autoping=True)
        await tw.prepare(request)
        ws: aiohttp.ClientWebSocketResponse | None = None
        reader: asyncio.Task[None] | None = None
        try:
            async for msg in tw:
                if msg.type is not TEXT:
                    break
                ev, append = from_twilio(msg.data)
                if append is not None:
                    if ws is not None:
                        await ws.send_frame(append, TEXT)
                elif ev.event == "start":
                    ws = await http.ws_connect(
                        model_url, headers={"Authorization": "Bearer x"}, autoping=True
                    )
                    reader = asyncio.ensure_future(pump(ws, tw, ev.streamSid))
                elif ev.event == "stop":
                    break
        finally:
            if reader is not None:
                reader.cancel()
            if ws is not None:
                await ws.close()
        return tw

    async def pump(
        ws: aiohttp.ClientWebSocketResponse, tw: web.WebSocketResponse, sid: str
    ) -> None:
        out = ToTwilio(sid)
        async for msg in ws:
            if msg.type is not TEXT:
                break
            frames = out.frames(msg.data)
            if frames is not None:
                for frame in frames:
                    await tw.send_str(frame)

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app.router.add_post("/twiml", twiml)
    app.router.add_get("/twiml", twiml)
    app.router.add_get("/call", call)
    app.router.add_get("/health", lambda r: web.Response(text="ok"))  # type: ignore[arg-type,return-value]
    return app


def main() -> None:
    port, model_url = int(sys.argv[1]), sys.argv[2]
    import uvloop

    app = make_app(model_url, f"ws://127.0.0.1:{port}")
    web.run_app(
        app, host="127.0.0.1", port=port, print=None, access_log=None, loop=uvloop.new_event_loop()
    )


if __name__ == "__main__":
    main()
