"""The simulated caller behaves like Twilio, checked against a scripted relay stand-in."""

from __future__ import annotations

import asyncio
import base64
import functools
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from twilio.request_validator import RequestValidator

from relay.sim.caller import (
    Dtmf,
    Hangup,
    Silence,
    SimCaller,
    Speak,
    WaitForAssistant,
    WaitForAssistantDone,
    parse_twiml,
    place_call,
)
from relay.sim.playback import Playback, item_of_mark
from shared.audio import tone_mulaw

TOKEN = "12345"


@functools.cache
def _payload(ms: int) -> str:
    # Cached: computing a tone takes milliseconds, which would skew the timing checks.
    return base64.b64encode(tone_mulaw(ms, 300)).decode()


class Peer:
    """A tiny WebSocket server standing in for the relay; the test scripts its side."""

    def __init__(self) -> None:
        self.received: list[tuple[float, dict[str, Any]]] = []
        self.headers: dict[str, str] = {}
        self.ws: web.WebSocketResponse | None = None
        self.connected = asyncio.Event()
        self.closed = asyncio.Event()
        self._changed = asyncio.Event()
        self.on_media: Any = None  # optional async callback(peer, msg)
        self.url = ""
        self.stream_sid = ""
        self.twiml_form: dict[str, str] = {}
        self.twiml_signature = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/media", self._handle)
        app.router.add_post("/twiml", self._twiml)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _twiml(self, request: web.Request) -> web.Response:
        self.twiml_form = {k: str(v) for k, v in (await request.post()).items()}
        self.twiml_signature = request.headers.get("X-Twilio-Signature", "")
        twiml = (
            '<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
            '<Stream url="wss://relay.example.com/media">'
            '<Parameter name="stream_token" value="tok123" />'
            f'<Parameter name="from" value="{self.twiml_form.get("From", "")}" />'
            "</Stream></Connect></Response>"
        )
        return web.Response(text=twiml, content_type="text/xml")

    async def _handle(self, request: web.Request) -> web.WebSocketResponse:
        self.headers = dict(request.headers)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.ws = ws
        self.connected.set()
        loop = asyncio.get_running_loop()
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                break
            data = json.loads(msg.data)
            self.received.append((loop.time(), data))
            if data["event"] == "start":
                self.stream_sid = data["streamSid"]
            if data["event"] == "media" and self.on_media is not None:
                await self.on_media(self, data)
            self._changed.set()
            self._changed = asyncio.Event()
        self.closed.set()
        return ws

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [m for _, m in self.received if m["event"] == kind]

    async def wait_for(self, pred: Any, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not pred():
                await self._changed.wait()

    async def send(self, msg: dict[str, Any]) -> float:
        assert self.ws is not None
        await self.ws.send_str(json.dumps(msg))
        return asyncio.get_running_loop().time()

    async def media(self, ms: int) -> float:
        payload = _payload(ms)
        event = {"event": "media", "streamSid": self.stream_sid, "media": {"payload": payload}}
        return await self.send(event)

    async def mark(self, name: str) -> float:
        return await self.send(
            {"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}}
        )

    async def clear(self) -> float:
        return await self.send({"event": "clear", "streamSid": self.stream_sid})

    def echo_times(self) -> dict[str, float]:
        return {m["mark"]["name"]: t for t, m in self.received if m["event"] == "mark"}


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    p = Peer()
    await p.start()
    yield p
    await p.stop()


def ws_url(peer: Peer) -> str:
    return peer.url.replace("http://", "ws://") + "/media"


async def started(peer: Peer) -> None:
    await peer.wait_for(lambda: bool(peer.stream_sid))


async def test_messages_sequence_numbers_and_frame_pacing(peer: Peer) -> None:
    caller = SimCaller(
        ws_url(peer),
        auth_token=TOKEN,
        signed_url="wss://relay.example.com/media",
        custom_parameters={"stream_token": "abc"},
    )
    record = await caller.run([Speak(200), Silence(300), Dtmf("5"), Speak(100), Hangup()])
    await peer.closed.wait()
    assert RequestValidator(TOKEN).validate(
        "wss://relay.example.com/media", {}, peer.headers["X-Twilio-Signature"]
    )
    msgs = [m for _, m in peer.received]
    assert msgs[0] == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    start = msgs[1]
    assert start["event"] == "start" and start["sequenceNumber"] == "1"
    info = start["start"]
    assert info["streamSid"] == start["streamSid"] == record.stream_sid
    assert info["callSid"].startswith("CA") and len(info["callSid"]) == 34
    assert info["accountSid"].startswith("AC") and len(info["accountSid"]) == 34
    assert start["streamSid"].startswith("MZ") and len(start["streamSid"]) == 34
    assert info["tracks"] == ["inbound"]
    assert info["customParameters"] == {"stream_token": "abc"}
    assert info["mediaFormat"] == {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
    assert [m["sequenceNumber"] for m in msgs[1:]] == [str(i) for i in range(1, len(msgs))]
    media = [m for m in msgs if m["event"] == "media"]
    assert len(media) == record.frames_sent >= 30
    assert [m["media"]["chunk"] for m in media] == [str(i) for i in range(1, len(media) + 1)]
    assert [m["media"]["timestamp"] for m in media] == [
        str(20 * i) for i in range(1, len(media) + 1)
    ]
    assert all(
        len(m["media"]["payload"]) == 216 and m["media"]["track"] == "inbound" for m in media
    )
    dtmf = peer.events("dtmf")
    assert dtmf[0]["dtmf"] == {"digit": "5", "track": "inbound_track"}
    assert msgs[-1]["event"] == "stop"
    assert msgs[-1]["stop"] == {"accountSid": info["accountSid"], "callSid": info["callSid"]}
    # Real-time pacing by absolute deadlines: N frames span about (N-1) * 20 ms.
    times = [t for t, m in peer.received if m["event"] == "media"]
    span = times[-1] - times[0]
    assert 0.9 * 0.02 * (len(times) - 1) <= span <= 0.02 * (len(times) - 1) + 0.1
    assert len(record.turns) == 2  # a turn ends after each Speak not followed by Speak
    assert record.closed_by == "caller" and record.ok


async def test_mark_echoed_when_playback_passes_it_or_at_once_when_idle(peer: Peer) -> None:
    async with SimCaller(ws_url(peer)) as caller:
        await started(peer)
        t_idle = await peer.mark("idle:0")
        await peer.wait_for(lambda: "idle:0" in peer.echo_times())
        assert peer.echo_times()["idle:0"] - t_idle < 0.05
        t_media = await peer.media(200)
        await peer.mark("item_a:200")
        await peer.wait_for(lambda: "item_a:200" in peer.echo_times())
        waited = peer.echo_times()["item_a:200"] - t_media
        assert 0.195 <= waited < 0.5
        assert caller.buffered_ms() == 0
    assert caller.record.marks_echoed == ["idle:0", "item_a:200"]
    assert caller.record.heard_ms["item_a"] == pytest.approx(200, abs=1)
    assert caller.record.protocol_errors == []


async def test_clear_flushes_pending_marks_and_records_played_ms(peer: Peer) -> None:
    async with SimCaller(ws_url(peer)) as caller:
        await started(peer)
        first = await peer.media(200)
        await peer.mark("item_a:200")
        for end in (400, 600, 800, 1000):
            await peer.media(200)
            await peer.mark(f"item_a:{end}")
        await peer.wait_for(lambda: "item_a:400" in peer.echo_times())
        t_clear = await peer.clear()
        await peer.wait_for(lambda: len(peer.echo_times()) == 5)
        echoed_at = peer.echo_times()
    record = caller.record
    assert record.marks_echoed == [f"item_a:{ms}" for ms in (200, 400, 600, 800, 1000)]
    # The three pending marks came back at once on clear, not when they would have played.
    assert echoed_at["item_a:1000"] - t_clear < 0.1
    [clear] = record.clears
    assert clear.item_id == "item_a" and clear.playing
    assert clear.flushed_marks == ["item_a:600", "item_a:800", "item_a:1000"]
    truth = 1000 * (t_clear - first)
    assert clear.played_ms == pytest.approx(truth, abs=5)
    assert 400 <= clear.played_ms < 500
    assert record.heard_ms["item_a"] == pytest.approx(clear.played_ms, abs=5)


async def test_waits_attribute_audio_and_measure_turn_latency(peer: Peer) -> None:
    answered = asyncio.Event()

    async def answer(p: Peer, msg: dict[str, Any]) -> None:
        # After 10 speech frames (200 ms), answer 300 ms of audio as item_b, 100 ms later.
        if msg["media"]["chunk"] == "10" and not answered.is_set():
            answered.set()
            await asyncio.sleep(0.1)
            await p.media(150)
            await p.mark("item_b:150")
            await p.media(150)
            await p.mark("item_b:300")

    peer.on_media = answer
    record = await SimCaller(ws_url(peer)).run(
        [Speak(200), WaitForAssistant(min_heard_ms=100), WaitForAssistantDone(), Hangup()]
    )
    assert record.ok, record.summary()
    assert record.heard_ms == {"item_b": pytest.approx(300, abs=2)}
    [turn] = record.turns
    assert turn.latency_ms is not None and 95 <= turn.latency_ms < 300
    assert record.media_received == 2 and record.bytes_received == 2400


async def test_protocol_errors_are_recorded(peer: Peer) -> None:
    async with SimCaller(ws_url(peer)) as caller:
        await started(peer)
        await peer.send({"event": "sendDigits", "streamSid": peer.stream_sid, "digits": "1"})
        await peer.send({"event": "clear", "streamSid": "MZwrong"})
        await peer.send(
            {"event": "mark", "streamSid": peer.stream_sid, "mark": {"name": "a:0"}, "extra": 1}
        )
        await peer.mark("sync:0")
        await peer.wait_for(lambda: "sync:0" in peer.echo_times())
    errors = caller.record.protocol_errors
    assert len(errors) == 3, errors
    assert "sendDigits" in errors[0] and "MZwrong" in errors[1] and "extra" in errors[2]
    assert not caller.record.ok


async def test_gaps_skip_silence_frames(peer: Peer) -> None:
    record = await SimCaller(ws_url(peer), gaps=True).run([Speak(100), Silence(200), Speak(100)])
    media = peer.events("media")
    assert record.frames_sent == len(media) == 10
    stamps = [int(m["media"]["timestamp"]) for m in media]
    assert stamps[:5] == [20, 40, 60, 80, 100]
    assert stamps[5] >= 300  # the clock ran on through the gap
    assert [m["media"]["chunk"] for m in media] == [str(i) for i in range(1, 11)]


async def test_relay_hanging_up_first_is_a_normal_end(peer: Peer) -> None:
    """A normal close (1000) is how the relay hangs up (console, end_call): not a failure."""

    async def hang_up(p: Peer, msg: dict[str, Any]) -> None:
        if msg["media"]["chunk"] == "3" and p.ws is not None:
            await p.ws.close(code=1000)

    peer.on_media = hang_up
    record = await SimCaller(ws_url(peer)).run([Silence(2000), Hangup()])
    assert record.closed_by == "relay" and record.close_code == 1000
    assert record.ok, record.summary()
    assert "during Silence with 1 step(s) not done" in record.ended_by_relay
    assert record.duration_s < 1.5


async def test_relay_closing_with_an_error_is_a_failure(peer: Peer) -> None:
    async def fail(p: Peer, msg: dict[str, Any]) -> None:
        if msg["media"]["chunk"] == "3" and p.ws is not None:
            await p.ws.close(code=1011)

    peer.on_media = fail
    record = await SimCaller(ws_url(peer)).run([Silence(2000), Hangup()])
    assert record.closed_by == "relay" and not record.ok
    assert "closed the stream (code 1011) during Silence" in record.failures[0]
    assert not record.ended_by_relay


async def test_place_call_follows_the_twilio_flow(peer: Peer) -> None:
    record = await place_call(
        peer.url, steps=[Silence(60), Hangup()], auth_token=TOKEN, from_="+15551234567"
    )
    assert record.ok, record.summary()
    form = peer.twiml_form
    assert form["From"] == "+15551234567" and form["Direction"] == "inbound"
    assert form["CallSid"] == record.call_sid and form["CallStatus"] == "ringing"
    assert RequestValidator(TOKEN).validate(peer.url + "/twiml", form, peer.twiml_signature)
    # The stream upgrade is signed over the wss:// URL exactly as the TwiML wrote it.
    assert RequestValidator(TOKEN).validate(
        "wss://relay.example.com/media", {}, peer.headers["X-Twilio-Signature"]
    )
    start = peer.events("start")[0]["start"]
    assert start["customParameters"] == {"stream_token": "tok123", "from": "+15551234567"}
    assert start["callSid"] == record.call_sid


def test_parse_twiml_and_playback_arithmetic() -> None:
    url, params = parse_twiml(
        '<Response><Connect><Stream url="wss://h/x"><Parameter name="a" value="1"/>'
        "</Stream></Connect></Response>"
    )
    assert (url, params) == ("wss://h/x", {"a": "1"})
    with pytest.raises(ValueError):
        parse_twiml("<Response><Say>busy</Say></Response>")
    assert item_of_mark("item_abc:1200") == "item_abc"
    assert item_of_mark("resp_x:item_y:42") == "resp_x:item_y"
    pb = Playback()
    pb.add_media(0.0, 800)  # 100 ms
    assert not pb.add_mark(0.0, "i1:100")
    pb.add_media(0.05, 800)  # queued behind: plays 0.1..0.2
    assert pb.due(0.099) == [] and pb.due(0.1) == ["i1:100"]
    flushed, item, played, playing = pb.clear(0.15)
    assert (flushed, item, playing) == ([], "i1", True)  # unmarked tail goes to the last item
    assert played == pytest.approx(0.15)
    assert pb.played_s(1.0) == pytest.approx(0.15)
    assert pb.add_mark(0.2, "i2:0")  # idle: echo at once
