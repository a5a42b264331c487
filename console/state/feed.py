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
from console.feed import FeedOffline, RelayFeed
from console.hangup import hang_up
from console.phone import mask
from console.state.auth import AuthState
from console.twilio_service import TwilioError, twilio

FEEDS: dict[str, RelayFeed] = {}
BOOKS: dict[str, CallBook] = {}
QUEUES: dict[str, asyncio.Queue[dict[str, Any]]] = {}
TASKS: set[asyncio.Task[None]] = set()
_log = logging.getLogger("console.feed")
GONE_AFTER_S = 60.0  # stop a feed whose browser has been gone this long


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


def _call_row(log: CallLog) -> dict[str, str]:
    return {
        "sid": log.call_sid,
        "label": mask(log.from_) if log.from_.startswith("+") else (log.from_ or "caller"),
        "to": log.to,
        "state": log.state,
        "started": _time(log.started_at),
        "live": "1" if log.live else "",
    }


class FeedState(AuthState):
    online: bool = False
    offline_reason: str = "connecting to the relay…"
    simulator: bool = False
    relay_version: str = ""
    calls: list[dict[str, str]] = []
    selected: str = ""
    call_state: str = ""
    lines: list[dict[str, str]] = []
    functions: list[dict[str, str]] = []
    latency: list[dict[str, int]] = []
    usage: dict[str, int] = {}
    applied_session: str = ""
    call_error: str = ""
    notice: str = ""
    notice_error: bool = False
    default_session_json: str = ""
    default_greeting: str = ""
    backend_tools_json: str = "[]"
    recording_text: str = ""
    recording_error: bool = False

    @rx.var
    def selected_live(self) -> bool:
        return self.call_state not in ("", "ended")

    @rx.var
    def last_latency_ms(self) -> int:
        return self.latency[-1]["latency_ms"] if self.latency else 0

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
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=20000)
        QUEUES[token] = queue

        async def on_event(ev: dict[str, Any]) -> None:
            if ev.get("type") != "audio.progress" or queue.qsize() < 10000:
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(ev)

        async def on_status(online: bool, why: str) -> None:
            queue.put_nowait({"type": "_status", "online": online, "why": why})

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
            FEEDS.pop(token, None)
            if QUEUES.get(token) is queue:
                del QUEUES[token]
            await asyncio.gather(runner, return_exceptions=True)

    async def _apply(self, batch: list[dict[str, Any]]) -> list[tuple[str, bool]]:
        """Fold a batch of events in; returns the calls this feed should start recording."""
        book = BOOKS.setdefault(self.router.session.client_token, CallBook())
        to_record: list[tuple[str, bool]] = []
        for ev in batch:
            kind = ev.get("type")
            if kind == "_status":
                self.online = bool(ev["online"])
                self.offline_reason = str(ev["why"])
            elif kind == "_recording":
                log = book.calls.get(str(ev.get("call_sid")))
                if log is not None:
                    log.note("recording", str(ev.get("line") or ""), float(ev.get("ts") or 0.0))
            elif kind == "relay.hello":
                book.hello(list(ev.get("calls") or []))
                self.simulator = bool(ev.get("simulator"))
                self.relay_version = str(ev.get("version") or "")
                self.backend_tools_json = json.dumps(ev.get("tools") or [])
                self.default_greeting = str(ev.get("greeting") or "")
                await self._new_default(ev.get("default_session") or {}, first=True)
                # Calls already live when this console connected: record them too, unless
                # a recording is already running (a previous console process may have one).
                to_record += [(c.call_sid, True) for c in book.ordered() if self._records(c)]
            elif kind == "session.default":
                self.default_greeting = str(ev.get("greeting") or "")
                await self._new_default(ev.get("session") or {}, first=False)
            elif kind == "error" and not ev.get("call_sid"):
                self.notice_error = True
                code = f" {ev['code']}" if ev.get("code") else ""
                self.notice = f"{ev.get('source', 'relay')} error{code}: {ev.get('message', '')}"
            elif kind in ("command.ok", "command.error"):
                self.notice_error = kind == "command.error"
                self.notice = (
                    f"{ev.get('command')}: {ev.get('message')}"
                    if self.notice_error
                    else f"{ev.get('command')}: applied"
                )
            else:
                log = book.apply(ev)
                if kind == "call.started" and log is not None:
                    current = book.calls.get(self.selected)
                    if current is None or not current.live:
                        self.selected = log.call_sid
                    if self._records(log):
                        to_record.append((log.call_sid, False))
        if not self.selected and book.calls:
            self.selected = book.ordered()[0].call_sid
        self._refresh()
        return to_record

    def _records(self, log: CallLog) -> bool:
        """Should this feed start the recording of `log`? (Claims it: once per process.)"""
        return log.live and recording.should_record(
            recording.RECORDER, console_settings.get(), self.simulator, log.call_sid
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
        if log is None:
            self.lines, self.functions, self.latency, self.usage = [], [], [], {}
            self.call_state = self.call_error = self.applied_session = ""
            return
        self.call_state = log.state
        self.call_error = log.last_error
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
        u = log.usage
        self.usage = {
            "input": u.input_tokens,
            "output": u.output_tokens,
            "total": u.total_tokens,
            "audio_in": u.audio_input_tokens,
            "audio_out": u.audio_output_tokens,
            "cached": u.cached_tokens,
        }
        self.applied_session = (
            json.dumps(log.applied_session, indent=2) if log.applied_session else ""
        )

    @rx.event
    def ensure_feed(self) -> EventSpec | None:
        """Polled by the page: a backend restart loses the socket but not the page's state."""
        if not self.authed() or self.router.session.client_token in FEEDS:
            return None
        self.online = False
        self.offline_reason = "reconnecting to the relay…"
        return FeedState.start_feed  # type: ignore[return-value]  # Reflex turns it into an EventSpec

    # --- actions -------------------------------------------------------------------------

    async def _send(self, command: dict[str, Any], done: str) -> None:
        why = await send_command(self.router.session.client_token, command)
        self.notice_error = bool(why)
        self.notice = why or done

    @rx.event
    def select_call(self, sid: str) -> None:
        if self.authed():
            self.selected = sid
            self._refresh()

    @rx.event
    async def sim_call(self) -> None:
        if self.authed():
            await self._send({"type": "sim.call", "seconds": 30}, "simulated call requested")

    @rx.event
    async def end_call(self) -> None:
        if not self.authed() or not self.selected:
            return
        token = self.router.session.client_token

        async def send(command: dict[str, Any]) -> str:
            return await send_command(token, command)

        result = await hang_up(self.selected, console_settings.get(), self.simulator, send)
        self.notice, self.notice_error = result.message, result.error

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
            "function output sent",
        )
