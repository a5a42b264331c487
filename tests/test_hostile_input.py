"""Every socket and endpoint survives garbage (issue 5, "Hostile input"), end to end on loopback.

Each hostile input is refused or ignored with one log line naming the reason (not one per
frame); the call it arrived on (if any) goes on -- the caller still hears the answer to its
speech afterwards -- and a second, healthy call running at the same time is untouched.
"""

from __future__ import annotations

import asyncio
import binascii
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from relay.harness import RunningRelay, next_event, running_relay, wait_until
from relay.sim.caller import (
    CallRecord,
    Hangup,
    Silence,
    SimCaller,
    Speak,
    Step,
    WaitForAssistant,
    WaitForAssistantDone,
    new_sid,
    parse_twiml,
    place_call,
)
from relay.sim.script import ModelScript, Reply

QUICK_VAD = '{"type":"server_vad","silence_duration_ms":300,"create_response":true}'
ENV = {"OPENAI_TURN_DETECTION_JSON": QUICK_VAD, "RELAY_PREWARM": "false"}
ANSWER_MS = 300
HEALTHY_STEPS: list[Step] = [
    Silence(ms=300),
    Speak(ms=500),
    Silence(ms=400),
    WaitForAssistant(timeout=5),
    WaitForAssistantDone(timeout=8),
    Hangup(),
]
COPIES = 6  # each hostile frame is sent this many times: one log line, not six


def script() -> ModelScript:
    return ModelScript(replies=[Reply("Still here.", audio_ms=ANSWER_MS)])


# --- helpers ---------------------------------------------------------------------------------


async def twiml_params(relay: RunningRelay, http: aiohttp.ClientSession, call_sid: str) -> Any:
    async with http.post(f"{relay.base_url}/twiml", data={"CallSid": call_sid}) as resp:
        assert resp.status == 200
        _, params = parse_twiml(await resp.text())
        return params


class EarlyFramesCaller(SimCaller):
    """A SimCaller that sends `early` frames after `connected` and before `start`."""

    def __init__(self, *args: Any, early: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.early = early

    async def _send_raw(self, data: bytes) -> None:
        await super()._send_raw(data)
        assert self._ws is not None
        for frame in self.early:
            await self._ws.send_str(frame.replace("$SID", self.record.stream_sid))


async def open_stream(
    relay: RunningRelay,
    http: aiohttp.ClientSession,
    *,
    call_sid: str | None = None,
    params: dict[str, str] | None = None,
    early: list[str] | None = None,
) -> SimCaller:
    """A connected stream (connected + start sent) with a token from /twiml unless given."""
    call_sid = call_sid or new_sid("CA")
    if params is None:
        params = await twiml_params(relay, http, call_sid)
    url = f"{relay.ws_url}/call"
    caller = (
        EarlyFramesCaller(url, custom_parameters=params, call_sid=call_sid, http=http, early=early)
        if early
        else SimCaller(url, custom_parameters=params, call_sid=call_sid, http=http)
    )
    await caller.connect()
    return caller


async def send_raw(caller: SimCaller, frame: str | bytes) -> None:
    ws = caller._ws
    assert ws is not None
    if isinstance(frame, bytes):
        await ws.send_bytes(frame)
    else:
        await ws.send_str(frame.replace("$SID", caller.record.stream_sid))


async def hears_an_answer(caller: SimCaller) -> CallRecord:
    """The caller speaks and must hear a whole answer; then it hangs up."""
    assert not caller.ended, f"the relay closed the stream (code {caller.record.close_code})"
    assert await caller.speak(500)
    assert await caller.silence(400)
    assert await caller.wait_for_assistant(timeout=5), caller.record.summary()
    assert await caller.wait_for_assistant_done(timeout=8), caller.record.summary()
    record = await caller.hangup()
    assert record.closed_by == "caller", record.summary()
    assert record.ok, record.summary()
    assert record.total_heard_ms >= ANSWER_MS - 1
    return record


async def wait_ended(caller: SimCaller, timeout: float = 5.0) -> CallRecord:
    async with asyncio.timeout(timeout):
        await caller._ended.wait()
    return await caller.hangup()


@asynccontextmanager
async def healthy_call(relay: RunningRelay) -> AsyncIterator[asyncio.Task[CallRecord]]:
    """A second, well-behaved call running alongside; checked when the block ends."""
    task = asyncio.create_task(place_call(relay.base_url, steps=HEALTHY_STEPS))
    yield task
    record = await task
    assert record.ok, record.summary()
    assert record.total_heard_ms == pytest.approx(ANSWER_MS, abs=1)
    assert len(record.heard_ms) == 1
    assert record.protocol_errors == []


def lines(caplog: pytest.LogCaptureFixture, needle: str) -> list[str]:
    needle = needle.lower()
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("relay") and needle in r.getMessage().lower()
    ]


