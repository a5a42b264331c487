"""A Realtime GA WebSocket server that behaves like the real API, scripted.

One `SimSession` per connection. The reader loop handles client events in order;
a response runs as its own task so barge-in and `response.cancel` can stop it
mid-stream, exactly where audio deltas stopped. Wire shapes and event orders follow
reference/protocols.md sections 2-4.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import copy
import json
import logging
import math
import random
import re
import string
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import msgspec
from aiohttp import WSMsgType, web

from shared import realtime as rt
from shared import session as sess
from shared.audio import BYTES_PER_MS, rms_mulaw, tone_mulaw

from .script import ModelScript, Reply, ScriptItem, ToolCall
from .sip import SimSipCall, new_secret
from .sip import rest as sip_rest

log = logging.getLogger("relay.sim.model")

SESSION_MAX_S = 3600
_FAILURE_MESSAGES = {
    "insufficient_quota": "You exceeded your current quota, please check your plan and billing "
    "details. For more information on this error, read the docs: "
    "https://platform.openai.com/docs/guides/error-codes/api-errors.",
    "server_error": "The server had an error while processing your request.",
}
EXPIRED_MESSAGE = "Your session hit the maximum duration of 60 minutes."
_ALNUM = string.ascii_letters + string.digits
_ids = random.Random()
_json = msgspec.json.Encoder()
_dict_decoder = msgspec.json.Decoder(dict[str, Any])


def new_id(prefix: str) -> str:
    return f"{prefix}_" + "".join(_ids.choices(_ALNUM, k=21))


def ga_default_session(model: str, expires_at: int) -> dict[str, Any]:
    """The session the real API reports in `session.created` (protocols.md 2.2)."""
    pcm = {"type": "audio/pcm", "rate": 24000}
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": new_id("sess"),
        "model": model,
        "output_modalities": ["audio"],
        "instructions": "Your knowledge cutoff is 2023-10. You are a helpful assistant.",
        "expires_at": expires_at,
        "audio": {
            "input": {
                "format": dict(pcm),
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": 0.5,
                    "prefix_padding_ms": 300,
                    "silence_duration_ms": 200,
                    "idle_timeout_ms": None,
                    "create_response": True,
                    "interrupt_response": True,
                },
            },
            "output": {"format": dict(pcm), "voice": "marin", "speed": 1.0},
        },
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "prompt": None,
        "include": None,
    }


@lru_cache(maxsize=64)
def tone(fmt: str, ms: int, freq: float, amplitude: int) -> bytes:
    """The assistant's voice: a sine tone in the session's output format."""
    if fmt == "audio/pcm":
        n = 24 * ms
        step = 2 * math.pi * freq / 24000
        return array("h", (int(amplitude * math.sin(i * step)) for i in range(n))).tobytes()
    # G.711: mu-law bytes (also used, mislabelled, for pcma: the simulator only needs sizes).
    return tone_mulaw(ms, freq, amplitude)


def energy(frame: bytes, fmt: str) -> float:
    if fmt == "audio/pcm":
        samples = array("h")
        samples.frombytes(frame[: len(frame) // 2 * 2])
        if not samples:
            return 0.0
        return float((sum(s * s for s in samples) / len(samples)) ** 0.5)
    return rms_mulaw(frame)


_WORDS = re.compile(r"\S+\s*")


def _split_words(text: str, parts: int) -> list[str]:
    """Split text into `parts` transcript deltas at word boundaries (some may be empty)."""
    words = _WORDS.findall(text)
    if parts <= 1 or not words:
        return [text] + [""] * max(0, parts - 1)
    out: list[str] = []
    taken = 0
    for i in range(parts):
        upto = round((i + 1) * len(words) / parts)
        out.append("".join(words[taken:upto]))
        taken = upto
    return out


class _Stopped(Exception):
    """Raised inside a response task at a checkpoint once the response was cancelled."""


class ClientError(Exception):
    """A client event the API refuses: becomes an `error` event; the session goes on."""

    def __init__(
        self,
        code: str,
        message: str,
        param: str | None = None,
        type_: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.code, self.message, self.param, self.type = code, message, param, type_


@dataclass
class _Response:
    id: str
    trigger: str
    task: asyncio.Task[None] | None = None
    output: list[dict[str, Any]] = field(default_factory=list)
    open_item: dict[str, Any] | None = None  # the item being streamed, if any
    part_open: bool = False
    transcript: str = ""
    audio_ms: float = 0.0
    stop_reason: str | None = None  # set by barge-in or response.cancel
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def checkpoint(self, delay: float = 0.0) -> None:
        """Wait up to `delay` seconds; raise _Stopped as soon as the response is cancelled."""
        if delay > 0 and not self.stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), delay)
        if self.stop_reason is not None:
            raise _Stopped


@dataclass
class Faults:
    """One-shot faults, counted across all the sessions of one SimModel."""

    response_creates_refused: int = 0
    tool_call_dropped: bool = False


class SimSession:
    """One simulated Realtime session (one WebSocket connection)."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        request: web.Request,
        script: ModelScript,
        model: str,
        faults: Faults | None = None,
        sip_config: dict[str, Any] | None = None,
    ) -> None:
        self.faults = faults or Faults()
        # SIP: the session of an accepted call; the caller's audio and the playback are the
        # service's own (no input appends, no audio deltas; output_audio_buffer.* instead).
        self.sip = sip_config is not None
        self.sip_call: SimSipCall | None = None  # set by SimModel for a call's socket
        self.ws = ws
        self.request = request
        self.script = script
        self.model = model
        self.created_at = time.time()
        lifetime = script.expire_after_s if script.expire_after_s is not None else SESSION_MAX_S
        self.effective: dict[str, Any] = ga_default_session(model, int(self.created_at + lifetime))
        self.id: str = self.effective["id"]
        self.conversation_id = new_id("conv")
        self.received: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []
        self.truncations: list[dict[str, Any]] = []
        self.conversation: list[dict[str, Any]] = []
        self.audio_sent_bytes: dict[str, int] = {}  # assistant item id -> audio bytes sent
        self.fail_response_with = script.fail_response_with
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self._items: dict[str, dict[str, Any]] = {}
        self._changed = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self._active: _Response | None = None
        self._reply_index = 0
        self._transcript_index = 0
        self._rng = random.Random(script.seed)
        self._tasks: set[asyncio.Task[None]] = set()
        # Input audio and VAD state.
        self._buffer_bytes = 0  # since the last commit/clear
        self._input_ms = 0.0  # all input audio processed by the VAD, in ms
        self._carry = b""
        self._speaking = False
        self._silence_ms = 0.0
        self._user_item_id = ""
        # SIP: the caller's line (speech until this loop time) and what is being played.
        self._speak_until = 0.0
        self._playing: tuple[str, str, float] | None = None  # (response, item, started at)
        self.last_played_at = 0.0  # loop time an answer last stopped playing
        self.heard_ms: dict[str, float] = {}  # SIP: assistant item -> ms the caller heard
        if sip_config is not None:
            self.effective = sess.merge(self.effective, sip_config)

    # --- inspection helpers for tests ------------------------------------------------

    @property
    def active_response_id(self) -> str | None:
        return self._active.id if self._active else None

    def audio_sent_ms(self, item_id: str) -> int:
        return int(self.audio_sent_bytes.get(item_id, 0) / self._bpm("output"))

    async def wait_for(self, type: str, timeout: float = 5.0, count: int = 1) -> dict[str, Any]:
        """The `count`-th client event of this type received, awaiting it if needed."""
        return await self._wait(self.received, type, timeout, count)

    async def wait_sent(self, type: str, timeout: float = 5.0, count: int = 1) -> dict[str, Any]:
        """The `count`-th server event of this type sent, awaiting it if needed."""
        return await self._wait(self.sent, type, timeout, count)

    async def _wait(
        self,
        log_: list[dict[str, Any]],
        type: str,
        timeout: float,
        count: int,
    ) -> dict[str, Any]:
        def found() -> list[dict[str, Any]]:
            return [e for e in log_ if e.get("type") == type]

        async with asyncio.timeout(timeout):
            while len(found()) < count and not self.closed.is_set():
                changed = self._changed
                await changed.wait()
        hits = found()
        if len(hits) < count:
            raise ConnectionError(f"session closed before {count} x {type}")
        return hits[count - 1]

    # --- fault injection ---------------------------------------------------------------

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the socket with `code`; 1006 drops the TCP connection with no close frame."""
        if code == 1006:
            transport = self.request.transport
            if transport is not None:
                transport.abort()
            return
        await self.ws.close(code=code, message=reason.encode())

    async def send_error(
        self,
        type: str = "server_error",
        code: str | None = None,
        message: str = "The server had an error while processing your request.",
        param: str | None = None,
        event_id: str | None = None,
    ) -> None:
        err = {"type": type, "code": code, "message": message, "param": param, "event_id": event_id}
        await self._send({"type": "error", "error": err})

    # --- plumbing ------------------------------------------------------------------------

    def _bump(self) -> None:
        """Wake every waiter; they re-check their condition."""
        self._changed.set()
        self._changed = asyncio.Event()

    def _bpm(self, side: str) -> float:
        fmt = self.effective["audio"][side]["format"]["type"]
        return BYTES_PER_MS.get(fmt, 8.0)

    def _fmt(self, side: str) -> str:
        fmt: str = self.effective["audio"][side]["format"]["type"]
        return fmt

    async def _send(self, event: dict[str, Any]) -> None:
        event = {"type": event["type"], "event_id": new_id("event"), **event}
        data = _json.encode(event).decode()
        async with self._send_lock:
            if self.ws.closed:
                raise ConnectionResetError("model socket closed")
            await self.ws.send_str(data)
        self.sent.append(event)
        self._bump()

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def serve(self) -> None:
        await self._send({"type": "session.created", "session": copy.deepcopy(self.effective)})
        if self.script.expire_after_s is not None:
            self._spawn(self._expire(self.script.expire_after_s))
        if self.sip:
            self._spawn(self._line())
        async for msg in self.ws:
            if msg.type == WSMsgType.TEXT:
                await self._on_text(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await self._on_text(msg.data.decode("utf-8", "replace"))
            elif msg.type == WSMsgType.ERROR:
                break

    async def shutdown(self) -> None:
        self.close_code = self.ws.close_code
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks))
        self.closed.set()
        self._bump()
        if self.sip_call is not None:
            self.sip_call.bump()  # the caller's side waits on the call, not on this socket

    # --- SIP: the caller's line, spoken to and heard by the service itself ---------------

    @property
    def playing(self) -> bool:
        """SIP: an answer is being played to the caller."""
        return self._playing is not None

    def heard_total_ms(self) -> float:
        """SIP: all the answer audio the caller has heard so far, the current one included."""
        total = sum(self.heard_ms.values())
        if self._playing is not None:
            total += (asyncio.get_running_loop().time() - self._playing[2]) * 1000
        return total

    async def until(self, predicate: Callable[[], bool], timeout: float) -> None:
        """Until `predicate()` holds: re-checked when this session sends or receives, and
        every 20 ms (what the caller hears moves on with no event)."""
        async with asyncio.timeout(timeout):
            while not predicate() and not self.closed.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), 0.02)

    async def hear(self, ms: int) -> None:
        """SIP: the caller speaks for `ms` (the line's VAD hears voice, then silence)."""
        loop = asyncio.get_running_loop()
        self._speak_until = loop.time() + ms / 1000
        await asyncio.sleep(ms / 1000)

    async def key(self, digit: str) -> None:
        """SIP: the caller presses a key."""
        await self._send(
            {
                "type": "input_audio_buffer.dtmf_event_received",
                "event": digit,
                "received_at": int(time.time()),
            }
        )

    async def _line(self) -> None:
        """20 ms frames of the caller's line through the turn detection, in real time."""
        loop = asyncio.get_running_loop()
        due = loop.time()
        frame_bytes = int(20 * self._bpm("input"))
        while True:
            due += 0.02
            await asyncio.sleep(max(0.0, due - loop.time()))
            td = self._turn_detection()
            if td is None:
                continue
            before = self._input_ms
            self._input_ms += 20
            self._buffer_bytes += frame_bytes
            await self._vad_frame(loop.time() < self._speak_until, before, td)

    async def _play(self, resp: _Response, item: dict[str, Any], ms: float) -> None:
        """SIP: the service plays `ms` of answer to the caller, in real time."""
        loop = asyncio.get_running_loop()
        if self._playing is None:
            self._playing = (resp.id, item["id"], loop.time())
            await self._send({"type": "output_audio_buffer.started", "response_id": resp.id})
        resp.audio_ms += ms
        await resp.checkpoint(self._playing[2] + resp.audio_ms / 1000 - loop.time())

    async def _played(self, resp: _Response, cleared: bool) -> None:
        """SIP: the answer finished playing, or the caller cut it off."""
        if self._playing is None:
            return
        _, item_id, started = self._playing
        self._playing = None
        now = asyncio.get_running_loop().time()
        self.last_played_at = now
        heard = min(resp.audio_ms, (now - started) * 1000)
        self.heard_ms[item_id] = heard
        if cleared:
            await self._send({"type": "output_audio_buffer.cleared", "response_id": resp.id})
            await self._send(
                {
                    "type": "conversation.item.truncated",
                    "item_id": item_id,
                    "content_index": 0,
                    "audio_end_ms": int(heard),
                }
            )
        else:
            await self._send({"type": "output_audio_buffer.stopped", "response_id": resp.id})

    async def _expire(self, after_s: float) -> None:
        await asyncio.sleep(after_s)
        await self.send_error("invalid_request_error", "session_expired", EXPIRED_MESSAGE)
        await self.ws.close(code=1001, message=EXPIRED_MESSAGE.encode())

    async def _on_text(self, text: str) -> None:
        try:
            event = _dict_decoder.decode(text)
        except msgspec.DecodeError as exc:
            await self.send_error(
                "invalid_request_error", "invalid_json", f"Invalid JSON in client event: {exc}"
            )
            return
        self.received.append(event)
        self._bump()
        event_id = event.get("event_id")
        try:
            await self._dispatch(event)
        except ClientError as err:
            await self.send_error(err.type, err.code, err.message, err.param, event_id)
        except msgspec.ValidationError as exc:
            param = re.search(r"`\$\.([^`]*)`", str(exc))
            await self.send_error(
                "invalid_request_error",
                "invalid_type",
                f"Invalid value in client event: {exc}",
                param.group(1) if param else None,
                event_id,
            )

    async def _dispatch(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind is None:
            raise ClientError("invalid_event", "The 'type' field is missing.")
        handler = self._handlers.get(kind) if isinstance(kind, str) else None
        if handler is None:
            allowed = ", ".join(f"'{t}'" for t in rt.CLIENT_EVENT_TYPES)
            raise ClientError(
                "invalid_value",
                f"Invalid value: '{kind}'. Supported values are: {allowed}.",
                "type",
            )
        await handler(self, event)

    # --- session.update -----------------------------------------------------------------

    async def _session_update(self, event: dict[str, Any]) -> None:
        raw = event.get("session")
        if not isinstance(raw, dict):
            raise ClientError(
                "missing_required_parameter", "Missing required parameter: 'session'.", "session"
            )
        try:
            update = sess.to_wire(sess.validate(raw))
        except sess.SessionConfigError as exc:
            raise _session_error(exc, raw) from None
        update.pop("model", None)  # the model cannot change once the session started
        # Validated as a whole above; only now does anything change (atomic update).
        self.effective = sess.merge(self.effective, update)
        if self.script.configure_delay_s:
            await asyncio.sleep(self.script.configure_delay_s)
        await self._send({"type": "session.updated", "session": copy.deepcopy(self.effective)})

    # --- input audio and VAD ----------------------------------------------------------

    def _turn_detection(self) -> dict[str, Any] | None:
        return sess.turn_detection_of(self.effective)

    async def _append(self, event: dict[str, Any]) -> None:
        typed = msgspec.convert(event, rt.InputAudioBufferAppend)
        try:
            data = binascii.a2b_base64(typed.audio)
        except binascii.Error:
            raise ClientError("invalid_value", "Invalid base64 audio.", "audio") from None
        self._buffer_bytes += len(data)
        td = self._turn_detection()
        bpm = self._bpm("input")
        if td is None:
            self._input_ms += len(data) / bpm
            return
        fmt = self._fmt("input")
        frame = int(20 * bpm)
        buf = self._carry + data
        whole = len(buf) // frame * frame
        self._carry = buf[whole:]
        threshold = self._vad_threshold(td)
        for off in range(0, whole, frame):
            before = self._input_ms
            self._input_ms += 20
            await self._vad_frame(energy(buf[off : off + frame], fmt) > threshold, before, td)

    def _vad_threshold(self, td: dict[str, Any]) -> float:
        if self.script.vad_rms_threshold is not None:
            return self.script.vad_rms_threshold
        return 1000.0 * float(td.get("threshold", 0.5))

    async def _vad_frame(self, speech: bool, start_ms: float, td: dict[str, Any]) -> None:
        if speech and not self._speaking:
            self._speaking = True
            self._silence_ms = 0.0
            self._user_item_id = new_id("item")
            padding = int(td.get("prefix_padding_ms", 300))
            await self._send(
                {
                    "type": "input_audio_buffer.speech_started",
                    "audio_start_ms": max(0, int(start_ms) - padding),
                    "item_id": self._user_item_id,
                }
            )
            if self._active is not None and td.get("interrupt_response", True) is not False:
                await self._cancel_active("turn_detected")
        elif speech:
            self._silence_ms = 0.0
        elif self._speaking:
            self._silence_ms += 20
            if td.get("type") == "semantic_vad":
                needed = float(self.script.semantic_silence_ms)
            else:
                needed = float(td.get("silence_duration_ms", 500))
            if self._silence_ms >= needed:
                self._speaking = False
                await self._send(
                    {
                        "type": "input_audio_buffer.speech_stopped",
                        "audio_end_ms": int(self._input_ms),
                        "item_id": self._user_item_id,
                    }
                )
                await self._commit_user_item(self._user_item_id)
                if td.get("create_response", True) is not False and self._active is None:
                    self._start_response("turn")

    async def _commit(self, event: dict[str, Any]) -> None:
        ms = self._buffer_bytes / self._bpm("input")
        if ms < 100:
            raise ClientError(
                "input_audio_buffer_commit_empty",
                "Error committing input audio buffer: buffer too small. Expected at least 100ms "
                f"of audio, but buffer only has {ms:.2f}ms of audio.",
            )
        item_id = self._user_item_id if self._speaking else new_id("item")
        self._speaking = False
        await self._commit_user_item(item_id)

    async def _clear_input(self, event: dict[str, Any]) -> None:
        self._buffer_bytes = 0
        self._carry = b""
        self._speaking = False
        await self._send({"type": "input_audio_buffer.cleared"})

    def _last_item_id(self) -> str | None:
        return self.conversation[-1]["id"] if self.conversation else None

    async def _commit_user_item(self, item_id: str) -> None:
        audio_ms = self._buffer_bytes / self._bpm("input")
        self._buffer_bytes = 0
        previous = self._last_item_id()
        await self._send(
            {
                "type": "input_audio_buffer.committed",
                "previous_item_id": previous,
                "item_id": item_id,
            }
        )
        item: dict[str, Any] = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        self._add_item(item)
        await self._send(
            {"type": "conversation.item.added", "previous_item_id": previous, "item": item}
        )
        await self._send(
            {"type": "conversation.item.done", "previous_item_id": previous, "item": item}
        )
        if self.effective["audio"]["input"].get("transcription"):
            text = self.script.transcript_at(self._transcript_index)
            self._transcript_index += 1
            await self._send(
                {
                    "type": "conversation.item.input_audio_transcription.delta",
                    "item_id": item_id,
                    "content_index": 0,
                    "delta": text,
                }
            )
            audio_tokens = max(1, int(audio_ms / 100))
            text_tokens = max(1, len(text) // 4)
            await self._send(
                {
                    "type": "conversation.item.input_audio_transcription.completed",
                    "item_id": item_id,
                    "content_index": 0,
                    "transcript": text,
                    "usage": {
                        "type": "tokens",
                        "total_tokens": audio_tokens + text_tokens,
                        "input_tokens": audio_tokens,
                        "input_token_details": {"text_tokens": 0, "audio_tokens": audio_tokens},
                        "output_tokens": text_tokens,
                    },
                }
            )
            item["content"][0]["transcript"] = text

    def _add_item(self, item: dict[str, Any]) -> None:
        self.conversation.append(item)
        self._items[item["id"]] = item

    # --- conversation items ------------------------------------------------------------

    async def _item_create(self, event: dict[str, Any]) -> None:
        raw = event.get("item")
        if not isinstance(raw, dict):
            raise ClientError("missing_required_parameter", "Missing required parameter: 'item'.")
        kind = raw.get("type")
        if kind == "message":
            if raw.get("role") not in ("user", "assistant", "system"):
                raise ClientError(
                    "invalid_value",
                    f"Invalid value: '{raw.get('role')}'. Supported values are: "
                    "'user', 'assistant' and 'system'.",
                    "item.role",
                )
            if not isinstance(raw.get("content"), list):
                raise ClientError(
                    "missing_required_parameter",
                    "Missing required parameter: 'item.content'.",
                    "item.content",
                )
        elif kind == "function_call_output":
            for key in ("call_id", "output"):
                if not isinstance(raw.get(key), str):
                    raise ClientError(
                        "missing_required_parameter",
                        f"Missing required parameter: 'item.{key}'.",
                        f"item.{key}",
                    )
        elif kind != "function_call":
            raise ClientError(
                "invalid_value",
                f"Invalid value: '{kind}'. Supported values are: 'message', 'function_call' "
                "and 'function_call_output'.",
                "item.type",
            )
        item = copy.deepcopy(raw)
        item["id"] = raw.get("id") or new_id("item")
        if item["id"] in self._items:
            raise ClientError(
                "invalid_value", f"Item with id '{item['id']}' already exists.", "item.id"
            )
        item["object"] = "realtime.item"
        item.setdefault("status", "completed")
        previous = self._last_item_id()
        self._add_item(item)
        await self._send(
            {"type": "conversation.item.added", "previous_item_id": previous, "item": item}
        )
        await self._send(
            {"type": "conversation.item.done", "previous_item_id": previous, "item": item}
        )

    def _item_or_error(self, item_id: str) -> dict[str, Any]:
        item = self._items.get(item_id)
        if item is None:
            raise ClientError(
                "item_not_found", f"Conversation item with id '{item_id}' not found.", "item_id"
            )
        return item

    async def _item_truncate(self, event: dict[str, Any]) -> None:
        typed = msgspec.convert(event, rt.ConversationItemTruncate)
        item = self._item_or_error(typed.item_id)
        if item.get("role") != "assistant" or typed.item_id not in self.audio_sent_bytes:
            raise ClientError(
                "unsupported_content_type", "Only model output audio messages can be truncated"
            )
        sent = self.audio_sent_ms(typed.item_id)
        if typed.audio_end_ms > sent:
            raise ClientError(
                "invalid_value",
                f"Audio content of {sent}ms is already shorter than {typed.audio_end_ms}ms",
                "audio_end_ms",
            )
        self.truncations.append(
            {"item_id": typed.item_id, "audio_end_ms": typed.audio_end_ms, "sent_ms": sent}
        )
        for part in item.get("content", []):
            if part.get("type") == "output_audio":
                part["transcript"] = ""  # the API drops the transcript of truncated audio
        await self._send(
            {
                "type": "conversation.item.truncated",
                "item_id": typed.item_id,
                "content_index": typed.content_index,
                "audio_end_ms": typed.audio_end_ms,
            }
        )

    async def _item_delete(self, event: dict[str, Any]) -> None:
        typed = msgspec.convert(event, rt.ConversationItemDelete)
        item = self._item_or_error(typed.item_id)
        self.conversation.remove(item)
        del self._items[typed.item_id]
        await self._send({"type": "conversation.item.deleted", "item_id": typed.item_id})

    async def _item_retrieve(self, event: dict[str, Any]) -> None:
        typed = msgspec.convert(event, rt.ConversationItemRetrieve)
        item = self._item_or_error(typed.item_id)
        await self._send({"type": "conversation.item.retrieved", "item": item})

    # --- responses ---------------------------------------------------------------------

    async def _response_create(self, event: dict[str, Any]) -> None:
        msgspec.convert(event, rt.ResponseCreate)
        fault = self.script.refuse_response_create_with
        if (
            fault
            and self.faults.response_creates_refused < self.script.refuse_response_create_times
        ):
            self.faults.response_creates_refused += 1
            kind = "server_error" if fault == "server_error" else "invalid_request_error"
            raise ClientError(fault, f"Simulated refusal of response.create ({fault}).", None, kind)
        if self._active is not None:
            raise ClientError(
                "conversation_already_has_active_response",
                "Conversation already has an active response in progress: "
                f"{self._active.id}. Wait until the response is finished before creating "
                "a new one.",
            )
        self._start_response("client")

    async def _response_cancel(self, event: dict[str, Any]) -> None:
        typed = msgspec.convert(event, rt.ResponseCancel)
        wanted = typed.response_id if isinstance(typed.response_id, str) else None
        if self._active is None or (wanted and wanted != self._active.id):
            raise ClientError(
                "response_cancel_not_active", "Cancellation failed: no active response found"
            )
        await self._cancel_active("client_cancelled")

    def _start_response(self, trigger: str) -> None:
        resp = _Response(id=new_id("resp"), trigger=trigger)
        self._active = resp
        resp.task = self._spawn(self._run_response(resp))

    def _response_obj(
        self, resp: _Response, status: str, details: dict[str, Any] | None, usage: Any
    ) -> dict[str, Any]:
        out = self.effective["audio"]["output"]
        return {
            "object": "realtime.response",
            "id": resp.id,
            "status": status,
            "status_details": details,
            "output": copy.deepcopy(resp.output),
            "conversation_id": self.conversation_id,
            "output_modalities": list(self.effective.get("output_modalities", ["audio"])),
            "max_output_tokens": self.effective.get("max_output_tokens", "inf"),
            "audio": {"output": {"format": dict(out["format"]), "voice": out.get("voice")}},
            "usage": usage,
            "metadata": None,
        }

    def _usage(self, resp: _Response) -> dict[str, Any]:
        text_out = max(1, len(resp.transcript) // 4)
        audio_out = int(resp.audio_ms / 50)  # ~20 audio tokens per second of speech
        audio_in = sum(15 for i in self.conversation if i.get("role") == "user")
        text_in = 180 + 12 * len(self.conversation)
        cached = (text_in // 64) * 64 if len(self.conversation) > 2 else 0
        return {
            "total_tokens": text_in + audio_in + text_out + audio_out,
            "input_tokens": text_in + audio_in,
            "output_tokens": text_out + audio_out,
            "input_token_details": {
                "text_tokens": text_in,
                "audio_tokens": audio_in,
                "image_tokens": 0,
                "cached_tokens": cached,
                "cached_tokens_details": {
                    "text_tokens": cached,
                    "audio_tokens": 0,
                    "image_tokens": 0,
                },
            },
            "output_token_details": {"text_tokens": text_out, "audio_tokens": audio_out},
        }

    async def _run_response(self, resp: _Response) -> None:
        try:
            item = self._next_reply()
            await self._send(
                {
                    "type": "response.created",
                    "response": self._response_obj(resp, "in_progress", None, None),
                }
            )
            await self._send(
                {
                    "type": "rate_limits.updated",
                    "rate_limits": [
                        {
                            "name": "requests",
                            "limit": 5000,
                            "remaining": 4999,
                            "reset_seconds": 0.012,
                        },
                        {
                            "name": "tokens",
                            "limit": 800000,
                            "remaining": 795904,
                            "reset_seconds": 0.307,
                        },
                    ],
                }
            )
            if self.fail_response_with:
                await self._finish_failed(resp, self.fail_response_with)
                return
            try:
                await self._produce(resp, item)
            except _Stopped:
                await self._close_stopped(resp)
            if self._active is resp:
                self._active = None  # before sending: a cancel racing this finds nothing active
            if resp.stop_reason is not None:
                status, details = "cancelled", {"type": "cancelled", "reason": resp.stop_reason}
            else:
                status, details = "completed", None
            await self._send(
                {
                    "type": "response.done",
                    "response": self._response_obj(resp, status, details, self._usage(resp)),
                }
            )
        except ConnectionError as exc:
            log.debug("response %s stopped: %s", resp.id, exc)
        finally:
            if self._active is resp:
                self._active = None

    def _next_reply(self) -> ScriptItem:
        """The script's next item; after a tool's output the model speaks, it does not call
        the tool again (so a re-seeded session answers with the next reply)."""
        item = self.script.reply_at(self._reply_index)
        self._reply_index += 1
        last = self.conversation[-1] if self.conversation else None
        after_output = last is not None and last.get("type") == "function_call_output"
        for _ in range(len(self.script.replies)):
            if not (after_output and isinstance(item, ToolCall)):
                break
            item = self.script.reply_at(self._reply_index)
            self._reply_index += 1
        return item

    async def _close_stopped(self, resp: _Response) -> None:
        """Finish the item that was streaming when the response was cancelled."""
        item = resp.open_item
        if item is None:
            return
        if item.get("type") == "message" and resp.part_open:
            if item["content"] and item["content"][0].get("type") == "output_audio":
                if self.sip:
                    await self._played(resp, cleared=True)
                await self._finish_audio_item(resp, item, resp.transcript, "incomplete")
                return
            ids = {**self._ids(resp, item), "output_index": resp.output.index(item)}
            part = {"type": "text", "text": resp.transcript}
            await self._send(
                {
                    "type": "response.output_text.done",
                    **ids,
                    "content_index": 0,
                    "text": resp.transcript,
                }
            )
            await self._send(
                {"type": "response.content_part.done", **ids, "content_index": 0, "part": part}
            )
            item["content"] = [{"type": "output_text", "text": resp.transcript}]
        await self._close_item(resp, item, "incomplete")

    async def _finish_failed(self, resp: _Response, code: str) -> None:
        self._active = None
        details = {
            "type": "failed",
            "error": {
                "type": code,
                "code": code,
                "message": _FAILURE_MESSAGES.get(code, f"The response failed ({code})."),
            },
        }
        usage = {
            "total_tokens": 0,
            "input_tokens": 0,
            "output_tokens": 0,
            "input_token_details": {"text_tokens": 0, "audio_tokens": 0, "cached_tokens": 0},
            "output_token_details": {"text_tokens": 0, "audio_tokens": 0},
        }
        await self._send(
            {
                "type": "response.done",
                "response": self._response_obj(resp, "failed", details, usage),
            }
        )

    async def _produce(self, resp: _Response, item: ScriptItem) -> None:
        if isinstance(item, ToolCall):
            await self._produce_call(resp, item)
        else:
            await self._produce_message(resp, item)

    def _ids(self, resp: _Response, item: dict[str, Any]) -> dict[str, Any]:
        return {"response_id": resp.id, "item_id": item["id"], "output_index": len(resp.output) - 1}

    async def _open_item(self, resp: _Response, item: dict[str, Any]) -> str | None:
        resp.output.append(item)
        resp.open_item = item
        previous = self._last_item_id()
        self._add_item(item)
        await self._send(
            {
                "type": "response.output_item.added",
                "response_id": resp.id,
                "output_index": len(resp.output) - 1,
                "item": copy.deepcopy(item),
            }
        )
        await self._send(
            {"type": "conversation.item.added", "previous_item_id": previous, "item": item}
        )
        return previous

    async def _close_item(self, resp: _Response, item: dict[str, Any], status: str) -> None:
        item["status"] = status
        resp.open_item = None
        await self._send(
            {
                "type": "response.output_item.done",
                "response_id": resp.id,
                "output_index": resp.output.index(item),
                "item": copy.deepcopy(item),
            }
        )
        index = self.conversation.index(item) if item in self.conversation else 0
        previous = self.conversation[index - 1]["id"] if index > 0 else None
        await self._send(
            {"type": "conversation.item.done", "previous_item_id": previous, "item": item}
        )

    async def _produce_message(self, resp: _Response, reply: Reply) -> None:
        audio_out = "audio" in self.effective.get("output_modalities", ["audio"])
        item: dict[str, Any] = {
            "id": new_id("item"),
            "object": "realtime.item",
            "type": "message",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }
        await self._open_item(resp, item)
        ids = {**self._ids(resp, item), "content_index": 0}
        if not audio_out:
            await self._send(
                {"type": "response.content_part.added", **ids, "part": {"type": "text", "text": ""}}
            )
            resp.part_open = True
            for word in _split_words(reply.text, max(1, len(reply.text.split()))):
                await resp.checkpoint()
                resp.transcript += word
                await self._send({"type": "response.output_text.delta", **ids, "delta": word})
            await self._send({"type": "response.output_text.done", **ids, "text": reply.text})
            resp.part_open = False
            part = {"type": "text", "text": reply.text}
            await self._send({"type": "response.content_part.done", **ids, "part": part})
            item["content"] = [{"type": "output_text", "text": reply.text}]
            await self._close_item(resp, item, "completed")
            return
        await self._send(
            {
                "type": "response.content_part.added",
                **ids,
                "part": {"type": "audio", "transcript": ""},
            }
        )
        resp.part_open = True
        item["content"] = [{"type": "output_audio", "transcript": ""}]
        self.audio_sent_bytes[item["id"]] = 0
        await self._stream_audio(resp, item, ids, reply)
        await self._finish_audio_item(resp, item, reply.text, "completed")
        if self.sip:
            await self._played(resp, cleared=False)

    async def _stream_audio(
        self, resp: _Response, item: dict[str, Any], ids: dict[str, Any], reply: Reply
    ) -> None:
        fmt = self._fmt("output")
        bpm = self._bpm("output")
        audio = tone(fmt, reply.duration_ms(), self.script.tone_hz, self.script.tone_amplitude)
        step = max(1, int(self.script.delta_ms * bpm))
        chunks = [audio[i : i + step] for i in range(0, len(audio), step)]
        words = _split_words(reply.text, max(1, len(chunks)))
        pace = self._pacer(resp)
        await resp.checkpoint(self.script.first_audio_delay_s)
        if self.sip:  # the service plays it: transcript as it is heard, no audio deltas
            for chunk, chunk_words in zip(chunks, words, strict=False):
                await self._play(resp, item, len(chunk) / bpm)
                if chunk_words:
                    resp.transcript += chunk_words
                    item["content"][0]["transcript"] = resp.transcript
                    await self._send(
                        {
                            "type": "response.output_audio_transcript.delta",
                            **ids,
                            "delta": chunk_words,
                        }
                    )
            return
        for i, chunk_words in enumerate(words):
            await pace(i)
            if chunk_words:
                resp.transcript += chunk_words
                item["content"][0]["transcript"] = resp.transcript
                await self._send(
                    {"type": "response.output_audio_transcript.delta", **ids, "delta": chunk_words}
                )
            if i < len(chunks):
                chunk = chunks[i]
                await self._send(
                    {
                        "type": "response.output_audio.delta",
                        **ids,
                        "delta": binascii.b2a_base64(chunk, newline=False).decode(),
                    }
                )
                self.audio_sent_bytes[item["id"]] += len(chunk)
                resp.audio_ms += len(chunk) / bpm

    def _pacer(self, resp: _Response) -> Callable[[int], Any]:
        """Waits before delta i: all at once, real time, or ~0.7x real time with gaps."""
        pacing = self.script.pacing
        delta_s = self.script.delta_ms / 1000
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        extra = 0.0

        async def wait(i: int) -> None:
            nonlocal extra
            if pacing == "burst":
                await asyncio.sleep(0)  # let client events in between, as a socket would
                await resp.checkpoint()
                return
            if pacing == "slow":
                if i and self._rng.random() < 0.15:
                    extra += self._rng.uniform(0.05, 0.3)
                due = t0 + i * delta_s / 0.7 + extra
            else:
                due = t0 + i * delta_s
            await resp.checkpoint(due - loop.time())

        return wait

    async def _finish_audio_item(
        self, resp: _Response, item: dict[str, Any], transcript: str, status: str
    ) -> None:
        ids = {**self._ids(resp, item), "output_index": resp.output.index(item), "content_index": 0}
        await self._send({"type": "response.output_audio.done", **ids})
        await self._send(
            {"type": "response.output_audio_transcript.done", **ids, "transcript": transcript}
        )
        resp.part_open = False
        await self._send(
            {
                "type": "response.content_part.done",
                **ids,
                "part": {"type": "audio", "transcript": transcript},
            }
        )
        item["content"] = [{"type": "output_audio", "transcript": transcript}]
        await self._close_item(resp, item, status)

    async def _produce_call(self, resp: _Response, call: ToolCall) -> None:
        args = json.dumps(call.arguments)
        item: dict[str, Any] = {
            "id": new_id("item"),
            "object": "realtime.item",
            "type": "function_call",
            "status": "in_progress",
            "name": call.name,
            "call_id": new_id("call"),
            "arguments": "",
        }
        await self._open_item(resp, item)
        ids = {**self._ids(resp, item), "call_id": item["call_id"]}
        half = len(args) // 2
        for piece in (args[:half], args[half:]):
            await resp.checkpoint()
            if piece:
                await self._send(
                    {"type": "response.function_call_arguments.delta", **ids, "delta": piece}
                )
        await self._send(
            {
                "type": "response.function_call_arguments.done",
                **ids,
                "name": call.name,
                "arguments": args,
            }
        )
        item["arguments"] = args
        resp.transcript = args
        code = self.script.drop_after_tool_call
        if code is not None and not self.faults.tool_call_dropped:
            self.faults.tool_call_dropped = True
            await self.close(code)
            raise ConnectionResetError("simulated drop after a tool call")
        await self._close_item(resp, item, "completed")

    async def _cancel_active(self, reason: str) -> None:
        """Stop the running response where it is and report it cancelled."""
        resp = self._active
        if resp is None:
            return
        self._active = None
        resp.stop_reason = reason
        resp.stop.set()
        # The response task sends the closing events itself; wait so they precede ours.
        if resp.task is not None and not resp.task.done():
            await asyncio.wait([resp.task])

    _handlers: dict[str, Callable[[SimSession, dict[str, Any]], Any]] = {
        "session.update": _session_update,
        "input_audio_buffer.append": _append,
        "input_audio_buffer.commit": _commit,
        "input_audio_buffer.clear": _clear_input,
        "conversation.item.create": _item_create,
        "conversation.item.truncate": _item_truncate,
        "conversation.item.delete": _item_delete,
        "conversation.item.retrieve": _item_retrieve,
        "response.create": _response_create,
        "response.cancel": _response_cancel,
    }


def _session_error(exc: sess.SessionConfigError, raw: dict[str, Any]) -> ClientError:
    """Map a local validation error to the error the real API sends (protocols.md 3)."""
    text = str(exc)
    if "missing required field `type`" in text and exc.field == "session":
        return ClientError(
            "missing_required_parameter",
            "Missing required parameter: 'session.type'.",
            "session.type",
        )
    if "unknown field" in text:
        param = f"session.{exc.field}"
        return ClientError("unknown_parameter", f"Unknown parameter: '{param}'.", param)
    if exc.field == "type":
        return ClientError(
            "invalid_value",
            f"Invalid value: '{raw.get('type')}'. Supported values are: 'realtime' and "
            "'transcription'.",
            "session.type",
        )
    return ClientError("invalid_value", text, f"session.{exc.field}")


class SimModel:
    """The fake Realtime server. `await start()` returns `ws://host:port/v1/realtime`."""

    def __init__(self, script: ModelScript | None = None) -> None:
        self.script = script or ModelScript()
        self.sessions: list[SimSession] = []
        self.rejected: list[int] = []  # HTTP statuses of refused handshakes
        self.faults = Faults()
        self.url = ""
        self.api_base = ""  # REST, for SIP calls: http://host:port/v1
        self.webhook_secret = new_secret()  # signs the simulated SIP webhooks
        self.sip_calls: dict[str, SimSipCall] = {}
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Condition()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application()
        app.router.add_get("/v1/realtime", self._handle)
        app.router.add_post("/v1/realtime/calls/{call_id}/{verb}", self._sip_rest)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        bound = sockets[0].getsockname()[1] if sockets else port
        self.url = f"ws://{host}:{bound}/v1/realtime"
        self.api_base = f"http://{host}:{bound}/v1"
        return self.url

    async def stop(self) -> None:
        for s in self.sessions:
            if not s.ws.closed:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(s.ws.close(code=1001, message=b"server stopping"), 1)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> SimModel:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _sip_rest(self, request: web.Request) -> web.Response:
        return await sip_rest(self, request)

    async def wait_for_session(self, n: int = 1, timeout: float = 5.0) -> SimSession:
        """The n-th session (1-based), awaiting its connection if needed."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(self.sessions) >= n)
        return self.sessions[n - 1]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        refuse = self.script.refuse_upgrade_with
        if refuse is not None and refuse != 401:
            self.rejected.append(refuse)
            body: dict[str, Any] = {
                "error": {"message": f"Simulated HTTP {refuse}.", "type": "server_error"}
            }
            return web.json_response(body, status=refuse)
        if not auth.startswith("Bearer ") or not auth[7:].strip() or refuse == 401:
            self.rejected.append(401)
            body = {
                "error": {
                    "message": "Incorrect API key provided.",
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                    "param": None,
                }
            }
            return web.json_response(body, status=401)
        call = None
        if "call_id" in request.query:  # SIP: the control socket of an accepted call
            call = self.sip_calls.get(request.query["call_id"])
            if call is None or call.state != "accepted":
                self.rejected.append(404)
                return web.json_response({"error": {"message": "Call not found."}}, status=404)
        if self.script.connect_delay_s:
            await asyncio.sleep(self.script.connect_delay_s)
        ws = web.WebSocketResponse(max_msg_size=16 * 1024 * 1024, heartbeat=None)
        await ws.prepare(request)
        if "OpenAI-Beta" in request.headers:
            await ws.close(code=4000, message=b"beta_api_shape_disabled")
            return ws
        model = request.query.get("model", "gpt-realtime")
        if call is not None:
            model = str(call.config.get("model", model))
        session = SimSession(
            ws, request, self.script, model, self.faults, call.config if call else None
        )
        if call is not None:
            session.sip_call = call
            call.sessions.append(session)
            call.bump()
        async with self._changed:
            self.sessions.append(session)
            self._changed.notify_all()
        try:
            await session.serve()
        except ConnectionError:
            pass
        except Exception:
            log.exception("simulated session %s failed; closing it", session.id)
            with contextlib.suppress(Exception):
                await ws.close(code=1011, message=b"internal error")
        finally:
            await session.shutdown()
        return ws
