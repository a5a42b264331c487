"""The softphone's backend half (console/softphone.py), without a browser: tickets, the frame
checks both ways, and the pump between a fake page and a fake relay."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web
from starlette.applications import Starlette
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from console import settings as console_settings
from console import softphone
from console.settings import ConsoleSettings
from relay.harness import free_port
from shared import twilio as tw
from shared.secret import Secret

PW = Secret("console-pw")
TOKEN = Secret("relay-token")
MULAW_20MS = base64.b64encode(b"\xff" * 160).decode()
PCM_20MS = base64.b64encode(b"\x00" * 960).decode()


def ticket(audio: str = "pcmu") -> softphone.Ticket:
    t, _ = softphone.issue_ticket(PW, audio, now=1000.0)
    return t


# --- tickets ---------------------------------------------------------------------------------


def test_a_ticket_names_a_new_browser_call_and_expires() -> None:
    t, text = softphone.issue_ticket(PW, "pcm24", now=1000.0)
    assert softphone.BROWSER_CALL_SID.match(t.call_sid)
    assert softphone.read_ticket(PW, text, now=1001.0) == t
    assert softphone.read_ticket(PW, text, now=1000.0 + softphone.TICKET_TTL_S) is None
    assert softphone.read_ticket(Secret("other"), text, now=1001.0) is None
    assert softphone.read_ticket(Secret(""), text, now=1001.0) is None
    other, _ = softphone.issue_ticket(PW, "pcm24", now=1000.0)
    assert other.call_sid != t.call_sid


def test_a_ticket_cannot_be_edited_to_name_another_call_or_format() -> None:
    _, text = softphone.issue_ticket(PW, "pcmu", now=1000.0, to="+14155550100")
    sid, audio, to, expires, sig = text.split(".")
    assert to == "+14155550100"
    for forged in (
        f"BR{'0' * 32}.{audio}.{to}.{expires}.{sig}",
        f"{sid}.pcm24.{to}.{expires}.{sig}",
        f"{sid}.{audio}.+14155550199.{expires}.{sig}",  # another number: another profile
        f"{sid}.{audio}..{expires}.{sig}",
        f"{sid}.{audio}.{to}.{int(expires) + 3600}.{sig}",
        f"{sid}.{audio}.{expires}.{sig}",
        "",
    ):
        assert softphone.read_ticket(PW, forged, now=1001.0) is None
    with pytest.raises(ValueError, match="audio must be one of"):
        softphone.issue_ticket(PW, "opus", now=1000.0)
    for number in ("14155550100", "+1 415 555 0100", "+14155550100\n", "+0123456789"):
        with pytest.raises(ValueError, match=r"E\.164"):
            softphone.issue_ticket(PW, "pcmu", now=1000.0, to=number)


def test_a_call_placed_as_a_number_reaches_the_relay_with_it_as_to() -> None:
    t, text = softphone.issue_ticket(PW, "pcmu", now=1000.0, to="+14155550100")
    assert softphone.read_ticket(PW, text, now=1001.0) == t
    _, start = (tw.decode_inbound(f) for f in softphone.CallFrames(t).opening())
    assert isinstance(start, tw.Start)
    assert start.start.customParameters == {"audio": "pcmu", "to": "+14155550100"}


def test_a_ticket_opens_one_call_only() -> None:
    spent = softphone.SpentTickets()
    t = ticket()
    assert spent.spend(t, now=1000.0)
    assert not spent.spend(t, now=1001.0)
    assert spent.spend(ticket(), now=1001.0)
    spent.spend(ticket(), now=t.expires + 1)
    assert t.call_sid not in spent.spent  # expired tickets are forgotten (read_ticket refuses)


# --- frames ----------------------------------------------------------------------------------


def test_the_backend_starts_the_call_as_twilio_would_with_the_tickets_callsid() -> None:
    frames = softphone.CallFrames(ticket("pcm24"))
    connected, start = (tw.decode_inbound(f) for f in frames.opening())
    assert isinstance(connected, tw.Connected)
    assert isinstance(start, tw.Start)
    assert start.start.callSid == frames.ticket.call_sid
    assert start.start.streamSid == start.streamSid == frames.stream_sid
    assert start.start.customParameters == {"audio": "pcm24"}
    assert json.loads(frames.ready()) == {
        "event": "ready",
        "callSid": frames.ticket.call_sid,
        "streamSid": frames.stream_sid,
        "audio": "pcm24",
    }


def test_page_media_becomes_twilio_media_with_sequence_and_timestamps() -> None:
    frames = softphone.CallFrames(ticket())
    frames.opening()
    out = [
        frames.from_page(json.dumps({"event": "media", "media": {"payload": MULAW_20MS}}), t)
        for t in (0.0, 0.02)
    ]
    first, second = (tw.decode_inbound(o) for o in out if o is not None)
    assert isinstance(first, tw.Media) and isinstance(second, tw.Media)
    assert first.streamSid == frames.stream_sid
    assert first.media.payload == MULAW_20MS
    assert (first.sequenceNumber, first.media.chunk, first.media.timestamp) == ("2", "1", "0")
    assert (second.sequenceNumber, second.media.chunk, second.media.timestamp) == ("3", "2", "20")
    assert tw.hot_frame(out[0] or "") is not None  # the relay's fast path takes it


@pytest.mark.parametrize(
    ("frame", "why"),
    [
        ({"event": "media", "media": {"payload": PCM_20MS}}, "media must be 20 ms"),
        ({"event": "media", "media": {"payload": MULAW_20MS[:-4]}}, "media must be 20 ms"),
        ({"event": "media", "media": {"payload": '"}}' + MULAW_20MS[3:]}}, "bad frame"),
        ({"event": "start", "start": {"callSid": "CA" + "1" * 32}}, "bad frame"),
        ({"event": "clear"}, "bad frame"),
        ({"event": "dtmf", "dtmf": {"digit": "A"}}, "bad frame"),
        ({"event": "media", "media": {"payload": MULAW_20MS}, "streamSid": "MZx"}, "bad frame"),
        ({"event": "mark", "mark": {"name": "x" * 200}}, "bad frame"),
    ],
)
def test_the_page_may_send_only_media_mark_dtmf_and_stop(frame: dict[str, Any], why: str) -> None:
    frames = softphone.CallFrames(ticket())
    with pytest.raises(softphone.PageError, match=why):
        frames.from_page(json.dumps(frame), 0.0)


def test_a_huge_or_garbled_frame_is_refused() -> None:
    frames = softphone.CallFrames(ticket())
    with pytest.raises(softphone.PageError, match="over 4096"):
        frames.from_page("x" * 5000, 0.0)
    with pytest.raises(softphone.PageError):
        frames.from_page("not json", 0.0)


def test_only_marks_the_relay_sent_are_echoed_and_only_once() -> None:
    frames = softphone.CallFrames(ticket())
    relay_mark = (
        f'{{"event":"mark","streamSid":"{frames.stream_sid}","mark":{{"name":"it_1:100"}}}}'
    )
    assert frames.from_relay(relay_mark) == relay_mark  # to the page as is
    echo = json.dumps({"event": "mark", "mark": {"name": "it_1:100"}})
    out = frames.from_page(echo, 0.0)
    assert out is not None
    mark = tw.decode_inbound(out)
    assert isinstance(mark, tw.Mark) and mark.mark.name == "it_1:100"
    assert mark.streamSid == frames.stream_sid
    assert frames.from_page(echo, 0.0) is None  # twice: dropped
    forged = json.dumps({"event": "mark", "mark": {"name": "other_item:99999"}})
    assert frames.from_page(forged, 0.0) is None


def test_dtmf_and_stop_are_twilios() -> None:
    frames = softphone.CallFrames(ticket())
    dtmf = tw.decode_inbound(frames.from_page('{"event":"dtmf","dtmf":{"digit":"#"}}', 0.0) or "")
    assert isinstance(dtmf, tw.Dtmf) and dtmf.dtmf.digit == "#"
    stop = tw.decode_inbound(frames.from_page('{"event":"stop"}', 0.0) or "")
    assert isinstance(stop, tw.Stop) and stop.stop.callSid == frames.ticket.call_sid
    assert frames.stopped
    assert frames.from_page('{"event":"dtmf","dtmf":{"digit":"1"}}', 0.0) is None


def test_a_page_cannot_flood_the_relay_with_audio() -> None:
    frames = softphone.CallFrames(ticket())
    media = json.dumps({"event": "media", "media": {"payload": MULAW_20MS}})
    sent = sum(frames.from_page(media, 0.0) is not None for _ in range(500))
    assert sent == softphone.BUDGET_BURST  # a second's worth at once, then nothing
    # Real time goes through forever: 50 frames a second.
    frames = softphone.CallFrames(ticket())
    assert all(frames.from_page(media, i * 0.02) is not None for i in range(3000))
    assert frames.dropped == 0


# --- the pump, between a fake page and a fake relay ------------------------------------------


class FakePage:
    def __init__(self) -> None:
        self.inbox: asyncio.Queue[str | None] = asyncio.Queue()
        self.sent: list[str] = []
        self.got = asyncio.Event()
        self.closed: tuple[int, str] | None = None

    async def receive(self) -> str | None:
        return await self.inbox.get()

    async def send(self, text: str) -> None:
        self.sent.append(text)
        self.got.set()

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    async def wait_for(self, event: str, timeout: float = 5.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                for text in self.sent:
                    frame: dict[str, Any] = json.loads(text)
                    if frame.get("event") == event:
                        return frame
                self.got.clear()
                await self.got.wait()


class FakeRelay:
    """A /browser-call that records what it gets and answers as the relay would."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.headers: dict[str, str] = {}
        self.changed = asyncio.Condition()
        self.ws: web.WebSocketResponse | None = None
        self.url = ""
        self.status = 0  # refuse the upgrade with this status

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.headers = dict(request.headers)
        if self.status:
            return web.Response(status=self.status)
        ws = self.ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            async with self.changed:
                self.received.append(json.loads(msg.data))
                self.changed.notify_all()
        return ws

    async def wait_for(self, event: str, timeout: float = 5.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout), self.changed:
            await self.changed.wait_for(lambda: any(f["event"] == event for f in self.received))
        return next(f for f in self.received if f["event"] == event)