def no_internal_errors(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [f"{r.name}: {r.getMessage()}" for r in bad]


# --- /call: hostile frames on a live call ------------------------------------------------------


@dataclass(frozen=True)
class Hostile:
    name: str
    frame: str | bytes
    needle: str  # a word of the log line that names the reason
    before_start: bool = False


def _b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode()


MEDIA_OK = _b64(b"\xff" * 160)
HOSTILE = [
    Hostile("non-json text", "this is not JSON {", "malformed"),
    Hostile("json array", "[1, 2, 3]", "malformed"),
    Hostile(
        "media payload is a number",
        '{"event":"media","streamSid":"$SID","media":{"payload":5}}',
        "malformed",
    ),
    Hostile("media without a body", '{"event":"media","streamSid":"$SID"}', "malformed"),
    Hostile(
        "mark name is a number",
        '{"event":"mark","streamSid":"$SID","mark":{"name":4},"sequenceNumber":"4"}',
        "malformed",
    ),
    Hostile("unknown event", '{"event":"sendDigits","streamSid":"$SID"}', "malformed"),
    Hostile(
        "huge frame",
        json.dumps({"event": "media", "streamSid": "$SID", "media": {"payload": "A" * 100_000}}),
        "-byte frame",
    ),
    Hostile("binary frame", b"\x00\x01binary\xff" * 10, "binary frame"),
    Hostile(
        "media before start",
        '{"event":"media","streamSid":"$SID","media":{"payload":"' + MEDIA_OK + '"}}',
        "before start",
        before_start=True,
    ),
    Hostile(
        "mark before start",
        '{"event":"mark","streamSid":"$SID","mark":{"name":"x"}}',
        "before start",
        before_start=True,
    ),
]

SECOND_START = (
    '{"event":"start","streamSid":"MZ1","start":{"streamSid":"MZ1","callSid":"CA1",'
    '"customParameters":{"stream_token":"x"}}}'
)
HOSTILE_EXTRA = [
    pytest.param(
        Hostile(
            # The payload is spliced into the model's append event: a quote must not let the
            # caller inject fields (here a second `type`) into what the model receives.
            "json injection in the media payload",
            '{"event":"media","streamSid":"$SID","media":{"payload":"AAAA\\",\\"type\\":'
            '\\"response.create"}}',
            "malformed",
        ),
        id="json injection in the media payload",
    ),
    pytest.param(
        Hostile(
            "deeply nested json",
            '{"event":"media","streamSid":"$SID","media":{"payload":"","x":'
            + "[" * 3000
            + "]" * 3000
            + "}}",
            "malformed",
        ),
        id="deeply nested json",
    ),
    pytest.param(
        Hostile("second start", SECOND_START, "second start"),
        id="second start",
    ),
    pytest.param(
        Hostile(
            "frame for another stream",
            '{"event":"dtmf","streamSid":"MZother","dtmf":{"digit":"1"}}',
            "another stream",
        ),
        id="frame for another stream",
    ),
    pytest.param(
        Hostile(
            "mark for an unknown name",
            '{"event":"mark","streamSid":"$SID","mark":{"name":"no-such-mark"}}',
            "mark",
        ),
        id="mark for an unknown name",
    ),
    pytest.param(
        Hostile("connected after start", '{"event":"connected"}', "connected"),
        id="connected after start",
    ),
]


@pytest.mark.parametrize(
    "hostile", [*(pytest.param(h, id=h.name) for h in HOSTILE), *HOSTILE_EXTRA]
)
async def test_hostile_frame_on_call_is_ignored_once_and_the_call_goes_on(
    hostile: Hostile, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with running_relay(ENV, script()) as relay, aiohttp.ClientSession() as http:
        async with healthy_call(relay):
            frames = [hostile.frame] * COPIES
            if hostile.before_start:
                assert isinstance(hostile.frame, str)
                caller = await open_stream(relay, http, early=[hostile.frame] * COPIES)
            else:
                caller = await open_stream(relay, http)
                for frame in frames:
                    await send_raw(caller, frame)
            sid = caller.record.call_sid
            await hears_an_answer(caller)
        found = lines(caplog, hostile.needle)
        # Logged with its reason, but not once per frame (exactly once: see the next test).
        assert 1 <= len(found) < COPIES, f"{hostile.name}: {found}"
        no_internal_errors(caplog)
        # The model was never asked for anything the caller's frames did not justify.
        for session in relay.sim.sessions:
            for event in session.received:
                assert event["type"] in ("session.update", "input_audio_buffer.append"), event
                if event["type"] == "input_audio_buffer.append":
                    binascii.a2b_base64(event["audio"])  # valid base64: nothing spliced in
        await wait_until(lambda: sid not in relay.ctx.hub.calls, timeout=5)


async def test_each_kind_of_garbage_is_logged_exactly_once_per_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    kinds: dict[str, str | bytes] = {
        "malformed": "not json",
        "-byte frame": "x" * 70_000,
        "binary frame": b"\x00\x01",
        "second start": SECOND_START,
    }
    async with running_relay(ENV, script()) as relay, aiohttp.ClientSession() as http:
        caller = await open_stream(relay, http)
        for frame in kinds.values():
            for _ in range(COPIES):
                await send_raw(caller, frame)
        await hears_an_answer(caller)
    for needle in kinds:
        found = lines(caplog, needle)
        assert len(found) == 1, f"{needle}: {found}"


# --- /call: stream tokens ----------------------------------------------------------------------


async def _refused_with_1008(
    relay: RunningRelay, http: aiohttp.ClientSession, call_sid: str, params: dict[str, str]
) -> None:
    caller = await open_stream(relay, http, call_sid=call_sid, params=params)
    record = await wait_ended(caller)
    assert record.close_code == 1008, record.summary()
    assert record.closed_by == "relay"
    live = relay.ctx.hub.calls.get(call_sid)
    assert live is None or live.bridge.stream_sid != caller.record.stream_sid


TokenCase = Callable[[RunningRelay, aiohttp.ClientSession], Any]


async def _no_token(relay: RunningRelay, http: aiohttp.ClientSession) -> None:
    await _refused_with_1008(relay, http, new_sid("CA"), {"from": "+1"})


async def _forged_token(relay: RunningRelay, http: aiohttp.ClientSession) -> None:
    await _refused_with_1008(relay, http, new_sid("CA"), {"stream_token": "A" * 32})


async def _empty_token(relay: RunningRelay, http: aiohttp.ClientSession) -> None:
    await _refused_with_1008(relay, http, new_sid("CA"), {"stream_token": ""})


async def _token_of_another_call(relay: RunningRelay, http: aiohttp.ClientSession) -> None:
    params = await twiml_params(relay, http, new_sid("CA"))
    await _refused_with_1008(relay, http, new_sid("CA"), params)


async def _reused_token(relay: RunningRelay, http: aiohttp.ClientSession) -> None:
    sid = new_sid("CA")
    params = await twiml_params(relay, http, sid)
    first = await open_stream(relay, http, call_sid=sid, params=params)
    assert await first.silence(100)
    await first.hangup()
    await wait_until(lambda: sid not in relay.ctx.hub.calls, timeout=5)
    await _refused_with_1008(relay, http, sid, params)


async def _reused_token_while_live(relay: RunningRelay, http: aiohttp.ClientSession) -> None:
    sid = new_sid("CA")
    params = await twiml_params(relay, http, sid)
    first = await open_stream(relay, http, call_sid=sid, params=params)
    assert await first.silence(100)
    await _refused_with_1008(relay, http, sid, params)
    await hears_an_answer(first)  # the legitimate stream is untouched


@pytest.mark.parametrize(
    "case",
    [
        _no_token,
        _forged_token,
        _empty_token,
        _token_of_another_call,
        _reused_token,
        _reused_token_while_live,
    ],
    ids=lambda f: f.__name__.strip("_"),
)
async def test_a_start_without_a_valid_stream_token_is_refused_with_1008(
    case: TokenCase, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with running_relay(ENV, script()) as relay, aiohttp.ClientSession() as http:
        async with healthy_call(relay):
            await case(relay, http)
    assert len(lines(caplog, "stream token")) == 1
    no_internal_errors(caplog)


async def test_a_start_with_a_malformed_call_sid_is_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A CallSid is spliced into console events: one that could break JSON is refused."""
    caplog.set_level(logging.INFO)
    async with running_relay(ENV, script()) as relay, aiohttp.ClientSession() as http:
        async with healthy_call(relay):
            async with http.post(
                f"{relay.base_url}/twiml", data={"CallSid": 'CA"x'}
            ) as resp:  # no signature check without TWILIO_AUTH_TOKEN: /twiml issues a token
                _, params = parse_twiml(await resp.text())
            ws = await http.ws_connect(f"{relay.ws_url}/call")
            start = {
                "event": "start",
                "streamSid": "MZ1",
                "start": {"streamSid": "MZ1", "callSid": 'CA"x', "customParameters": params},
            }
            await ws.send_str(json.dumps(start))
            media = {"event": "media", "streamSid": "MZ1", "media": {"payload": MEDIA_OK}}
            await ws.send_str(json.dumps(media))
            async with asyncio.timeout(5):  # the relay read both frames
                while not lines(caplog, "before start"):
                    await asyncio.sleep(0.02)
            await ws.close()
        assert all('"' not in sid for sid in relay.ctx.hub.calls)
        assert all('"' not in call["call_sid"] for call in relay.ctx.hub.ended)
    assert lines(caplog, "malformed")
    no_internal_errors(caplog)


# --- /logs ---------------------------------------------------------------------------------------


def _next(ws: aiohttp.ClientWebSocketResponse, kind: str) -> Awaitable[dict[str, Any]]:
    return next_event(ws, kind, timeout=5)


async def _ping_ok(ws: aiohttp.ClientWebSocketResponse, ident: str) -> None:
    await ws.send_json({"type": "ping", "id": ident})
    async with asyncio.timeout(5):
        while True:
            data = await _next(ws, "pong")
            if data["id"] == ident:
                return


CONSOLE_GARBAGE: list[tuple[str, str | bytes]] = [
    ("non-json", "{nope"),
    ("empty", ""),
    ("binary non-json", b"\x00\xff\xfe"),
    ("json string", '"ping"'),
    ("json array", '[{"type":"ping"}]'),
    ("no type", '{"call_sid":"CA1"}'),
    ("type is a number", '{"type":5}'),
    ("unknown command", '{"type":"input_audio_buffer.append","audio":"AAAA"}'),
    ("unknown field", '{"type":"ping","extra":1}'),
    ("call_sid is a number", '{"type":"call.end","call_sid":5}'),
    ("id is an object", '{"type":"ping","id":{"a":1}}'),
    ("session is a list", '{"type":"session.update","scope":"default","session":[1]}'),
    ("bad scope", '{"type":"session.update","scope":"all","session":{}}'),
    ("bad session value", '{"type":"session.update","scope":"default","session":{"voice":7}}'),
    ("no such call", '{"type":"response.cancel","call_sid":"CAnope"}'),
    ("sim.call seconds is text", '{"type":"sim.call","seconds":"ten"}'),
    ("oversize", '{"type":"ping","id":"' + "x" * 70_000 + '"}'),
    (
        "deeply nested",
        '{"type":"session.update","session":{"a":' + "[" * 5000 + "]" * 5000 + "}}",
    ),
]


async def test_console_garbage_gets_command_errors_and_the_socket_stays_open(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    env = {**ENV, "RELAY_CONSOLE_RATE_PER_S": "1000"}
    async with running_relay(env, script()) as relay, aiohttp.ClientSession() as http:
        async with healthy_call(relay):
            async with http.ws_connect(f"{relay.ws_url}/logs") as ws:
                await _next(ws, "relay.hello")
                for name, frame in CONSOLE_GARBAGE:
                    if isinstance(frame, bytes):
                        await ws.send_bytes(frame)
                    else:
                        await ws.send_str(frame)
                    refused = await _next(ws, "command.error")
                    assert refused["message"], name
                    assert "Traceback" not in refused["message"]
                await _ping_ok(ws, "still-open")
                assert not ws.closed
    no_internal_errors(caplog)
    assert relay.ctx.default_session["audio"]["output"]["voice"] != 7


async def test_a_console_command_flood_is_rate_limited_and_calls_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    rate = 5.0
    env = {**ENV, "RELAY_CONSOLE_RATE_PER_S": str(rate)}
    flood = 200
    async with running_relay(env, script()) as relay, aiohttp.ClientSession() as http:
        async with healthy_call(relay):
            async with http.ws_connect(f"{relay.ws_url}/logs") as ws:
                await _next(ws, "relay.hello")
                for i in range(flood):
                    await ws.send_json({"type": "ping", "id": f"p{i}"})
                ok = errors = 0
                async with asyncio.timeout(5):
                    while ok + errors < flood:
                        msg = await ws.receive()
                        assert msg.type is aiohttp.WSMsgType.TEXT, msg
                        data = json.loads(msg.data)
                        if data["type"] == "pong":
                            ok += 1
                        elif data["type"] == "command.error":
                            assert "rate limit" in data["message"]
                            errors += 1
                # A burst of twice the rate goes through; the rest is refused, not queued.
                assert 1 <= ok <= 2 * rate + 2, ok
                assert errors >= flood - 2 * rate - 2
                # The bucket refills: the console can go on after a short pause.
                await asyncio.sleep(1.5 / rate)
                await _ping_ok(ws, "after")
                assert not ws.closed
    assert len(lines(caplog, "rate limit")) == 1  # not one line per refused command
    no_internal_errors(caplog)


async def test_console_garbage_does_not_disturb_a_call_it_names(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    async with running_relay(ENV, script()) as relay, aiohttp.ClientSession() as http:
        caller = await open_stream(relay, http)
        sid = caller.record.call_sid
        async with http.ws_connect(f"{relay.ws_url}/logs") as ws:
            await _next(ws, "relay.hello")
            commands: list[dict[str, Any]] = [
                {"type": "conversation.item.create", "call_sid": sid, "item": {"type": 5}},
                {"type": "conversation.item.create", "call_sid": sid, "item": {}},
                {"type": "function_call.output", "call_sid": sid, "call_id": "x", "output": ""},
                {"type": "session.update", "call_sid": sid, "session": {"voice": "nobody"}},
                {"type": "session.update", "call_sid": sid, "session": {"audio": 5}},
                {"type": "response.cancel", "call_sid": sid},
            ]
            for cmd in commands:
                await ws.send_json(cmd)
                refused = await _next(ws, "command.error")
                assert refused["command"] == cmd["type"], refused
            await _ping_ok(ws, "alive")
            await hears_an_answer(caller)
    no_internal_errors(caplog)


# --- HTTP ----------------------------------------------------------------------------------------


async def test_twiml_without_a_call_sid_is_400_and_odd_bodies_never_500() -> None:
    cases: list[tuple[str, dict[str, Any], set[int]]] = [
        ("GET", {}, {400}),
        ("POST", {}, {400}),
        ("POST", {"data": {"From": "+1"}}, {400}),
        ("POST", {"data": {"CallSid": ""}}, {400}),
        ("POST", {"json": {"CallSid": "CA1"}}, {400}),
        (
            "POST",
            {
                "data": b"\xff\xfe\x00=%%%",
                "headers": {"Content-Type": "application/x-www-form-urlencoded"},
            },
            {400},
        ),
        (
            "POST",
            {"data": b"--x\r\ngarbage", "headers": {"Content-Type": "multipart/form-data"}},
            {400},
        ),
        (
            "POST",
            {
                "data": b"--x\r\ngarbage",
                "headers": {"Content-Type": "multipart/form-data; boundary=x"},
            },
            {400},
        ),
        (
            "POST",
            {
                "data": b"CallSid=" + b"A" * 1_100_000,
                "headers": {"Content-Type": "application/x-www-form-urlencoded"},
            },
            {400, 413},
        ),
        ("PUT", {}, {405}),
    ]
    async with running_relay(ENV) as relay:
        for method, kwargs, expected in cases:
            # A fresh connection each: a refused large body may leave the old one unusable.
            async with aiohttp.ClientSession() as http:
                async with http.request(method, f"{relay.base_url}/twiml", **kwargs) as resp:
                    body = await resp.text()
                    assert resp.status in expected, (method, kwargs.keys(), resp.status, body)
                    assert "Traceback" not in body
        # The relay still serves a real call afterwards.
        record = await place_call(relay.base_url, steps=[Silence(ms=100), Hangup()])
        assert record.ok, record.summary()


async def test_twiml_escapes_odd_parameters() -> None:
    async with running_relay(ENV) as relay, aiohttp.ClientSession() as http:
        data = {"CallSid": 'CA<&">', "From": '"><Hangup/>', "To": "\u202e+1"}
        async with http.post(f"{relay.base_url}/twiml", data=data) as resp:
            assert resp.status == 200
            _, params = parse_twiml(await resp.text())
        assert params["from"] == data["From"] and params["to"] == data["To"]


@pytest.mark.parametrize("path", ["/health", "/tools", "/calls", "/public-url"])
async def test_info_endpoints_always_answer_json(path: str) -> None:
    async with running_relay(ENV) as relay, aiohttp.ClientSession() as http:
        odd: list[dict[str, Any]] = [
            {},
            {"params": {"x": "\x00", "CallSid": "%ff"}},
            {"headers": {"Accept": "text/html", "Content-Type": "application/xml"}},
            {"data": b"\xff" * 10_000, "headers": {"Content-Type": "application/json"}},
        ]
        for kwargs in odd:
            async with http.get(f"{relay.base_url}{path}", **kwargs) as resp:
                assert resp.status == 200, (path, kwargs)
                assert resp.content_type == "application/json"
                json.loads(await resp.text())
