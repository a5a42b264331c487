"""The relay feed for one browser session: calls, the selected call's transcript, function
calls, latency and usage. The socket and the call book live here in the backend process
(module dicts keyed by the client token); the page gets plain rows."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from typing import Any

import reflex as rx
from reflex_base.event import EventSpec

from console import recording
from console import settings as console_settings
from console.calls import CallBook, CallLog
from console.checklist import FeedStatus
from console.feed import FeedOffline, RelayFeed, put_dropping_oldest
from console.hangup import hang_up
from console.messages import command_done, command_failed, relay_problem
from console.outbound import twilio_unavailable
from console.phone import mask
from console.state.auth import AuthState
from console.twilio_service import TwilioError, twilio

FEEDS: dict[str, RelayFeed] = {}
BOOKS: dict[str, CallBook] = {}
QUEUES: dict[str, asyncio.Queue[dict[str, Any]]] = {}
TASKS: set[asyncio.Task[None]] = set()
_log = logging.getLogger("console.feed")
GONE_AFTER_S = 60.0  # stop a feed whose browser has been gone this long
QUEUE_MAX = 20000  # events waiting for one browser's loop
PROGRESS_MAX = 10000  # beyond this backlog, audio.progress (only a position) is skipped
NOTICE_S, NOTICE_ERROR_S = 10.0, 30.0  # how long the top bar keeps a notice
SIM_CALL_S = 60  # long enough to answer a tool, apply a setting or hang up meanwhile


def forget(token: str, queue: asyncio.Queue[dict[str, Any]] | None = None) -> None:
    """A browser's feed stopped: drop its socket, its call book and its queue (if still its)."""
    FEEDS.pop(token, None)
    BOOKS.pop(token, None)
    if queue is None or QUEUES.get(token) is queue:
        QUEUES.pop(token, None)


class Inbox:
    """One browser's events on their way to its loop. Never raises: a full queue (the loop
    stuck for a while) drops events rather than killing the relay feed that delivers them,
    and says so in the log."""

    def __init__(self, token: str, maxsize: int = QUEUE_MAX) -> None:
        self.token = token
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=maxsize)
        self.dropped = 0

    def event(self, ev: dict[str, Any]) -> None:
        if ev.get("type") == "audio.progress" and self.queue.qsize() >= PROGRESS_MAX:
            return  # a playback position; the next one says as much
        try:
            self.queue.put_nowait(ev)
        except asyncio.QueueFull:
            self._dropped(1)

    def status(self, online: bool, why: str, reachable: bool) -> None:
        # The newest status is what matters: it goes in, the oldest events make room.
        event = {"type": "_status", "online": online, "why": why, "reachable": reachable}
        self._dropped(put_dropping_oldest(self.queue, event))

    def _dropped(self, n: int) -> None:
        if n <= 0:
            return
        before, self.dropped = self.dropped, self.dropped + n
        if before // 1000 != self.dropped // 1000 or before == 0:
            _log.warning(
                "console feed for browser %s…: its queue is full (the page stopped taking "
                "updates?); %d relay event(s) dropped so far",
                self.token[:8],
                self.dropped,
            )


def broadcast(event: dict[str, Any]) -> None:
    """Hand a console-made event (e.g. a recording started) to every browser's feed loop."""
    for queue in QUEUES.values():
        with contextlib.suppress(asyncio.QueueFull):
            queue.put_nowait(event)


def recording_event(rec: recording.CallRecording) -> dict[str, Any]:
    return {
        "type": "_recording",
        "call_sid": rec.call_sid,
        "line": rec.describe(),
        "ts": time.time(),
    }


async def _record(call_sid: str, check_existing: bool) -> None:
    """Start the automatic recording of a call this feed claimed; tell every browser."""
    settings = console_settings.get()
    try:
        async with twilio(settings) as tw:
            rec = await recording.start(
                recording.RECORDER, tw, call_sid, check_existing=check_existing
            )
    except TwilioError as exc:  # not configured after all
        rec = _failed(call_sid, str(exc))
    except Exception as exc:  # a bug here must not leave the call "starting" forever
        _log.exception("automatic recording of %s", call_sid)
        rec = _failed(call_sid, f"unexpected {exc.__class__.__name__}")
    broadcast(recording_event(rec))
    if rec.recording_sid:
        from console.state.twilio import note_recording

        await note_recording(rec)


