"""A simulated phone caller that speaks Twilio Media Streams to a relay.

It does what Twilio does: signs the upgrade, sends `connected`, `start`, then one
20 ms `media` frame per 20 ms of real time (absolute deadlines, so no drift), plays the
relay's audio in real time and echoes marks when playback passes them (at once when
idle, all pending ones on `clear`). What the caller actually heard is recorded in a
`CallRecord`: the ground truth that tests compare with the relay's own bookkeeping.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import logging
import secrets
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import msgspec
from twilio.request_validator import RequestValidator

from shared import twilio as tw
from shared.audio import FRAME_BYTES, FRAME_MS, silence_mulaw, tone_mulaw

from .playback import Playback

log = logging.getLogger("relay.sim.caller")

FRAME_S = FRAME_MS / 1000
QUIET_S = 0.3  # WaitForAssistantDone: no audio for this long and nothing buffered
_SILENCE_B64 = binascii.b2a_base64(silence_mulaw(FRAME_MS), newline=False).decode()
_dict_decoder = msgspec.json.Decoder(dict[str, object])
_OUT_KEYS = {
    "media": ({"event", "streamSid", "media"}, {"payload"}),
    "mark": ({"event", "streamSid", "mark"}, {"name"}),
    "clear": ({"event", "streamSid"}, set()),
}


def new_sid(prefix: str) -> str:
    """A Twilio SID: two letters and 32 hex digits."""
    return prefix + secrets.token_hex(16)


# --- the script of a call ------------------------------------------------------------


@dataclass(frozen=True)
class Speak:
    """The caller talks for `ms` (a tone: energy the model's VAD detects)."""

    ms: int
    freq: float = 440.0


@dataclass(frozen=True)
class Silence:
    ms: int


@dataclass(frozen=True)
class Dtmf:
    digit: str


@dataclass(frozen=True)
class WaitForAssistant:
    """Until at least `min_heard_ms` (and more than 0 ms) of new assistant audio has PLAYED."""

    min_heard_ms: int = 0
    timeout: float = 10.0


@dataclass(frozen=True)
class WaitForAssistantDone:
    """Until the playback buffer is empty and no audio arrived for ~300 ms."""

    timeout: float = 15.0


@dataclass(frozen=True)
class Hangup:
    pass


Step = Speak | Silence | Dtmf | WaitForAssistant | WaitForAssistantDone | Hangup


def barge_in(heard_ms: int = 700, speak_ms: int = 600, pause_ms: int = 400) -> list[Step]:
    """Ask, interrupt the answer once `heard_ms` of it has played, then hear the next one."""
    return [
        Speak(ms=speak_ms),
        Silence(ms=pause_ms),
        WaitForAssistant(min_heard_ms=heard_ms, timeout=10.0),
        Speak(ms=500),
        Silence(ms=pause_ms),
        WaitForAssistantDone(timeout=15.0),
    ]


def one_turn(speak_ms: int = 600, pause_ms: int = 400, wait_s: float = 8.0) -> list[Step]:
    """Say something, then listen to the whole answer: the usual building block of a call."""
    return [
        Speak(ms=speak_ms),
        Silence(ms=pause_ms),
        WaitForAssistant(timeout=wait_s),
        WaitForAssistantDone(timeout=10.0),
    ]


TURN_S = 6.0  # roughly one caller turn plus the answer, with the default script
ANSWER_WAIT_S = 45.0  # a console-answered tool may keep the assistant quiet this long


def conversation(seconds: float, *, interrupt_first: bool = True) -> list[Step]:
    """A demo call of about `seconds`: hear any greeting, then a turn every ~6 s (the first
    one talks over the answer), then hang up.

    The waits for an answer are long on purpose: the default script calls a tool that
    waits for a console to answer it (up to the relay's RELAY_CONSOLE_TOOL_TIMEOUT_S), and a
    caller keeps holding the line meanwhile, as a person would.
    """
    steps: list[Step] = [WaitForAssistantDone(timeout=8.0)]
    turns = max(1, round(seconds / TURN_S))
    if interrupt_first:
        steps += barge_in(heard_ms=800, speak_ms=1200, pause_ms=600)[:-1]
        steps.append(WaitForAssistantDone(timeout=ANSWER_WAIT_S))
        turns -= 1
    for _ in range(turns):
        steps += [
            Speak(ms=1200),
            Silence(ms=600),
            WaitForAssistant(timeout=ANSWER_WAIT_S),
            WaitForAssistantDone(timeout=ANSWER_WAIT_S),
        ]
    steps.append(Hangup())
    return steps


# --- what happened ---------------------------------------------------------------------


@dataclass
class ClearRecord:
    at_s: float  # seconds since the call started
    item_id: str  # the item playing (or last played) when the clear arrived; "" if none
    played_ms: float  # how much of that item had been played: compare with truncate audio_end_ms
    playing: bool  # whether audio was still playing at that moment
    flushed_marks: list[str] = field(default_factory=list)


@dataclass
class Turn:
    speech_end_s: float
    first_audio_s: float | None = None  # when the first assistant audio after it started playing

    @property
    def latency_ms(self) -> float | None:
        if self.first_audio_s is None:
            return None
        return 1000 * (self.first_audio_s - self.speech_end_s)


@dataclass
class CallRecord:
    call_sid: str
    stream_sid: str
    account_sid: str
    custom_parameters: dict[str, str] = field(default_factory=dict)
    heard_ms: dict[str, float] = field(default_factory=dict)  # item id -> ms actually played
    clears: list[ClearRecord] = field(default_factory=list)
    marks_received: list[str] = field(default_factory=list)
    marks_echoed: list[str] = field(default_factory=list)
    frames_sent: int = 0
    media_received: int = 0
    bytes_received: int = 0
    dtmf_sent: list[str] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    protocol_errors: list[str] = field(default_factory=list)  # relay broke the Twilio protocol
    failures: list[str] = field(default_factory=list)  # the call did not go as scripted
    # The relay hung up normally (close 1000) before the script was done: the console's
    # Hang up, the agent's end_call, a transfer. A normal end of a call, not a failure.
    ended_by_relay: str = ""
    closed_by: str = ""  # "caller" or "relay"
    close_code: int | None = None
    duration_s: float = 0.0
    twiml: str = ""

    @property
    def ok(self) -> bool:
        return not self.protocol_errors and not self.failures

    @property
    def latencies_ms(self) -> list[float | None]:
        return [t.latency_ms for t in self.turns]

    @property
    def total_heard_ms(self) -> float:
        return sum(self.heard_ms.values())

    def summary(self) -> str:
        heard = ", ".join(f"{k}: {v:.0f} ms" for k, v in self.heard_ms.items()) or "nothing"
        lat = ", ".join("-" if x is None else f"{x:.0f} ms" for x in self.latencies_ms) or "-"
        clears = ", ".join(f"{c.item_id or '?'}@{c.played_ms:.0f} ms" for c in self.clears) or "-"
        lines = [
            f"call {self.call_sid}: {'ok' if self.ok else 'FAILED'} in {self.duration_s:.1f} s"
            f" (closed by {self.closed_by or '?'}, code {self.close_code})",
            f"  heard: {heard}",
            f"  marks echoed: {len(self.marks_echoed)}/{len(self.marks_received)};"
            f" media received: {self.media_received}; frames sent: {self.frames_sent}",
            f"  clears: {clears}",
            f"  turn latency: {lat}",
        ]
        if self.ended_by_relay:
            lines.append(f"  {self.ended_by_relay}")
        lines += [f"  protocol error: {e}" for e in self.protocol_errors]
        lines += [f"  failure: {e}" for e in self.failures]
        return "\n".join(lines)


# --- the caller -----------------------------------------------------------------------


def _wss(url: str) -> str:
    parts = urlsplit(url)
    scheme = {"ws": "wss", "http": "wss", "https": "wss"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path, parts.query, ""))


