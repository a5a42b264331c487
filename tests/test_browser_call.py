"""Browser calls (the console's softphone): the core in PCM16 24 kHz, and /browser-call on a
relay on loopback, spoken to as the console backend does (Twilio's protocol, console token)."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from array import array
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from bridge_kit import connect, console, ev, model_events, start_response, twilio_frames

from relay.call import CallBridge, CallConfig
from relay.harness import (
    RunningRelay,
    free_port,
    give_number_a_profile,
    next_event,
    running_relay,
    wait_until,
)
from relay.sim.script import ModelScript, Reply
from shared import audio
from shared.session import build_session

PCM24 = {"type": "audio/pcm", "rate": 24000}
TOKEN = "browser-call-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
QUICK_VAD = '{"type":"server_vad","silence_duration_ms":300,"create_response":true}'
ENV = {"OPENAI_TURN_DETECTION_JSON": QUICK_VAD, "RELAY_CONSOLE_TOKEN": TOKEN}


def pcm(value: int, ms: int = 20) -> str:
    """`ms` of 24 kHz PCM16 at a constant `value` (0 is silence), base64."""
    return base64.b64encode(array("h", [value] * (24 * ms)).tobytes()).decode()


def pcm_tone(ms: int = 20, amplitude: int = 8000) -> str:
    """A square wave, loud enough for the simulated model's energy VAD."""
    samples = [amplitude if (i // 24) % 2 else -amplitude for i in range(24 * ms)]
    return base64.b64encode(array("h", samples).tobytes()).decode()


def pcm_delta(item: str, ms: int, resp: str = "resp_1") -> bytes:
    return ev(type="response.output_audio.delta", response_id=resp, item_id=item, delta=pcm(0, ms))


def pcm_bridge() -> CallBridge:
    session = build_session(override={"audio": {"input": {"format": PCM24}}})
    cfg = CallConfig(session=session, audio_format="audio/pcm")
    b = CallBridge(call_sid="BR1", stream_sid="MZ1", config=cfg, started_at=0.0)
    connect(b, 0.0)
    return b


# --- the core in PCM16 24 kHz ----------------------------------------------------------------


def test_pcm_audio_is_measured_in_ms_at_48_bytes_a_millisecond() -> None:
    b = pcm_bridge()
    start_response(b)
    frames = twilio_frames(b.on_model(pcm_delta("item_a", 100), 1.0))
    assert len(base64.b64decode(frames[0]["media"]["payload"])) == 4800
    assert frames[1]["mark"]["name"] == "item_a:100"  # 100 ms, not 600 (4800 bytes of mu-law)


def test_pcm_barge_in_truncates_at_what_was_heard_and_never_past_what_was_received() -> None:
    b = pcm_bridge()
    start_response(b)
    for _ in range(5):
        b.on_model(pcm_delta("item_a", 100), 1.0)
    b.on_mark("item_a:100", 1.1)
    actions = b.on_model(ev(type="input_audio_buffer.speech_started", item_id="u1"), 1.23)
    assert twilio_frames(actions) == [{"event": "clear", "streamSid": "MZ1"}]
    (trunc,) = [e for e in model_events(actions) if e["type"] == "conversation.item.truncate"]
    assert abs(trunc["audio_end_ms"] - 230) <= 1

    b = pcm_bridge()
    start_response(b)
    b.on_model(pcm_delta("item_b", 100), 1.0)  # only 100 ms ever arrived
    b.on_mark("item_b:100", 1.0)
    b.on_model(pcm_delta("item_b", 100), 1.05)
    actions = b.on_model(ev(type="input_audio_buffer.speech_started", item_id="u1"), 5.0)
    (trunc,) = [e for e in model_events(actions) if e["type"] == "conversation.item.truncate"]
    assert trunc["audio_end_ms"] == 200


def test_pcm_end_of_speech_is_found_by_loudness_in_pcm() -> None:
    b = pcm_bridge()
    b.on_model(ev(type="input_audio_buffer.speech_started", item_id="u1"), 0.0)
    for i in range(100):  # 1 s of voice, then 1 s of silence: frame i arrives at i * 0.02
        b.on_media(pcm_tone() if i < 50 else pcm(0), i * 0.02)
    b.on_model(ev(type="input_audio_buffer.speech_stopped", audio_end_ms=1500), 1.6)
    start_response(b)
    actions = b.on_model(pcm_delta("item_a", 100), 2.1)
    (lat,) = [e for e in console(actions) if e["type"] == "turn.latency"]
    # The last voice frame (49) arrived at 0.98 s. Read as mu-law, silent PCM (zero bytes)
    # would be "loud" and the end of speech would move to the VAD's end (frame 75).
    assert lat["latency_ms"] == pytest.approx(1120.0)


def test_pcm16_loudness() -> None:
    assert audio.is_loud_pcm16_b64(pcm_tone())
    assert audio.is_loud_pcm16_b64(pcm(-2000))
    assert not audio.is_loud_pcm16_b64(pcm(0))
    assert not audio.is_loud_pcm16_b64(pcm(900))  # hiss, below about -30 dBFS
    assert not audio.is_loud_pcm16_b64(pcm(-1000))
    assert not audio.is_loud_pcm16_b64("not base64!")
    assert not audio.is_loud_pcm16_b64("")


# --- /browser-call on a relay ---------------------------------------------------------------


def new_sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def start_frame(
    call_sid: str, stream_sid: str, audio_choice: str | None = None, to: str = ""
) -> str:
    params = {"audio": audio_choice} if audio_choice else {}
    if to:
        params["to"] = to
    start = {
        "streamSid": stream_sid,
        "callSid": call_sid,
        "accountSid": "",
        "tracks": ["inbound"],
        "customParameters": params,
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    }
    return json.dumps(
        {"event": "start", "sequenceNumber": "1", "streamSid": stream_sid, "start": start}
    )


class Browser:
    """The console backend's side of a browser call, by hand."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, stream_sid: str) -> None:
        self.ws = ws
        self.stream_sid = stream_sid

    async def media(self, payload: str) -> None:
        frame = {"event": "media", "streamSid": self.stream_sid, "media": {"payload": payload}}
        await self.ws.send_str(json.dumps(frame))

    async def send(self, event: str, **body: Any) -> None:
        await self.ws.send_str(json.dumps({"event": event, "streamSid": self.stream_sid, **body}))

    async def frame(self, timeout: float = 10.0) -> dict[str, Any]:
        msg = await self.ws.receive(timeout)
        assert msg.type is aiohttp.WSMsgType.TEXT, msg
        data: dict[str, Any] = json.loads(msg.data)
        return data


@pytest.fixture
async def relay() -> AsyncIterator[RunningRelay]:
    script = ModelScript(replies=[Reply("Hello from the simulator.", audio_ms=300)])
    async with running_relay(ENV, script) as running:
        yield running


async def _browser_call(
    http: aiohttp.ClientSession,
    relay: RunningRelay,
    call_sid: str,
    audio_choice: str | None,
    to: str = "",
) -> Browser:
    ws = await http.ws_connect(f"{relay.ws_url}/browser-call", headers=AUTH)
    stream_sid = new_sid("MZ")
    await ws.send_str(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
    await ws.send_str(start_frame(call_sid, stream_sid, audio_choice, to))
    return Browser(ws, stream_sid)


async def test_a_browser_call_placed_as_a_number_talks_to_its_profile(relay: RunningRelay) -> None:
    # The console's "call as" picker: the number travels as Twilio's `To` would.
    pizza = {"instructions": "You are the pizza line."}
    await give_number_a_profile(relay.base_url, TOKEN, "+15550009999", "pizza", pizza)
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{relay.ws_url}/logs", headers=AUTH) as logs:
            await next_event(logs, "relay.hello")
            browser = await _browser_call(http, relay, new_sid("BR"), None, to="+15550009999")
            started = await next_event(logs, "call.started")
            plain = await _browser_call(http, relay, new_sid("BR"), None)
            first, second = relay.sim.sessions[0], await relay.sim.wait_for_session(2)
            as_pizza = await first.wait_for("session.update")
            as_default = await second.wait_for("session.update")
            await browser.ws.close()
            await plain.ws.close()
    assert (started["call"]["to"], started["call"]["direction"]) == ("+15550009999", "browser")
    assert as_pizza["session"]["instructions"] == "You are the pizza line."
    assert as_default["session"]["instructions"] != "You are the pizza line."


async def test_a_wideband_browser_call_is_a_call_in_pcm24_end_to_end(relay: RunningRelay) -> None:
    call_sid = new_sid("BR")
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{relay.ws_url}/logs", headers=AUTH) as logs:
            await next_event(logs, "relay.hello")
            browser = await _browser_call(http, relay, call_sid, "pcm24")
            started = await next_event(logs, "call.started")
            assert started["call"]["direction"] == "browser"
            assert started["call"]["call_sid"] == call_sid
            assert started["call"]["from"] == "browser"
            for _ in range(20):  # 400 ms of voice, then silence for the VAD
                await browser.media(pcm_tone())
            for _ in range(20):
                await browser.media(pcm(0))
            session = await relay.sim.wait_for_session(1)
            assert session.effective["audio"]["input"]["format"] == PCM24
            assert session.effective["audio"]["output"]["format"] == PCM24
            await session.wait_sent("input_audio_buffer.speech_started")
            media = await browser.frame()
            assert media["event"] == "media" and media["streamSid"] == browser.stream_sid
            n_bytes = len(base64.b64decode(media["media"]["payload"]))
            mark = await browser.frame()
            assert mark["event"] == "mark"
            assert mark["mark"]["name"].endswith(f":{n_bytes // 48}")
            await browser.send("mark", mark=mark["mark"])
            played = await next_event(logs, "mark.played")
            assert played["played_ms"] == n_bytes // 48
            await browser.send("stop", stop={"callSid": call_sid})
            ended = await next_event(logs, "call.ended")
            assert ended["summary"]["end_reason"] == "caller_hung_up"
            await browser.ws.close()


async def test_a_browser_call_defaults_to_mulaw_like_a_phone(relay: RunningRelay) -> None:
    async with aiohttp.ClientSession() as http:
        browser = await _browser_call(http, relay, new_sid("BR"), None)
        session = await relay.sim.wait_for_session(1)
        await session.wait_for("session.update")
        assert session.effective["audio"]["input"]["format"] == {"type": "audio/pcmu"}
        await browser.send("dtmf", dtmf={"digit": "7", "track": "inbound_track"})
        item = await session.wait_for("conversation.item.create")
        assert item["item"]["content"][0]["text"] == "The caller pressed the 7 key."
        await browser.ws.close()  # gone without a stop: the call still ends
        await wait_until(lambda: not relay.ctx.hub.calls)


async def test_browser_call_needs_the_console_token(relay: RunningRelay) -> None:
    async with aiohttp.ClientSession() as http:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(f"{relay.ws_url}/browser-call", headers=headers)
            assert refused.value.status == 401
    assert not relay.ctx.hub.calls


async def test_without_a_token_only_loopback_may_place_browser_calls() -> None:
    async with running_relay({"OPENAI_TURN_DETECTION_JSON": QUICK_VAD}) as relay:
        async with aiohttp.ClientSession() as http:
            browser = await _browser_call(http, relay, new_sid("BR"), None)
            await wait_until(lambda: bool(relay.ctx.hub.calls))
            await browser.ws.close()


@pytest.mark.parametrize(
    ("call_sid", "audio_choice", "why"),
    [
        ("CA" + "0" * 32, None, "BR followed by 32 hex digits"),  # not a Twilio call's SID
        ("BR" + "0" * 31, None, "BR followed by 32 hex digits"),
        ("BR" + "0" * 32, "opus", "audio must be one of pcmu, pcm24"),
    ],
)
async def test_a_bad_browser_start_is_refused_with_the_reason(
    relay: RunningRelay, call_sid: str, audio_choice: str | None, why: str
) -> None:
    async with aiohttp.ClientSession() as http:
        browser = await _browser_call(http, relay, call_sid, audio_choice)
        msg = await browser.ws.receive(5)
        assert msg.type is aiohttp.WSMsgType.CLOSE
        assert msg.data == 1008
        assert why in str(msg.extra)
    assert not relay.ctx.hub.calls


async def test_a_live_callsid_cannot_be_taken_twice(relay: RunningRelay) -> None:
    call_sid = new_sid("BR")
    async with aiohttp.ClientSession() as http:
        first = await _browser_call(http, relay, call_sid, None)
        await wait_until(lambda: call_sid in relay.ctx.hub.calls)
        second = await _browser_call(http, relay, call_sid, None)
        msg = await second.ws.receive(5)
        assert msg.type is aiohttp.WSMsgType.CLOSE and "already streaming" in str(msg.extra)
        assert call_sid in relay.ctx.hub.calls  # the first one goes on
        await first.send("stop")
        await wait_until(lambda: not relay.ctx.hub.calls)


async def test_ending_a_browser_call_closes_the_stream_and_never_asks_twilio() -> None:
    """With Twilio credentials set, a phone call's hang-up goes through Twilio's REST API; a
    browser call has no Twilio call behind it."""
    twilio_requests: list[str] = []

    async def record(request: web.Request) -> web.Response:
        twilio_requests.append(request.path)
        return web.json_response({"sid": "CA" + "0" * 32, "status": "completed"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    env = {
        **ENV,
        "TWILIO_ACCOUNT_SID": "AC" + "1" * 32,
        "TWILIO_AUTH_TOKEN": "twilio-secret",
        "TWILIO_API_BASE": f"http://127.0.0.1:{port}",
    }
    try:
        async with running_relay(env) as relay, aiohttp.ClientSession() as http:
            call_sid = new_sid("BR")
            browser = await _browser_call(http, relay, call_sid, None)
            await wait_until(lambda: call_sid in relay.ctx.hub.calls)
            async with http.ws_connect(f"{relay.ws_url}/logs", headers=AUTH) as logs:
                await next_event(logs, "relay.hello")
                await logs.send_str(json.dumps({"type": "call.end", "call_sid": call_sid}))
                ended = await next_event(logs, "call.ended")
            assert ended["summary"]["end_reason"] == "console_ended"
            msg = await browser.ws.receive(5)
            while msg.type is aiohttp.WSMsgType.TEXT:
                msg = await browser.ws.receive(5)
            assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1000
            assert "ended from the console" in str(msg.extra)
        assert twilio_requests == []
    finally:
        await runner.cleanup()


async def test_pcm_frames_reach_the_simulated_model_and_it_answers_in_pcm(
    relay: RunningRelay,
) -> None:
    """The simulated model's VAD and voice work in audio/pcm too (the wideband test's
    model)."""
    async with aiohttp.ClientSession() as http:
        browser = await _browser_call(http, relay, new_sid("BR"), "pcm24")
        for _ in range(15):
            await browser.media(pcm_tone())
        for _ in range(20):
            await browser.media(pcm(0))
        session = await relay.sim.wait_for_session(1)
        await session.wait_sent("response.done", timeout=10)
        got = 0
        while True:
            frame = await browser.frame()
            if frame["event"] == "media":
                samples = array("h", base64.b64decode(frame["media"]["payload"]))
                assert max(samples) > 1000  # the simulator's tone, as PCM16
                got += len(samples)
            if got >= 24 * 300:  # the whole 300 ms answer
                break
        await browser.send("stop")
        await asyncio.wait_for(browser.ws.receive(), 5)