def _failed(call_sid: str, why: str) -> recording.CallRecording:
    claimed = recording.RECORDER.get(call_sid) or recording.CallRecording(call_sid, auto=True)
    rec = dataclasses.replace(claimed, status="failed", error=why)
    recording.RECORDER.put(rec)
    return rec


def _spawn(coro: Any) -> None:
    task: asyncio.Task[None] = asyncio.ensure_future(coro)
    TASKS.add(task)
    task.add_done_callback(TASKS.discard)


async def send_command(token: str, command: dict[str, Any]) -> str:
    """Send one command on this browser session's feed; returns "" or why it was not sent."""
    feed = FEEDS.get(token)
    if feed is None:
        return "relay offline: the command was not sent"
    try:
        await feed.send(command)
    except (FeedOffline, ValueError) as exc:
        return str(exc)
    return ""


def _client_connected(token: str) -> bool:
    from console.app import app  # late: the app module imports this one

    ns = app.event_namespace
    return ns is None or token in ns.token_to_sid


def _time(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts)) if ts else ""


def _label(log: CallLog) -> str:
    if log.browser:
        return "browser call"
    return mask(log.from_) if log.from_.startswith("+") else (log.from_ or "caller")


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.0f} ms"


def _call_row(log: CallLog) -> dict[str, str]:
    return {
        "sid": log.call_sid,
        "label": _label(log),
        "to": log.to,
        "state": log.state,
        "started": _time(log.started_at),
        "live": "1" if log.live else "",
        "reason": log.end_reason,
        "direction": log.direction,
    }