def _frames(audio: bytes) -> list[str]:
    return [
        binascii.b2a_base64(audio[i : i + FRAME_BYTES], newline=False).decode()
        for i in range(0, len(audio) - FRAME_BYTES + 1, FRAME_BYTES)
    ]


class SimCaller:
    """One Media Streams connection to `url` (ws:// or wss://), driven by steps."""

    def __init__(
        self,
        url: str,
        *,
        auth_token: str | None = None,
        signed_url: str | None = None,
        custom_parameters: dict[str, str] | None = None,
        call_sid: str | None = None,
        account_sid: str | None = None,
        gaps: bool = False,
        http: aiohttp.ClientSession | None = None,
    ) -> None:
        self.url = url
        self.signed_url = signed_url or _wss(url)
        self.auth_token = auth_token
        self.gaps = gaps
        self.record = CallRecord(
            call_sid=call_sid or new_sid("CA"),
            stream_sid=new_sid("MZ"),
            account_sid=account_sid or new_sid("AC"),
            custom_parameters=dict(custom_parameters or {}),
        )
        self.playback = Playback()
        self._http = http
        self._own_http = http is None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._loop = asyncio.get_running_loop()
        self._t0 = 0.0
        self._seq = 0
        self._chunk = 0
        self._frame_index = 0  # 20 ms ticks since the stream started (sent or skipped)
        self._speech: deque[str] = deque()
        self._speech_queued = 0
        self._speech_sent = 0
        self._send_lock = asyncio.Lock()
        self._tick = asyncio.Event()
        self._mark_wakeup = asyncio.Event()
        self._ended = asyncio.Event()  # the socket is gone (either side)
        self._tasks: list[asyncio.Task[None]] = []
        self._hung_up = False
        self._tone_cache: dict[tuple[int, float], list[str]] = {}

    # --- live inspection ------------------------------------------------------------

    def now(self) -> float:
        """Seconds since the call started."""
        return self._loop.time() - self._t0

    def played_ms(self) -> float:
        return 1000 * self.playback.played_s(self._loop.time())

    def buffered_ms(self) -> float:
        return 1000 * self.playback.buffered_s(self._loop.time())

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    # --- lifecycle ------------------------------------------------------------------

    async def __aenter__(self) -> SimCaller:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.hangup()

    async def connect(self) -> None:
        """Open the stream socket and send `connected` and `start`; frames start flowing."""
        if self._http is None:
            self._http = aiohttp.ClientSession()
        headers = {}
        if self.auth_token:
            validator = RequestValidator(self.auth_token)
            headers["X-Twilio-Signature"] = validator.compute_signature(self.signed_url, {})
        try:
            self._ws = await self._http.ws_connect(self.url, headers=headers, autoping=True)
        except BaseException:
            await self._close_http()
            raise
        self._t0 = self._loop.time()
        rec = self.record
        await self._send_raw(tw.encode(tw.Connected()))
        start = tw.StartInfo(
            streamSid=rec.stream_sid,
            callSid=rec.call_sid,
            accountSid=rec.account_sid,
            tracks=["inbound"],
            customParameters=rec.custom_parameters,
        )
        await self._send(tw.Start(start=start, streamSid=rec.stream_sid))
        self._tasks = [
            asyncio.create_task(self._read()),
            asyncio.create_task(self._pump_frames()),
            asyncio.create_task(self._pump_marks()),
        ]

    async def run(self, steps: Sequence[Step]) -> CallRecord:
        """Connect, run the steps, hang up; failures are recorded, not raised."""
        try:
            await self.connect()
        except aiohttp.WSServerHandshakeError as exc:
            self.record.failures.append(f"stream upgrade refused: HTTP {exc.status}")
            return self.record
        except (aiohttp.ClientError, OSError) as exc:
            self.record.failures.append(f"stream connect failed: {exc!r}")
            return self.record
        cut_short = ""
        try:
            for i, step in enumerate(steps):
                if isinstance(step, Hangup):
                    break
                nxt = steps[i + 1] if i + 1 < len(steps) else None
                await self.do(step, turn_ends=not isinstance(nxt, Speak))
                if self.ended:
                    left = [s for s in steps[i:] if not isinstance(s, Hangup)]
                    cut_short = f"during {type(step).__name__} with {len(left)} step(s) not done"
                    break
        finally:
            await self.hangup()
        if cut_short:
            self._relay_ended(cut_short)
        return self.record

    def _relay_ended(self, when: str) -> None:
        """The relay closed the stream first: a hang-up (1000) or a failure (anything else).

        Twilio ends a <Connect><Stream> call when the stream closes normally, so that is how
        the relay hangs up; a dropped connection or an error code is not a hang-up.
        """
        code = self.record.close_code
        if code == 1000:
            self.record.ended_by_relay = f"the relay ended the call {when} (close 1000)"
        else:
            self.record.failures.append(f"the relay closed the stream (code {code}) {when}")

    async def do(self, step: Step, *, turn_ends: bool = True) -> bool:
        """Run one step; False if a wait timed out or the stream ended."""
        if isinstance(step, Speak):
            return await self.speak(step.ms, step.freq, turn_ends=turn_ends)
        if isinstance(step, Silence):
            return await self.silence(step.ms)
        if isinstance(step, Dtmf):
            await self.dtmf(step.digit)
            return True
        if isinstance(step, WaitForAssistant):
            return await self.wait_for_assistant(step.min_heard_ms, step.timeout)
        if isinstance(step, WaitForAssistantDone):
            return await self.wait_for_assistant_done(step.timeout)
        await self.hangup()
        return True

    async def speak(self, ms: int, freq: float = 440.0, *, turn_ends: bool = True) -> bool:
        key = (ms, freq)
        frames = self._tone_cache.get(key)
        if frames is None:
            frames = self._tone_cache[key] = _frames(tone_mulaw(ms, freq))
        self._speech.extend(frames)
        self._speech_queued += len(frames)
        target = self._speech_queued
        ok = await self._until(lambda: self._speech_sent >= target, None)
        if ok and turn_ends:
            self.record.turns.append(Turn(speech_end_s=self.now()))
        return ok

    async def silence(self, ms: int) -> bool:
        target = self._frame_index + ms // FRAME_MS
        return await self._until(lambda: self._frame_index >= target, None)

    async def dtmf(self, digit: str) -> None:
        sid = self.record.stream_sid
        info = tw.DtmfInfo(digit=digit)
        await self._send(tw.Dtmf(dtmf=info, streamSid=sid))
        self.record.dtmf_sent.append(digit)

    async def wait_for_assistant(self, min_heard_ms: int = 0, timeout: float = 10.0) -> bool:
        base = self.played_ms()

        def heard() -> bool:
            new = self.played_ms() - base
            return new > 0 and new >= min_heard_ms

        ok = await self._until(heard, timeout)
        if not ok and not self.ended:
            self.record.failures.append(
                f"WaitForAssistant({min_heard_ms} ms): heard {self.played_ms() - base:.0f} ms "
                f"in {timeout} s"
            )
        return ok

    async def wait_for_assistant_done(self, timeout: float = 15.0) -> bool:
        since = self._loop.time()

        def done() -> bool:
            now = self._loop.time()
            quiet = now - max(self.playback.last_media_at, since) >= QUIET_S
            return quiet and self.playback.buffered_s(now) <= 0

        ok = await self._until(done, timeout)
        if not ok and not self.ended:
            self.record.failures.append(f"WaitForAssistantDone: still playing after {timeout} s")
        return ok

    async def hangup(self) -> CallRecord:
        """Send `stop`, close the socket, and finish the record. Safe to call twice."""
        if self._hung_up:
            return self.record
        self._hung_up = True
        rec = self.record
        ws = self._ws
        if ws is not None and not ws.closed and not self.ended:
            rec.closed_by = "caller"
            stop = tw.StopInfo(accountSid=rec.account_sid, callSid=rec.call_sid)
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self._send(tw.Stop(streamSid=rec.stream_sid, stop=stop))
            with contextlib.suppress(Exception):
                await ws.close()
        elif self._tasks and not self._tasks[0].done():
            # The relay closed first: let the reader take the close frame, for its code.
            await asyncio.wait(self._tasks[:1], timeout=1.0)
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
        if ws is not None:
            rec.close_code = ws.close_code
        end = self._loop.time()
        self.playback.finish()
        rec.heard_ms = self.playback.heard_ms(end)
        rec.duration_s = end - self._t0 if self._t0 else 0.0
        await self._close_http()
        return rec

    async def _close_http(self) -> None:
        if self._own_http and self._http is not None:
            await self._http.close()
            self._http = None

    # --- sending ----------------------------------------------------------------------

    async def _send_raw(self, data: bytes) -> None:
        assert self._ws is not None
        async with self._send_lock:
            await self._ws.send_str(data.decode())

    async def _send(self, msg: tw.Start | tw.Media | tw.Mark | tw.Dtmf | tw.Stop) -> None:
        """Send a message with the next sequenceNumber (one counter across all types)."""
        assert self._ws is not None
        async with self._send_lock:
            self._seq += 1
            msg.sequenceNumber = str(self._seq)
            await self._ws.send_str(tw.encode(msg).decode())

    async def _pump_frames(self) -> None:
        sid = self.record.stream_sid
        try:
            while True:
                due = self._t0 + (self._frame_index + 1) * FRAME_S
                delay = due - self._loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                speech = bool(self._speech)
                payload = self._speech.popleft() if speech else _SILENCE_B64
                self._frame_index += 1
                if speech or not self.gaps:
                    self._chunk += 1
                    info = tw.MediaInfo(
                        payload=payload,
                        track="inbound",
                        chunk=str(self._chunk),
                        timestamp=str(self._frame_index * FRAME_MS),
                    )
                    await self._send(tw.Media(media=info, streamSid=sid))
                    self.record.frames_sent += 1
                if speech:
                    self._speech_sent += 1
                self._bump()
        except (ConnectionError, RuntimeError) as exc:
            log.debug("frame pump stopped: %s", exc)
            self._end("relay")

    def _bump(self) -> None:
        self._tick.set()
        self._tick = asyncio.Event()

    async def _until(self, pred: Callable[[], bool], timeout: float | None) -> bool:
        """Wait (checking every frame tick) until pred() holds; False on timeout or hang-up."""
        try:
            async with asyncio.timeout(timeout):
                while not pred():
                    if self.ended:
                        return False
                    await self._tick.wait()  # set every frame, and when the stream ends
                return True
        except TimeoutError:
            return pred()

    def _end(self, by: str) -> None:
        if not self._ended.is_set():
            if not self.record.closed_by:
                self.record.closed_by = by
            self._ended.set()
            self._bump()

    # --- receiving --------------------------------------------------------------------

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for msg in self._ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    await self._on_outbound(msg.data)
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    self.record.protocol_errors.append("binary frame (Twilio expects JSON text)")
                else:
                    break
        except (ConnectionError, RuntimeError) as exc:
            log.debug("reader stopped: %s", exc)
        finally:
            self.record.close_code = self._ws.close_code
            self._end("relay")

    async def _on_outbound(self, data: str) -> None:
        rec = self.record
        now = self._loop.time()
        try:
            raw = _dict_decoder.decode(data)
            msg = tw.decode_outbound(data)
        except msgspec.MsgspecError as exc:
            rec.protocol_errors.append(f"invalid message ({exc}): {data[:120]}")
            return
        event = str(raw.get("event"))
        top, inner = _OUT_KEYS[event]
        body = raw.get(event)
        extra = set(raw) - top | (set(body) - inner if isinstance(body, dict) else set())
        if extra:
            rec.protocol_errors.append(f"{event} with unexpected fields {sorted(extra)}")
        if msg.streamSid != rec.stream_sid:
            rec.protocol_errors.append(f"{event} for streamSid {msg.streamSid!r}")
            return
        if isinstance(msg, tw.OutMedia):
            try:
                audio = binascii.a2b_base64(msg.media.payload)
            except binascii.Error:
                rec.protocol_errors.append("media payload is not base64")
                return
            rec.media_received += 1
            rec.bytes_received += len(audio)
            seg = self.playback.add_media(now, len(audio))
            if rec.turns and rec.turns[-1].first_audio_s is None:
                rec.turns[-1].first_audio_s = seg.start - self._t0
        elif isinstance(msg, tw.OutMark):
            rec.marks_received.append(msg.mark.name)
            if self.playback.add_mark(now, msg.mark.name):
                await self._echo(msg.mark.name)
            else:
                self._mark_wakeup.set()
        else:
            flushed, item, played_s, playing = self.playback.clear(now)
            rec.clears.append(ClearRecord(now - self._t0, item, 1000 * played_s, playing, flushed))
            for name in flushed:
                await self._echo(name)
            self._mark_wakeup.set()

    async def _echo(self, name: str) -> None:
        sid = self.record.stream_sid
        info = tw.MarkInfo(name=name)
        await self._send(tw.Mark(mark=info, streamSid=sid))
        self.record.marks_echoed.append(name)

    async def _pump_marks(self) -> None:
        """Echo each pending mark when playback reaches it."""
        try:
            while True:
                due = self.playback.next_due()
                if due is None:
                    await self._mark_wakeup.wait()
                    self._mark_wakeup.clear()
                    continue
                delay = due - self._loop.time()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._mark_wakeup.wait(), delay)
                    self._mark_wakeup.clear()
                    continue
                for name in self.playback.due(self._loop.time()):
                    await self._echo(name)
        except (ConnectionError, RuntimeError) as exc:
            log.debug("mark pump stopped: %s", exc)


