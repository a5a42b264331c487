"""A trivial pass-through relay: the floor that the stack alone costs.

Same stack as the relay (raw ASGI WebSocket on Hypercorn with uvloop, aiohttp client to the
model) but no relay logic: `media` -> `input_audio_buffer.append`, audio delta -> `media` +
`mark`; no signatures, no tokens, no bookkeeping. The benchmark runs it in the same way as
the relay and subtracts its numbers so the harness's own cost is known.

    python -m bench.passthrough PORT MODEL_URL
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import aiohttp
import msgspec
from hypercorn.asyncio import serve
from hypercorn.config import Config


class _MediaInfo(msgspec.Struct):
    payload: str


class _Twilio(msgspec.Struct):
    event: str
    streamSid: str = ""
    media: _MediaInfo | None = None


class _Delta(msgspec.Struct):
    type: str
    delta: str = ""


_twilio = msgspec.json.Decoder(_Twilio)
_model = msgspec.json.Decoder(_Delta)
TEXT = aiohttp.WSMsgType.TEXT


def from_twilio(text: str) -> tuple[_Twilio, bytes | None]:
    """A Twilio frame, and the model append it becomes (media frames only)."""
    ev = _twilio.decode(text)
    if ev.media is None:
        return ev, None
    return ev, b'{"type":"input_audio_buffer.append","audio":"' + ev.media.payload.encode() + b'"}'


class ToTwilio:
    """Model audio deltas -> Twilio `media` + a numbered `mark`; other events -> nothing."""

    def __init__(self, stream_sid: str) -> None:
        self._media = '{"event":"media","streamSid":"' + stream_sid + '","media":{"payload":"'
        self._mark = '{"event":"mark","streamSid":"' + stream_sid + '","mark":{"name":"'
        self._n = 0

    def frames(self, text: str) -> tuple[str, str] | None:
        ev = _model.decode(text)
        if ev.type != "response.output_audio.delta":
            return None
        self._n += 1
        return self._media + ev.delta + '"}}', self._mark + f"m{self._n}" + '"}}'


def make_app(model_url: str, public: str) -> Any:
    http: aiohttp.ClientSession | None = None

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal http
        kind = scope["type"]
        if kind == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    # limit=0: aiohttp's default pool holds at most 100 connections, and each
                    # call keeps one model socket open for its whole life.
                    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    if http is not None:
                        await http.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if kind == "http":
            body = b"ok"
            ctype = b"text/plain"
            if scope["path"] == "/twiml":
                while (await receive()).get("more_body"):
                    pass
                body = (
                    '<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
                    f'<Stream url="{public}/call"><Parameter name="stream_token" value="x" />'
                    "</Stream></Connect></Response>"
                ).encode()
                ctype = b"text/xml"
            headers = [(b"content-type", ctype)]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        if kind == "websocket":
            await call(receive, send)

    async def call(receive: Any, send: Any) -> None:
        assert http is not None
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        ws: aiohttp.ClientWebSocketResponse | None = None
        reader: asyncio.Task[None] | None = None
        try:
            while True:
                msg = await receive()
                if msg["type"] != "websocket.receive":
                    break
                ev, append = from_twilio(msg["text"])
                if append is not None:
                    if ws is not None:
                        await ws.send_frame(append, TEXT)
                elif ev.event == "start":
                    ws = await http.ws_connect(
                        model_url, headers={"Authorization": "Bearer x"}, autoping=True
                    )
                    reader = asyncio.ensure_future(pump(ws, send, ev.streamSid))
                elif ev.event == "stop":
                    break
        finally:
            if reader is not None:
                reader.cancel()
            if ws is not None:
                await ws.close()

    async def pump(ws: aiohttp.ClientWebSocketResponse, send: Any, sid: str) -> None:
        out = ToTwilio(sid)
        async for msg in ws:
            if msg.type is not TEXT:
                break
            frames = out.frames(msg.data)
            if frames is not None:
                for frame in frames:
                    await send({"type": "websocket.send", "text": frame})

    return app


def main() -> None:
    port, model_url = int(sys.argv[1]), sys.argv[2]
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.errorlog = "-"
    app = make_app(model_url, f"ws://127.0.0.1:{port}")
    import uvloop

    uvloop.run(serve(app, config))


if __name__ == "__main__":
    main()
