"""The load generator for SIP mode: OpenAI's side of N SIP calls, lean.

Run by `bench.scale` as `python -m bench.sip_load` for the `relay-sip` kind, with the same
protocol as `bench.loadgen` (one JSON line each way; see there). Per call it posts a
signed `realtime.call.incoming` to the relay, answers its accept over REST, and serves the
call's control socket with the same conversation as the Media Streams load: the caller
talks for `listen_s`, then the model answers for `answer_ms` with a transcript delta per
100 ms and the playback events SIP sessions carry (`output_audio_buffer.*`), in real time.
No audio moves: that is the difference being measured.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
import time
from typing import Any

import aiohttp
import msgspec
from aiohttp import web

from relay.sim.sip import new_secret
from relay.store.webhook import signed_headers, signing_key

from .procstat import Snapshot, rss_bytes, window

LISTEN_S = 2.0
ANSWER_MS = 2000
DELTA_MS = 100
_enc = msgspec.json.Encoder()


class Plane:
    """The simulated service: REST for the calls, and their control sockets."""

    def __init__(self) -> None:
        self.secret = new_secret()
        self.accepted: set[str] = set()
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.events_in = 0
        self.stopping = False
        self.errors: list[str] = []

    async def rest(self, request: web.Request) -> web.Response:
        call_id, verb = request.match_info["call_id"], request.match_info["verb"]
        if request.can_read_body:
            await request.read()
        if verb == "accept":
            self.accepted.add(call_id)
        return web.Response(status=200)

    async def control(self, request: web.Request) -> web.StreamResponse:
        call_id = request.query.get("call_id", "")
        if call_id not in self.accepted:
            return web.Response(status=404)
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        self.sockets[call_id] = ws
        talk = asyncio.get_running_loop().create_task(self._converse(ws, call_id))
        try:
            async for _ in ws:
                self.events_in += 1
        finally:
            talk.cancel()
            self.sockets.pop(call_id, None)
        return ws

    async def _converse(self, ws: web.WebSocketResponse, call_id: str) -> None:
        async def send(event: dict[str, Any]) -> None:
            event["event_id"] = "event_" + secrets.token_hex(6)
            await ws.send_str(_enc.encode(event).decode())

        await send({"type": "session.created", "session": {"id": "sess_" + call_id[-8:]}})
        k = 0
        loop = asyncio.get_running_loop()
        while not self.stopping and not ws.closed:
            k += 1
            user, resp, item = f"u{k}_{call_id[-6:]}", f"resp_{k}", f"a{k}_{call_id[-6:]}"
            await send({"type": "input_audio_buffer.speech_started", "item_id": user})
            await asyncio.sleep(LISTEN_S * 0.75)
            user_item = {"id": user, "type": "message", "role": "user", "content": []}
            for event in (
                {"type": "input_audio_buffer.speech_stopped", "item_id": user, "audio_end_ms": 0},
                {"type": "input_audio_buffer.committed", "item_id": user},
                {"type": "conversation.item.added", "item": user_item},
                {"type": "conversation.item.done", "item": user_item},
                {
                    "type": "conversation.item.input_audio_transcription.completed",
                    "item_id": user,
                    "transcript": "I have a question about my order.",
                },
            ):
                await send(event)
            await asyncio.sleep(LISTEN_S * 0.25)
            ids = {"response_id": resp, "item_id": item, "output_index": 0, "content_index": 0}
            answer = {"id": item, "type": "message", "role": "assistant", "content": []}
            for event in (
                {"type": "response.created", "response": {"id": resp, "status": "in_progress"}},
                {"type": "response.output_item.added", "response_id": resp, "item": answer},
                {"type": "conversation.item.added", "item": answer},
                {"type": "response.content_part.added", **ids, "part": {"type": "audio"}},
                {"type": "output_audio_buffer.started", "response_id": resp},
            ):
                await send(event)
            t0 = loop.time()
            for i in range(ANSWER_MS // DELTA_MS):
                await send({"type": "response.output_audio_transcript.delta", **ids, "delta": "w "})
                await asyncio.sleep(max(0.0, t0 + (i + 1) * DELTA_MS / 1000 - loop.time()))
            usage = {"total_tokens": 300, "input_tokens": 200, "output_tokens": 100}
            for event in (
                {"type": "response.output_audio.done", **ids},
                {"type": "response.output_audio_transcript.done", **ids, "transcript": "w w"},
                {"type": "conversation.item.done", "item": answer},
                {
                    "type": "response.done",
                    "response": {"id": resp, "status": "completed", "usage": usage},
                },
                {"type": "output_audio_buffer.stopped", "response_id": resp},
            ):
                await send(event)


async def ring(http: aiohttp.ClientSession, base: str, plane: Plane, i: int) -> None:
    call_id = f"rtc_{i:06d}{secrets.token_hex(12)}"
    headers = [
        {"name": "From", "value": f"<sip:+1555{i:07d}@pstn.twilio.com>"},
        {"name": "To", "value": "<sip:+15550002222@sip.api.openai.com>"},
    ]
    event_id = "evt_" + secrets.token_hex(8)
    body = json.dumps(
        {
            "object": "event",
            "id": event_id,
            "type": "realtime.call.incoming",
            "created_at": int(time.time()),
            "data": {"call_id": call_id, "sip_headers": headers},
        }
    ).encode()
    signed = signed_headers(signing_key(plane.secret), event_id, body)
    try:
        async with http.post(f"{base}/openai/webhook", data=body, headers=signed) as resp:
            if resp.status != 200:
                plane.errors.append(f"webhook {resp.status}")
    except aiohttp.ClientError as exc:
        plane.errors.append(f"webhook: {type(exc).__name__}")


async def drive(plane: Plane, cfg: dict[str, Any]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    n, base, pid = int(cfg["calls"]), cfg["base_url"], int(cfg["server_pid"])
    pids = [int(p) for p in cfg.get("server_pids") or [pid]]
    rss0 = sum(rss_bytes(p) for p in pids)
    ramp = float(cfg["ramp_s"])
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as http:
        t0 = loop.time()

        async def one(i: int) -> None:
            await asyncio.sleep(max(0.0, t0 + ramp * i / max(1, n) - loop.time()))
            await ring(http, base, plane, i)

        await asyncio.gather(*(one(i) for i in range(n)))
    await asyncio.sleep(float(cfg["warm_s"]))
    live_at_start = len(plane.sockets)
    start = Snapshot.take(pid, pids, loop.time())
    await asyncio.sleep(float(cfg["measure_s"]))
    end = Snapshot.take(pid, pids, loop.time())
    rss1 = sum(rss_bytes(p) for p in pids)
    live_at_end = len(plane.sockets)
    plane.stopping = True
    for ws in list(plane.sockets.values()):  # the callers hang up
        await ws.close(code=1000, message=b"the caller hung up")
    return {
        "calls": n,
        "connected": len(plane.accepted),
        "live_at_start": live_at_start,
        "live_at_end": live_at_end,
        **window(start, end),
        "server_rss0": rss0,
        "server_rss": rss1,
        # No audio frames in SIP mode: nothing to time or count per frame.
        "in_lat": [],
        "out_lat": [],
        "pacer_late": [],
        "frames_sent": 0,
        "frames_received": 0,
        "frames_reordered": 0,
        "frames_dup": 0,
        "deltas_sent": 0,
        "media_received": 0,
        "media_reordered": 0,
        "untagged": 0,
        "client_events": plane.events_in,
        "errors": plane.errors[:20],
        "n_errors": len(plane.errors),
    }


async def amain() -> None:
    plane = Plane()
    app = web.Application()
    app.router.add_post("/v1/realtime/calls/{call_id}/{verb}", plane.rest)
    app.router.add_get("/v1/realtime", plane.control)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=2048)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    first = {
        "model_url": f"ws://127.0.0.1:{port}/v1/realtime",
        "api_base": f"http://127.0.0.1:{port}/v1",
        "webhook_secret": plane.secret,
    }
    print(json.dumps(first), flush=True)
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    result = await drive(plane, json.loads(line))
    print("RESULT " + json.dumps(result), flush=True)
    await runner.cleanup()


def main() -> None:
    try:
        import uvloop

        uvloop.run(amain())
    except ImportError:  # pragma: no cover
        asyncio.run(amain())


if __name__ == "__main__":
    main()