# --- the whole Twilio flow against a relay ----------------------------------------------


def parse_twiml(twiml: str) -> tuple[str, dict[str, str]]:
    """`<Connect><Stream url>` and its `<Parameter>`s; ValueError if there is none."""
    try:
        root = ET.fromstring(twiml)
    except ET.ParseError as exc:
        raise ValueError(f"TwiML is not XML: {exc}") from None
    stream = root.find("./Connect/Stream")
    if stream is None or not stream.get("url"):
        raise ValueError("no <Connect><Stream url=...> in the TwiML")
    params = {
        p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter") if p.get("name")
    }
    return stream.get("url", ""), params


async def place_call(
    base_url: str,
    *,
    steps: Sequence[Step],
    auth_token: str | None = None,
    from_: str = "+15550001111",
    to: str = "+15550002222",
    call_sid: str | None = None,
    gaps: bool = False,
) -> CallRecord:
    """Ring the relay like Twilio: POST /twiml, then open the stream the TwiML names."""
    base = base_url.rstrip("/")
    call_sid = call_sid or new_sid("CA")
    account_sid = new_sid("AC")
    params = {
        "CallSid": call_sid,
        "AccountSid": account_sid,
        "From": from_,
        "To": to,
        "Caller": from_,
        "Called": to,
        "Direction": "inbound",
        "CallStatus": "ringing",
        "ApiVersion": "2010-04-01",
    }
    record = CallRecord(call_sid=call_sid, stream_sid="", account_sid=account_sid)
    webhook = f"{base}/twiml"
    headers = {}
    if auth_token:
        headers["X-Twilio-Signature"] = RequestValidator(auth_token).compute_signature(
            webhook, params
        )
    async with aiohttp.ClientSession() as http:
        try:
            async with http.post(webhook, data=params, headers=headers) as resp:
                twiml = await resp.text()
                status = resp.status
        except (aiohttp.ClientError, OSError) as exc:
            record.failures.append(f"POST {webhook} failed: {exc!r}")
            return record
        record.twiml = twiml
        if status != 200:
            record.failures.append(f"POST {webhook}: HTTP {status}: {twiml[:200]}")
            return record
        try:
            stream_url, custom = parse_twiml(twiml)
        except ValueError as exc:
            record.failures.append(str(exc))
            return record
        base_parts = urlsplit(base)
        stream_parts = urlsplit(stream_url)
        if not stream_parts.scheme:  # relative: Twilio resolves it against the webhook
            stream_url = urlunsplit(("wss", base_parts.netloc, stream_parts.path, "", ""))
            stream_parts = urlsplit(stream_url)
        ws_scheme = "wss" if base_parts.scheme == "https" else "ws"
        ws_url = urlunsplit((ws_scheme, base_parts.netloc, stream_parts.path, "", ""))
        caller = SimCaller(
            ws_url,
            auth_token=auth_token,
            signed_url=stream_url,
            custom_parameters=custom,
            call_sid=call_sid,
            account_sid=account_sid,
            gaps=gaps,
            http=http,
        )
        result = await caller.run(steps)
        result.twiml = twiml
        return result
