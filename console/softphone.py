"""The softphone's backend half: the page's WebSocket <-> the relay's `/browser-call`.

The page never talks to the relay and never holds the relay's token. A logged-in page gets
a ticket from its Reflex state (like a recording's signed path): an HMAC, keyed by
CONSOLE_PASSWORD, over a CallSid this backend made, the audio choice, the number it calls as
(its agent profile; empty for the default) and an expiry. With it
the page opens `/_console/softphone`; the backend opens `/browser-call` with the console
token, sends Twilio's `connected` and `start` itself (so the page cannot name another call)
and then moves frames: the page's `media`, `mark`, `dtmf` and `stop` to the relay, checked
(20 ms of audio exactly, marks the relay sent, keypad digits, a frame budget); the relay's
`media`, `mark` and `clear` to the page as they are. The frame logic is `CallFrames`
(no I/O); `bridge_call` is the pump. Protocol: docs/console-protocol.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Literal, Protocol

import aiohttp
import msgspec
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from console import settings as console_settings
from console.phone import E164
from shared.secret import Secret

log = logging.getLogger("console.softphone")

PATH = "/_console/softphone"
TICKET_TTL_S = 60  # from pressing Talk to the page's socket opening
AUDIO = {"pcmu": 160, "pcm24": 960}  # the choice -> bytes in a 20 ms frame
FRAME_MS = 20
MAX_PAGE_FRAME = 4096  # characters; a 20 ms PCM24 frame is ~1.3 KB
MAX_MARKS = 4096  # marks sent to the page and not echoed yet (a long answer is ~100)
BROWSER_CALL_SID = re.compile(r"^BR[0-9a-f]{32}\Z")
# Frames the page may send, a second's worth of burst (a busy tab catches up) over a rate
# a little above real time; more is dropped: a page cannot flood the model.
BUDGET_RATE, BUDGET_BURST = 1000 / FRAME_MS * 1.25, 1000 / FRAME_MS


def new_call_sid() -> str:
    """A browser call's CallSid: never a Twilio one ("CA..."), so nothing asks Twilio."""
    return "BR" + secrets.token_hex(16)


def new_stream_sid() -> str:
    return "MZ" + secrets.token_hex(16)


# --- tickets ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ticket:
    call_sid: str
    audio: str
    expires: int
    to: str = ""  # E.164: the number the call is placed to (its profile); "" the default


def _sig(password: Secret, body: str) -> str:
    key = hmac.new(password.get().encode(), b"softphone-ticket v1", hashlib.sha256).digest()
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


def issue_ticket(password: Secret, audio: str, now: float, to: str = "") -> tuple[Ticket, str]:
    """A ticket for one new browser call, and its text for the page's socket URL (a
    query value: quote it, `+` is a space there)."""
    if audio not in AUDIO:
        raise ValueError(f"audio must be one of {', '.join(AUDIO)}")
    if to and not E164.fullmatch(to):
        raise ValueError("the number to call as must be E.164, like +14155550100")
    ticket = Ticket(new_call_sid(), audio, int(now) + TICKET_TTL_S, to)
    body = f"{ticket.call_sid}.{ticket.audio}.{ticket.to}.{ticket.expires}"
    return ticket, f"{body}.{_sig(password, body)}"


def read_ticket(password: Secret, text: str, now: float) -> Ticket | None:
    """The ticket if `text` is one this console issued and it has not expired."""
    parts = text.split(".")
    if not password or len(parts) != 5:
        return None
    call_sid, audio, to, expires, sig = parts
    body = f"{call_sid}.{audio}.{to}.{expires}"
    if not hmac.compare_digest(_sig(password, body), sig):
        return None
    if not BROWSER_CALL_SID.match(call_sid) or audio not in AUDIO or not expires.isdigit():
        return None
    if to and not E164.fullmatch(to):
        return None
    return Ticket(call_sid, audio, int(expires), to) if int(expires) > now else None