@pytest.fixture
async def relay() -> AsyncIterator[FakeRelay]:
    fake = FakeRelay()
    app = web.Application()
    app.router.add_get("/browser-call", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    fake.url = f"ws://127.0.0.1:{port}/browser-call"
    try:
        yield fake
    finally:
        await runner.cleanup()


async def test_a_call_through_the_backend_both_ways(relay: FakeRelay) -> None:
    page = FakePage()
    t = ticket()
    call = asyncio.create_task(softphone.bridge_call(page, relay.url, TOKEN, t))
    ready = await page.wait_for("ready")
    assert ready["callSid"] == t.call_sid
    start = await relay.wait_for("start")
    assert start["start"]["callSid"] == t.call_sid
    assert relay.headers["Authorization"] == "Bearer relay-token"  # never sent to the page
    assert all("relay-token" not in text for text in page.sent)
    sid = ready["streamSid"]

    await page.inbox.put(json.dumps({"event": "media", "media": {"payload": MULAW_20MS}}))
    media = await relay.wait_for("media")
    assert media["media"]["payload"] == MULAW_20MS and media["streamSid"] == sid

    assert relay.ws is not None
    out = f'{{"event":"media","streamSid":"{sid}","media":{{"payload":"{MULAW_20MS}"}}}}'
    await relay.ws.send_str(out)
    await relay.ws.send_str(f'{{"event":"mark","streamSid":"{sid}","mark":{{"name":"i:20"}}}}')
    await relay.ws.send_str(f'{{"event":"clear","streamSid":"{sid}"}}')
    assert (await page.wait_for("media"))["media"]["payload"] == MULAW_20MS
    await page.wait_for("clear")
    await page.inbox.put(json.dumps({"event": "mark", "mark": {"name": "i:20"}}))
    assert (await relay.wait_for("mark"))["mark"]["name"] == "i:20"

    await page.inbox.put(json.dumps({"event": "stop"}))
    assert await asyncio.wait_for(call, 5) == "hung up"
    await relay.wait_for("stop")
    assert page.closed is not None and page.closed[0] == 1000


async def test_when_the_relay_ends_the_call_the_page_hears_why(relay: FakeRelay) -> None:
    page = FakePage()
    call = asyncio.create_task(softphone.bridge_call(page, relay.url, TOKEN, ticket()))
    await relay.wait_for("start")
    assert relay.ws is not None
    await relay.ws.close(code=1000, message=b"ended from the console")
    assert await asyncio.wait_for(call, 5) == "ended from the console"
    assert (await page.wait_for("ended"))["reason"] == "ended from the console"


class ClosingRelay:
    """A relay socket that is closing the call: a write fails at once, and the close frame
    with the reason is read a moment later (the race a console hang-up runs)."""

    async def send_str(self, data: str) -> None:
        raise ConnectionResetError("Cannot write to closing transport")

    async def receive(self) -> aiohttp.WSMessage:
        await asyncio.sleep(0.05)
        return aiohttp.WSMessage(aiohttp.WSMsgType.CLOSE, 1000, "ended from the console")

    async def close(self) -> None:
        pass


async def test_a_write_failing_while_the_relay_closes_still_gives_the_relays_reason() -> None:
    page, t = FakePage(), ticket()
    frames = softphone.CallFrames(t)
    frames.opening()  # connected and start: the call is streaming
    await page.inbox.put(json.dumps({"event": "media", "media": {"payload": MULAW_20MS}}))
    relay: Any = ClosingRelay()
    reason = await asyncio.wait_for(softphone._pump(page, relay, frames, time.monotonic), 5)
    assert reason == "ended from the console"


async def test_when_the_page_goes_away_the_relay_hears_a_stop(relay: FakeRelay) -> None:
    page = FakePage()
    call = asyncio.create_task(softphone.bridge_call(page, relay.url, TOKEN, ticket()))
    await relay.wait_for("start")
    await page.inbox.put(None)
    assert await asyncio.wait_for(call, 5) == "the page went away"
    await relay.wait_for("stop")


async def test_a_page_breaking_the_protocol_ends_its_call(relay: FakeRelay) -> None:
    page = FakePage()
    call = asyncio.create_task(softphone.bridge_call(page, relay.url, TOKEN, ticket()))
    await relay.wait_for("start")
    await page.inbox.put(json.dumps({"event": "start", "start": {}}))
    assert (await asyncio.wait_for(call, 5)).startswith("refused: bad frame")
    await relay.wait_for("stop")


@pytest.mark.parametrize(
    ("status", "why"), [(401, "RELAY_CONSOLE_TOKEN"), (404, "update the relay")]
)
async def test_a_refusing_relay_is_explained(relay: FakeRelay, status: int, why: str) -> None:
    relay.status = status
    page = FakePage()
    reason = await softphone.bridge_call(page, relay.url, TOKEN, ticket())
    assert why in reason
    assert why in (await page.wait_for("ended"))["reason"]


async def test_an_unreachable_relay_is_explained() -> None:
    page = FakePage()
    url = f"ws://127.0.0.1:{free_port()}/browser-call"
    reason = await softphone.bridge_call(page, url, TOKEN, ticket())
    assert "cannot reach the relay" in reason


# --- the route: no valid ticket, no socket -----------------------------------------------------


def test_the_route_refuses_before_accepting_without_a_valid_unused_ticket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = ConsoleSettings(password=PW, relay_url=f"http://127.0.0.1:{free_port()}")
    monkeypatch.setattr(console_settings, "_cached", settings)
    monkeypatch.setattr(softphone, "SPENT", softphone.SpentTickets())
    client = TestClient(Starlette(routes=softphone.routes))
    for query in (
        "",
        "?ticket=forged",
        f"?ticket={softphone.issue_ticket(Secret('x'), 'pcmu', 0)[1]}",
    ):
        with pytest.raises(WebSocketDisconnect) as refused:
            with client.websocket_connect(softphone.PATH + query):
                pass
        assert refused.value.code == 1008
    _, good = softphone.issue_ticket(PW, "pcmu", now=time.time(), to="+14155550100")
    good = quote(good, safe="")  # as the page gets it: `+` would be a space in a query
    with client.websocket_connect(f"{softphone.PATH}?ticket={good}") as ws:
        ended = ws.receive_json()  # accepted; the relay is not there, and the page hears so
        assert ended["event"] == "ended" and "cannot reach the relay" in ended["reason"]
    with pytest.raises(WebSocketDisconnect):
        with client.websocket_connect(f"{softphone.PATH}?ticket={good}"):
            pass  # the same ticket again


def test_the_relay_url_for_browser_calls() -> None:
    assert ConsoleSettings(relay_url="https://relay.example").browser_call_url == (
        "wss://relay.example/browser-call"
    )
    assert ConsoleSettings(relay_url="http://127.0.0.1:8081").browser_call_url == (
        "ws://127.0.0.1:8081/browser-call"
    )


# --- browser calls elsewhere in the console ----------------------------------------------------


def test_a_browser_call_is_marked_as_such_in_the_call_book() -> None:
    from console.calls import CallBook

    book = CallBook()
    sid = softphone.new_call_sid()
    info = {"call_sid": sid, "from": "browser", "direction": "browser", "state": "active"}
    book.apply({"type": "call.started", "call_sid": sid, "call": info})
    book.hello([{"call_sid": "CA" + "0" * 32, "from": "+14155550100", "direction": "inbound"}])
    assert book.calls[sid].browser
    assert not book.calls["CA" + "0" * 32].browser


async def test_a_browser_call_hangs_up_through_the_relay_even_with_twilio_configured() -> None:
    from console.hangup import hang_up

    settings = ConsoleSettings(
        twilio_account_sid="AC" + "1" * 32, twilio_auth_token=Secret("tw-token")
    )
    sent: list[dict[str, Any]] = []

    async def send(command: dict[str, Any]) -> str:
        sent.append(command)
        return ""

    sid = softphone.new_call_sid()
    result = await hang_up(sid, settings, simulator=False, send=send, browser=True)
    assert (result.via, result.error) == ("relay", False)
    assert sent == [{"type": "call.end", "call_sid": sid}]


async def test_a_page_that_vanishes_mid_answer_still_hangs_up_at_the_relay(
    relay: FakeRelay,
) -> None:
    class GonePage(FakePage):
        async def send(self, text: str) -> None:
            if '"media"' in text:
                raise RuntimeError("Unexpected ASGI message 'websocket.send'")  # as Starlette
            await super().send(text)

    page = GonePage()
    call = asyncio.create_task(softphone.bridge_call(page, relay.url, TOKEN, ticket()))
    start = await relay.wait_for("start")
    assert relay.ws is not None
    sid = start["streamSid"]
    await relay.ws.send_str(f'{{"event":"media","streamSid":"{sid}","media":{{"payload":"AA=="}}}}')
    assert await asyncio.wait_for(call, 5) == "the page went away"
    await relay.wait_for("stop")