class FeedState(AuthState):
    online: bool = False
    feed_tried: bool = False  # a first connection attempt has finished
    reachable: bool = False  # the relay answered the last attempt (even if it refused)
    offline_reason: str = "connecting to the relay…"
    simulator: bool = False
    relay_version: str = ""
    twilio_note: str = ""  # why outbound calls and recordings are off ("" = available)
    calls: list[dict[str, str]] = []
    selected: str = ""
    auto_selected: bool = True  # the console picked the call, not the user
    follow: bool = False  # show every new call as it starts
    new_call: str = ""  # a call that started while the user reads another one
    new_call_label: str = ""
    call_state: str = ""
    call_end_reason: str = ""
    call_seen_live: bool = True
    lines: list[dict[str, str]] = []
    functions: list[dict[str, str]] = []
    latency: list[dict[str, int]] = []
    latency_last: str = ""  # "" until the first turn: there is nothing to show yet
    latency_p50: str = ""
    latency_p95: str = ""
    usage: dict[str, str] = {}  # token counts as text; empty until a response is done
    applied_session: str = ""
    call_error: str = ""
    notice: str = ""
    notice_error: bool = False
    notice_at: float = 0.0  # notices go away after a while: an old one would mislead
    default_session_json: str = ""
    default_greeting: str = ""
    backend_tools_json: str = "[]"
    recording_text: str = ""
    recording_error: bool = False
    recording_note: str = ""  # why the selected call cannot be recorded ("" = it can)
    softphone_sid: str = ""  # the call this page placed with its softphone, if any
    model_status: dict[str, str] = {}  # the relay's ModelStatus: {status, detail}

    @rx.var
    def selected_live(self) -> bool:
        return self.call_state not in ("", "ended")

    @rx.var
    def relay_down(self) -> bool:
        """Offline after trying (not while the first connection is still being made)."""
        return self.feed_tried and not self.online

    # --- the feed loop -----------------------------------------------------------------

    @rx.event(background=True)
    async def start_feed(self) -> None:
        async with self:
            if not self.authed():
                return
            token = self.router.session.client_token
            if token in FEEDS:
                self._refresh()
                return
            settings = console_settings.get()
            feed = RelayFeed(settings.logs_url, settings.console_token)
            FEEDS[token] = feed
            BOOKS.setdefault(token, CallBook())
        inbox = Inbox(token)
        queue = QUEUES[token] = inbox.queue

        async def on_event(ev: dict[str, Any]) -> None:
            inbox.event(ev)

        async def on_status(online: bool, why: str) -> None:
            inbox.status(online, why, feed.reachable)

        runner = asyncio.create_task(feed.run(on_event, on_status))
        gone_since: float | None = None
        try:
            while True:
                try:
                    first = await asyncio.wait_for(queue.get(), 5.0)
                except TimeoutError:
                    if _client_connected(token):
                        gone_since = None
                    elif gone_since is None:
                        gone_since = time.monotonic()
                    elif time.monotonic() - gone_since > GONE_AFTER_S:
                        return
                    continue
                batch = [first]
                while not queue.empty():
                    batch.append(queue.get_nowait())
                async with self:
                    to_record = await self._apply(batch)
                for sid, check_existing in to_record:
                    _spawn(_record(sid, check_existing))
                # Coalesce bursts (audio.progress, deltas) into one update every ~50 ms.
                await asyncio.sleep(0.05)
        finally:
            feed.stop()
            forget(token, queue)
            await asyncio.gather(runner, return_exceptions=True)

    async def _apply(self, batch: list[dict[str, Any]]) -> list[tuple[str, bool]]:
        """Fold a batch of events in; returns the calls this feed should start recording."""
        book = BOOKS.setdefault(self.router.session.client_token, CallBook())
        to_record: list[tuple[str, bool]] = []
        checklist_changed = False
        for ev in batch:
            kind = ev.get("type")
            if kind == "_status":
                self.online = bool(ev["online"])
                self.offline_reason = str(ev["why"])
                self.reachable = bool(ev.get("reachable"))
                self.feed_tried = True
                checklist_changed = True
            elif kind == "_recording":
                log = book.calls.get(str(ev.get("call_sid")))
                if log is not None:
                    log.note("recording", str(ev.get("line") or ""), float(ev.get("ts") or 0.0))
            elif kind == "relay.hello":
                book.hello(list(ev.get("calls") or []), list(ev.get("ended") or []))
                self.simulator = bool(ev.get("simulator"))
                self.twilio_note = twilio_unavailable(
                    console_settings.get().twilio_configured, self.simulator
                )
                self.relay_version = str(ev.get("version") or "")
                self._model(ev.get("model"))
                self.backend_tools_json = json.dumps(ev.get("tools") or [])
                self.default_greeting = str(ev.get("greeting") or "")
                await self._new_default(ev.get("default_session") or {}, first=True)
                # Calls already live when this console connected: record them too, unless
                # a recording is already running (a previous console process may have one).
                to_record += [(c.call_sid, True) for c in book.ordered() if self._records(c)]
                checklist_changed = True
            elif kind == "model.status":
                self._model(ev)
                checklist_changed = True
            elif kind == "session.default":
                self.default_greeting = str(ev.get("greeting") or "")
                await self._new_default(ev.get("session") or {}, first=False)
            elif kind == "error" and not ev.get("call_sid"):
                self._notify(
                    relay_problem(str(ev.get("source") or ""), str(ev.get("message"))), True
                )
            elif kind in ("command.ok", "command.error"):
                await self._command_result(kind == "command.ok", ev)
            else:
                log = book.apply(ev)
                if kind == "call.started" and log is not None:
                    self._started(book, log)
                    if self._records(log):
                        to_record.append((log.call_sid, False))
                checklist_changed |= kind in ("call.started", "call.ended")
        book.prune(keep=self.selected)
        if not self.selected and book.calls:
            self._select(book.ordered()[0].call_sid, auto=True)
        self._refresh()
        if checklist_changed:
            await self._checklist_live(book)
        return to_record

    def _model(self, status: Any) -> None:
        if isinstance(status, dict):
            self.model_status = {
                "status": str(status.get("status") or "unknown"),
                "detail": str(status.get("detail") or ""),
            }

    def _started(self, book: CallBook, log: CallLog) -> None:
        """A new call: show it if asked to (or if nothing the user chose is on screen);
        otherwise say it started, and keep the transcript the user is reading."""
        current = book.calls.get(self.selected)
        mine = log.call_sid == self.softphone_sid  # the user is talking on it: show it
        if mine or self.follow or current is None or (self.auto_selected and not current.live):
            self._select(log.call_sid, auto=True)
        elif log.call_sid != self.selected:
            self.new_call, self.new_call_label = log.call_sid, _label(log)

    def _notify(self, text: str, error: bool = False) -> None:
        self.notice, self.notice_error, self.notice_at = text, error, time.time()

    def _select(self, sid: str, *, auto: bool) -> None:
        self.selected, self.auto_selected = sid, auto
        if self.new_call == sid:
            self.new_call = self.new_call_label = ""

    async def _command_result(self, ok: bool, ev: dict[str, Any]) -> None:
        command, message = str(ev.get("command") or ""), str(ev.get("message") or "")
        if command == "session.update":  # the configuration panel sent it: say it there
            from console.state.config import ConfigState

            (await self.get_state(ConfigState)).settled(ok, message)
            return
        self._notify(command_done(command) if ok else command_failed(command, message), not ok)

    async def _checklist_live(self, book: CallBook) -> None:
        from console.state.twilio import ChecklistState

        checklist = await self.get_state(ChecklistState)
        checklist.live(
            self.feed_status(),
            version=self.relay_version,
            live_calls=sum(c.live for c in book.calls.values()),
            simulator=self.simulator,
            model=self.model_status or None,
        )

    def feed_status(self) -> FeedStatus:
        return FeedStatus(
            online=self.online,
            connecting=not self.feed_tried,
            reason="" if self.online else self.offline_reason,
            reachable=self.reachable,
        )

    def _records(self, log: CallLog) -> bool:
        """Should this feed start the recording of `log`? (Claims it: once per process.)"""
        # A browser call has no Twilio call to record.
        return (
            log.live
            and not log.browser
            and recording.should_record(
                recording.RECORDER, console_settings.get(), self.simulator, log.call_sid
            )
        )

    async def _new_default(self, session: dict[str, Any], first: bool) -> None:
        self.default_session_json = json.dumps(session)
        from console.state.config import ConfigState
        from console.state.tools import ToolsState

        config = await self.get_state(ConfigState)
        config.load_default(session, self.default_greeting, only_if_pristine=not first)
        tools = await self.get_state(ToolsState)
        tools.load(session.get("tools") or [], json.loads(self.backend_tools_json))

    def _refresh(self) -> None:
        book = BOOKS.get(self.router.session.client_token)
        if book is None:
            return
        self.calls = [_call_row(c) for c in book.ordered()]
        log = book.calls.get(self.selected)
        rec = recording.RECORDER.get(self.selected)
        self.recording_text = rec.describe(log is not None and log.live) if rec else ""
        self.recording_error = bool(rec and rec.error)
        self.recording_note = recording.not_recordable(log.direction) if log else ""
        if log is None:
            self.lines, self.functions, self.latency, self.usage = [], [], [], {}
            self.call_state = self.call_error = self.applied_session = ""
            self.call_end_reason = self.latency_last = self.latency_p50 = self.latency_p95 = ""
            return
        self.call_state = log.state
        self.call_error = log.last_error
        self.call_end_reason = log.end_reason
        self.call_seen_live = log.seen_live
        self.lines = [
            {
                "id": ln.id,
                "role": ln.role,
                "text": ln.text or ("…" if ln.status == "streaming" else ""),
                "cut": ln.cut_text,
                "status": ln.status,
                "note": ln.note,
                "time": _time(ln.ts),
            }
            for ln in log.lines
        ]
        self.functions = [
            {
                "call_id": f.call_id,
                "name": f.name,
                "arguments": f.arguments,
                "status": f.status,
                "output": f.output,
                "duration": f"{f.duration_ms} ms" if f.duration_ms else "",
                "source": f.source,
                "timeout": f"{f.timeout_s:.0f} s" if f.timeout_s else "",
            }
            for f in reversed(list(log.functions.values()))
        ]
        self.latency = [{"turn": p.turn, "latency_ms": p.latency_ms} for p in log.latency[-50:]]
        p50, p95 = log.latency_stats()
        self.latency_p50, self.latency_p95 = _ms(p50), _ms(p95)
        self.latency_last = _ms(log.latency[-1].latency_ms) if log.latency else ""
        u = log.usage
        self.usage = (
            {
                "input": str(u.input_tokens),
                "output": str(u.output_tokens),
                "total": str(u.total_tokens),
                "audio_in": str(u.input_audio_tokens),
                "audio_out": str(u.output_audio_tokens),
                "cached": str(u.input_cached_tokens),
            }
            if u.total_tokens
            else {}
        )
        self.applied_session = (
            json.dumps(log.applied_session, indent=2) if log.applied_session else ""
        )

    @rx.event
    def ensure_feed(self) -> EventSpec | None:
        """Polled by the page: a backend restart loses the socket but not the page's state."""
        keep = NOTICE_ERROR_S if self.notice_error else NOTICE_S
        if self.notice and time.time() - self.notice_at > keep:
            self.notice = ""
        if not self.authed() or self.router.session.client_token in FEEDS:
            return None
        self.online = False
        self.offline_reason = "reconnecting to the relay…"
        return FeedState.start_feed  # type: ignore[return-value]  # Reflex turns it into an EventSpec

    # --- actions -------------------------------------------------------------------------

    async def _send(self, command: dict[str, Any], done: str) -> None:
        why = await send_command(self.router.session.client_token, command)
        self._notify(why or done, bool(why))

    @rx.event
    def select_call(self, sid: str) -> None:
        if self.authed():
            self._select(sid, auto=False)
            self._refresh()

    @rx.event
    def show_new_call(self) -> None:
        if self.authed() and self.new_call:
            self._select(self.new_call, auto=False)
            self._refresh()

    @rx.event
    def set_follow(self, value: bool) -> None:
        if not self.authed():
            return
        self.follow = value
        book = BOOKS.get(self.router.session.client_token)
        newest = next((c for c in book.ordered() if c.live), None) if book else None
        if value and newest is not None:
            self._select(newest.call_sid, auto=True)
            self._refresh()

    @rx.event
    async def sim_call(self) -> None:
        if self.authed():
            await self._send(
                {"type": "sim.call", "seconds": SIM_CALL_S}, "Starting a simulated call…"
            )

    @rx.event
    async def sim_sip_call(self) -> None:
        """The same simulated caller, as a SIP call (OpenAI carrying the audio)."""
        if self.authed():
            await self._send(
                {"type": "sim.call", "seconds": SIM_CALL_S, "mode": "sip"},
                "Starting a simulated SIP call…",
            )

    @rx.event
    async def end_call(self) -> None:
        if not self.authed() or not self.selected:
            return
        token = self.router.session.client_token

        async def send(command: dict[str, Any]) -> str:
            return await send_command(token, command)

        book = BOOKS.get(token)
        log = book.calls.get(self.selected) if book else None
        browser = log is not None and log.browser
        result = await hang_up(
            self.selected, console_settings.get(), self.simulator, send, browser=browser
        )
        self._notify(result.message, result.error)

    @rx.event
    async def answer_function(self, form: dict[str, str]) -> None:
        if not self.authed() or not self.selected:
            return
        await self._send(
            {
                "type": "function_call.output",
                "call_sid": self.selected,
                "call_id": form.get("call_id", ""),
                "output": form.get("output", ""),
            },
            "Sending the answer…",
        )