@dataclass
class SpentTickets:
    """Each ticket opens one call: a copied URL cannot open a second socket."""

    spent: dict[str, int] = field(default_factory=dict)  # call_sid -> expiry

    def spend(self, ticket: Ticket, now: float) -> bool:
        for sid in [s for s, due in self.spent.items() if due <= now]:
            del self.spent[sid]
        if ticket.call_sid in self.spent:
            return False
        self.spent[ticket.call_sid] = ticket.expires
        return True


SPENT = SpentTickets()


# --- frames ----------------------------------------------------------------------------------

Base64 = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9+/]*={0,2}\Z")]
MarkName = Annotated[str, msgspec.Meta(pattern=r'^[^"\\\x00-\x1f]{1,128}\Z')]


class _Payload(msgspec.Struct, forbid_unknown_fields=True):
    payload: Base64


class _Name(msgspec.Struct, forbid_unknown_fields=True):
    name: MarkName


class _Digit(msgspec.Struct, forbid_unknown_fields=True):
    digit: Literal["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "#"]


class _PageFrame(msgspec.Struct, tag_field="event", forbid_unknown_fields=True):
    pass


class PageMedia(_PageFrame, tag="media"):
    media: _Payload


class PageMark(_PageFrame, tag="mark"):
    mark: _Name


class PageDtmf(_PageFrame, tag="dtmf"):
    dtmf: _Digit


class PageStop(_PageFrame, tag="stop"):
    pass


_page_decoder = msgspec.json.Decoder(PageMedia | PageMark | PageDtmf | PageStop)


class _RelayFrame(msgspec.Struct):
    """What the backend needs from a relay frame: its kind and a mark's name."""

    event: str
    mark: _Name | None = None


_relay_decoder = msgspec.json.Decoder(_RelayFrame)


class PageError(ValueError):
    """The page broke the protocol: the call ends (close 1008) with this reason."""


@dataclass
class FrameBudget:
    """A token bucket of media frames."""

    rate: float = BUDGET_RATE
    burst: float = BUDGET_BURST
    tokens: float = BUDGET_BURST
    at: float | None = None

    def take(self, now: float) -> bool:
        if self.at is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


def _b64_len(n_bytes: int) -> int:
    return -(-n_bytes // 3) * 4


@dataclass
class CallFrames:
    """One browser call's frames, both ways, with no I/O: Twilio's protocol to the relay."""

    ticket: Ticket
    stream_sid: str = field(default_factory=new_stream_sid)
    budget: FrameBudget = field(default_factory=FrameBudget)
    marks: OrderedDict[str, None] = field(default_factory=OrderedDict)  # sent, not echoed
    sequence: int = 1  # Twilio numbers every frame it sends; `start` is 1
    chunk: int = 0
    dropped: int = 0  # media frames over the budget
    stopped: bool = False

    def __post_init__(self) -> None:
        self._payload_len = _b64_len(AUDIO[self.ticket.audio])
        sid = self.stream_sid
        self._media_prefix = f'{{"event":"media","streamSid":"{sid}","sequenceNumber":"'

    def _next(self) -> str:
        self.sequence += 1
        return str(self.sequence)

    def opening(self) -> list[str]:
        """What Twilio sends first: `connected`, then `start` with the call's parameters."""
        sid = self.stream_sid
        start = {
            "accountSid": "",
            "streamSid": sid,
            "callSid": self.ticket.call_sid,
            "tracks": ["inbound"],
            "customParameters": (
                {"audio": self.ticket.audio, "to": self.ticket.to}
                if self.ticket.to
                else {"audio": self.ticket.audio}
            ),
            "mediaFormat": (
                {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
                if self.ticket.audio == "pcmu"
                else {"encoding": "audio/x-l16", "sampleRate": 24000, "channels": 1}
            ),
        }
        return [
            json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}),
            json.dumps({"event": "start", "sequenceNumber": "1", "start": start, "streamSid": sid}),
        ]

    def ready(self) -> str:
        """The page's first frame: the call is through to the relay."""
        t = self.ticket
        return json.dumps(
            {
                "event": "ready",
                "callSid": t.call_sid,
                "streamSid": self.stream_sid,
                "audio": t.audio,
            }
        )

    def from_page(self, text: str, now: float) -> str | None:
        """A page frame as the relay gets it, or None to drop it. Raises PageError."""
        if len(text) > MAX_PAGE_FRAME:
            raise PageError(f"frame over {MAX_PAGE_FRAME} characters")
        if self.stopped:
            return None
        try:
            frame = _page_decoder.decode(text)
        except msgspec.DecodeError as exc:
            raise PageError(f"bad frame: {exc}") from None
        sid = self.stream_sid
        if isinstance(frame, PageMedia):
            payload = frame.media.payload
            if len(payload) != self._payload_len:
                raise PageError(f"media must be {FRAME_MS} ms ({AUDIO[self.ticket.audio]} bytes)")
            if not self.budget.take(now):
                self.dropped += 1
                return None
            self.chunk += 1
            return (
                f'{self._media_prefix}{self._next()}","media":{{"track":"inbound","chunk":'
                f'"{self.chunk}","timestamp":"{(self.chunk - 1) * FRAME_MS}","payload":'
                f'"{payload}"}}}}'
            )
        if isinstance(frame, PageMark):
            name = frame.mark.name
            if name not in self.marks:
                return None  # not a mark the relay sent (or echoed twice): not forwarded
            del self.marks[name]
            mark = {"event": "mark", "sequenceNumber": self._next(), "streamSid": sid}
            return json.dumps({**mark, "mark": {"name": name}})
        if isinstance(frame, PageDtmf):
            dtmf = {"track": "inbound_track", "digit": frame.dtmf.digit}
            return json.dumps(
                {"event": "dtmf", "streamSid": sid, "sequenceNumber": self._next(), "dtmf": dtmf}
            )
        return self.stop()

    def stop(self) -> str:
        """Twilio's `stop`: the caller hung up (the page's button, or the page went away)."""
        self.stopped = True
        stop = {"accountSid": "", "callSid": self.ticket.call_sid}
        return json.dumps(
            {
                "event": "stop",
                "sequenceNumber": self._next(),
                "streamSid": self.stream_sid,
                "stop": stop,
            }
        )

    def from_relay(self, text: str) -> str:
        """A relay frame for the page (as is); remembers marks so their echoes can pass."""
        if '"mark"' in text:
            with contextlib.suppress(msgspec.DecodeError):
                frame = _relay_decoder.decode(text)
                if frame.event == "mark" and frame.mark is not None:
                    self.marks[frame.mark.name] = None
                    while len(self.marks) > MAX_MARKS:
                        self.marks.popitem(last=False)
        return text


# --- the pump --------------------------------------------------------------------------------


class PageSocket(Protocol):
    async def receive(self) -> str | None:
        """The next text frame; None once the page has gone. Raises PageError on binary."""

    async def send(self, text: str) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


def relay_refused(status: int) -> str:
    if status in (401, 403):
        return (
            "the relay refused the console token: set the same RELAY_CONSOLE_TOKEN for relay "
            "and console"
        )
    if status == 404:
        return "the relay has no /browser-call: update the relay"
    return f"the relay refused the call (HTTP {status})"


_GONE = (aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
CLOSE_REASON_WAIT_S = 1.0  # for the relay's close frame after a write to it failed


def _ended(reason: str) -> str:
    return json.dumps({"event": "ended", "reason": reason})


async def bridge_call(
    page: PageSocket,
    relay_url: str,
    token: Secret,
    ticket: Ticket,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """Carry one browser call until either side ends it; returns why it ended."""
    frames = CallFrames(ticket)
    headers = {"Authorization": f"Bearer {token.get()}"} if token else {}
    reason = "the call ended"
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(
                relay_url, headers=headers, heartbeat=20.0, max_msg_size=1 << 20
            ) as relay,
        ):
            for text in frames.opening():
                await relay.send_str(text)
            await page.send(frames.ready())
            log.info("browser call %s started (%s)", ticket.call_sid, ticket.audio)
            reason = await _pump(page, relay, frames, clock)
    except aiohttp.WSServerHandshakeError as exc:
        reason = relay_refused(exc.status)
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        reason = f"cannot reach the relay ({type(exc).__name__})"
    if frames.dropped:
        log.warning(
            "browser call %s: %d frames over budget dropped", ticket.call_sid, frames.dropped
        )
    log.info("browser call %s ended: %s", ticket.call_sid, reason)
    with contextlib.suppress(Exception):
        await page.send(_ended(reason))
    with contextlib.suppress(Exception):
        await page.close(1000, reason[:100])
    return reason


async def _pump(
    page: PageSocket,
    relay: aiohttp.ClientWebSocketResponse,
    frames: CallFrames,
    clock: Callable[[], float],
) -> str:
    """Move frames both ways until one side ends the call; returns why."""

    async def page_to_relay() -> tuple[bool, str]:
        try:
            while (text := await page.receive()) is not None:
                out = frames.from_page(text, clock())
                if out is not None:
                    await relay.send_str(out)
                if frames.stopped:
                    return True, "hung up"
        except PageError as exc:
            log.warning("browser call %s: %s", frames.ticket.call_sid, exc)
            return True, f"refused: {exc}"
        except (ConnectionError, RuntimeError, aiohttp.ClientError):
            return False, "the relay connection was lost"
        return True, "the page went away"

    async def relay_to_page() -> tuple[bool, str]:
        while True:
            msg = await relay.receive()
            if msg.type is aiohttp.WSMsgType.TEXT:
                try:
                    await page.send(frames.from_relay(msg.data))
                except Exception:  # the page's socket is gone (Starlette raises its own)
                    return True, "the page went away"
            elif msg.type is aiohttp.WSMsgType.CLOSE:
                return False, str(msg.extra or "") or f"the relay closed the call ({msg.data})"
            elif msg.type in _GONE:
                return False, "the relay connection was lost"

    page_side = asyncio.ensure_future(page_to_relay())
    relay_side = asyncio.ensure_future(relay_to_page())
    tasks = [page_side, relay_side]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if page_side.done() and not page_side.result()[0] and not relay_side.done():
            # A write failed because the relay is closing the call: its close frame, read
            # a moment later, says why (a console hang-up is not a lost connection).
            await asyncio.wait([relay_side], timeout=CLOSE_REASON_WAIT_S)
        page_ended = page_side.done() and page_side.result()[0]
        by_page, reason = (
            relay_side.result() if relay_side.done() and not page_ended else page_side.result()
        )
        if by_page:
            # The caller's side ended it: the relay hears Twilio's stop (the caller hung up).
            if not frames.stopped:
                with contextlib.suppress(Exception):
                    await relay.send_str(frames.stop())
            await relay.close()
        return reason
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# --- the Starlette route ----------------------------------------------------------------------


class StarlettePage:
    """The page's socket, as `bridge_call` sees it."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws

    async def receive(self) -> str | None:
        message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            return None
        text = message.get("text")
        if text is None:
            raise PageError("binary frame (the softphone sends JSON text)")
        return str(text)

    async def send(self, text: str) -> None:
        await self.ws.send_text(text)

    async def close(self, code: int, reason: str) -> None:
        await self.ws.close(code, reason)


async def softphone_socket(ws: WebSocket) -> None:
    """WS /_console/softphone?ticket=...: refused before the upgrade without a valid ticket."""
    settings = console_settings.get()
    now = time.time()
    ticket = read_ticket(settings.password, ws.query_params.get("ticket", ""), now)
    if ticket is None or not SPENT.spend(ticket, now):
        log.warning("refused a softphone socket: no valid, unused ticket")
        await ws.close(code=1008)  # before accept: the client sees HTTP 403
        return
    await ws.accept()
    await bridge_call(StarlettePage(ws), settings.browser_call_url, settings.console_token, ticket)


routes = [WebSocketRoute(PATH, softphone_socket)]
