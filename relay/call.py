"""CallBridge: the sans-I/O core of one call.

It takes events (Twilio frames, model events, console commands, tool results, the
time) and returns actions (frames to send, tools to run, hang up). No sockets, tasks
or clocks inside: every `now` is passed in, in seconds from a monotonic clock. The
pumps in `relay/runner.py` move bytes; everything a caller would notice is decided
here, so it is tested here in microseconds.

Hot path: `on_media` (caller audio in) and `response.output_audio.delta` (agent audio
out) pass base64 payloads through untouched, building frames by concatenation.
"""

from __future__ import annotations

import logging
from array import array
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import msgspec

from shared import realtime as rt
from shared import session as sess
from shared import twilio as tw
from shared.audio import b64_decoded_size, bytes_to_ms
from shared.console_protocol import (
    CommitAudioCommand,
    ConsoleCommand,
    EndCallCommand,
    FunctionOutputCommand,
    ItemCreateCommand,
    PingCommand,
    ResponseCancelCommand,
    ResponseCreateCommand,
    SessionUpdateCommand,
    SimCallCommand,
)

from .actions import Action, Hangup, RunTool, SwitchModel, ToConsole, ToModel, ToTwilio
from .playback import PlaybackTracker

log = logging.getLogger("relay.call")

_FRAME_RING = 4096  # arrival times of the last ~80 s of caller frames, for latency
_json = msgspec.json.Encoder()


@dataclass
class CallConfig:
    """Per-call knobs, fixed when the call starts."""

    session: dict[str, Any]
    backend_tools: frozenset[str] = frozenset()
    greeting: str = ""
    dtmf_format: str = "The caller pressed the {digit} key."
    early_audio_ms: int = 10_000
    console_tool_timeout_s: float = 30.0
    hangup_fallback_s: float = 20.0


@dataclass
class Turn:
    role: str  # "user" | "assistant"
    item_id: str
    text: str = ""


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0

    def add(self, usage: dict[str, Any] | None) -> None:
        if not usage:
            return
        self.input_tokens += int(usage.get("input_tokens", 0) or 0)
        self.output_tokens += int(usage.get("output_tokens", 0) or 0)
        self.total_tokens += int(usage.get("total_tokens", 0) or 0)


@dataclass
class CallBridge:
    call_sid: str
    stream_sid: str
    config: CallConfig
    started_at: float
    from_: str = ""
    to: str = ""
    state: str = "connecting"
    watched: bool = False  # a console is listening: forward model events

    model_ready: bool = False
    session_id: str = ""
    expires_at: float = 0.0  # unix seconds, from session.created
    applied_session: dict[str, Any] = field(default_factory=dict)

    playback: PlaybackTracker = field(default_factory=PlaybackTracker)
    received_ms: dict[str, float] = field(default_factory=dict)  # from the model, per item
    interrupted_items: set[str] = field(default_factory=set)
    response_id: str | None = None  # the response in progress
    response_requested: bool = False  # response.create sent, not yet created
    want_response: bool = False  # a response.create waits for the current one to end
    greeted: bool = False
    turns: int = 0
    usage: Usage = field(default_factory=Usage)
    transcript: list[Turn] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)

    pending_tools: dict[str, tuple[str, float]] = field(default_factory=dict)  # id->(name, due)
    hangup_after: Hangup | None = None
    hangup_armed: bool = False  # the goodbye response has been generated
    hangup_not_before: str | None = None  # the response that called the tool is not the goodbye
    hangup_due: float = 0.0
    ended: bool = False
    user_speaking: bool = False
    audio_item: str | None = None  # the item the running response is speaking

    _early: deque[tuple[str, float]] = field(default_factory=deque)
    _early_dropped: int = 0
    _frame_times: array[float] = field(default_factory=lambda: array("d", [0.0] * _FRAME_RING))
    _frames_in: int = 0  # frames appended to the current model session
    _turn_end_at: float | None = None
    _prefix: str = ""
    _mark_prefix: str = ""
    model_at_connect: str = ""
    _unknown_mark_logged: bool = False

    def __post_init__(self) -> None:
        sid = self.stream_sid
        self._prefix = '{"event":"media","streamSid":"' + sid + '","media":{"payload":"'
        self._mark_prefix = '{"event":"mark","streamSid":"' + sid + '","mark":{"name":"'
        self._early = deque(maxlen=max(1, self.config.early_audio_ms // 20))

    # --- info --------------------------------------------------------------------------

    @property
    def quiet(self) -> bool:
        """Nobody is speaking: a safe moment to hand over to a new model session."""
        return (
            self.response_id is None
            and not self.response_requested
            and not self.playback.playing
            and not self.user_speaking
            and not self.pending_tools
        )

    @property
    def model(self) -> str:
        return str(self.config.session.get("model", "gpt-realtime"))

    def info(self) -> dict[str, Any]:
        return {
            "call_sid": self.call_sid,
            "stream_sid": self.stream_sid,
            "from": self.from_,
            "to": self.to,
            "started_at": self.started_at,
            "state": self.state,
            "model": self.model,
        }

    def summary(self, now_wall: float, reason: str) -> dict[str, Any]:
        return {
            "duration_s": round(max(0.0, now_wall - self.started_at), 3),
            "turns": self.turns,
            "usage": {
                "input_tokens": self.usage.input_tokens,
                "output_tokens": self.usage.output_tokens,
                "total_tokens": self.usage.total_tokens,
            },
            "reason": reason,
            "latency_ms": list(self.latencies_ms),
        }

    def _event(self, kind: str, **fields: Any) -> ToConsole:
        return ToConsole({"type": kind, "call_sid": self.call_sid, **fields})

    def set_state(self, state: str) -> list[Action]:
        if state == self.state:
            return []
        self.state = state
        return [self._event("call.state", state=state)]

    # --- Twilio side -------------------------------------------------------------------

    def on_media(self, payload: str, now: float) -> bytes | None:
        """Caller audio. Returns the append event to send now, or None if queued."""
        if self.ended:
            return None
        if not self.model_ready:
            if len(self._early) == self._early.maxlen:
                self._early_dropped += 1
            self._early.append((payload, now))
            return None
        self._frame_times[self._frames_in % _FRAME_RING] = now
        self._frames_in += 1
        return b'{"type":"input_audio_buffer.append","audio":"' + payload.encode() + b'"}'

    def on_twilio(self, msg: tw.TwilioInbound, now: float) -> list[Action]:
        if self.ended:
            return []
        if isinstance(msg, tw.Media):
            data = self.on_media(msg.media.payload, now)
            return [ToModel(data)] if data is not None else []
        if isinstance(msg, tw.Mark):
            return self.on_mark(msg.mark.name, now)
        if isinstance(msg, tw.Dtmf):
            return self.on_dtmf(msg.dtmf.digit)
        if isinstance(msg, tw.Stop):
            return self.end("caller hung up")
        return []  # connected / a repeated start: nothing to do

    def on_mark(self, name: str, now: float) -> list[Action]:
        mark = self.playback.echoed(name, now)
        if mark is None:
            item = name.rpartition(":")[0]
            if item not in self.playback.items and not self._unknown_mark_logged:
                self._unknown_mark_logged = True
                log.warning("call %s: unknown mark %r ignored", self.call_sid, name[:64])
            return []
        actions: list[Action] = []
        if self.watched:
            actions.append(self._event("mark.played", item_id=mark.item_id, played_ms=mark.end_ms))
        actions += self._maybe_hang_up(now)
        return actions

    def on_dtmf(self, digit: str) -> list[Action]:
        text = self.config.dtmf_format.replace("{digit}", digit)
        item = rt.Item(
            type="message", role="user", content=[rt.ContentPart(type="input_text", text=text)]
        )
        actions: list[Action] = [self._event("dtmf", digit=digit)]
        if self.model_ready:
            actions.append(ToModel(rt.encode(rt.ConversationItemCreate(item=item))))
            actions += self._request_response()
        self.transcript.append(Turn("user", "", f"[DTMF {digit}]"))
        return actions

    def end(self, reason: str) -> list[Action]:
        if self.ended:
            return []
        self.ended = True
        self.state = "ended"
        return [self._event("call.state", state="ended")]

    # --- model side --------------------------------------------------------------------

    def on_model_open(
        self, now: float, *, reseed: bool = False, configured: bool = False
    ) -> list[Action]:
        """The model socket is open: configure it first, then flush early audio.

        `configured`: a pre-warmed session already got its session.update.
        """
        if self.ended:
            return []
        self.model_ready = True
        self.model_at_connect = self.model
        self._frames_in = 0
        self.response_id = None
        self.response_requested = False
        actions: list[Action] = []
        if not configured:
            actions.append(ToModel(rt.encode(rt.SessionUpdate(session=self.config.session))))
        if reseed:
            actions += self._reseed()
        if self._early_dropped:
            actions.append(
                self._event(
                    "error",
                    source="relay",
                    code="early_audio_overflow",
                    message=f"dropped {self._early_dropped * 20} ms of caller audio while the "
                    "model was connecting (RELAY_EARLY_AUDIO_MS bound)",
                )
            )
            log.warning("call %s: dropped %d early frames", self.call_sid, self._early_dropped)
            self._early_dropped = 0
        while self._early:
            payload, t = self._early.popleft()
            self._frame_times[self._frames_in % _FRAME_RING] = t
            self._frames_in += 1
            actions.append(
                ToModel(b'{"type":"input_audio_buffer.append","audio":"' + payload.encode() + b'"}')
            )
        actions += self.set_state("active")
        return actions

    def on_model_closed(self) -> list[Action]:
        self.model_ready = False
        if self.ended:
            return []
        return self.set_state("reconnecting")

    def _reseed(self) -> list[Action]:
        """Re-create the conversation so far in a fresh session (text items)."""
        actions: list[Action] = []
        for turn in self.transcript[-40:]:
            if not turn.text:
                continue
            if turn.role == "user":
                content = [rt.ContentPart(type="input_text", text=turn.text)]
            else:
                content = [rt.ContentPart(type="output_text", text=turn.text)]
            item = rt.Item(type="message", role=turn.role, content=content)
            actions.append(ToModel(rt.encode(rt.ConversationItemCreate(item=item))))
        return actions

    def on_model(self, raw: str | bytes, now: float) -> list[Action]:
        if self.ended:
            return []
        try:
            event = rt.decode_server_event(raw)
        except msgspec.DecodeError as exc:
            log.warning("call %s: malformed model event: %s", self.call_sid, exc)
            return [self._event("error", source="model", code="malformed", message=str(exc))]
        if isinstance(event, rt.OutputAudioDelta):
            return self._on_audio_delta(event, now)
        actions: list[Action] = []
        if self.watched:
            actions.append(
                ToConsole(
                    b'{"type":"model","call_sid":"'
                    + self.call_sid.encode()
                    + b'","event":'
                    + (raw.encode() if isinstance(raw, str) else raw)
                    + b"}"
                )
            )
        handler = _HANDLERS.get(type(event))
        if handler is not None:
            actions += handler(self, event, now)
        return actions

    def _on_audio_delta(self, ev: rt.OutputAudioDelta, now: float) -> list[Action]:
        item = ev.item_id
        if item in self.interrupted_items or not ev.delta:
            return []  # in flight when the caller barged in: never play it
        self.audio_item = item
        ms = bytes_to_ms(b64_decoded_size(ev.delta))
        self.received_ms[item] = self.received_ms.get(item, 0.0) + ms
        mark = self.playback.sent(item, ms, now)
        actions: list[Action] = [
            ToTwilio(self._prefix + ev.delta + '"}}'),
            ToTwilio(self._mark_prefix + mark.name + '"}}'),
        ]
        if self._turn_end_at is not None:
            latency = (now - self._turn_end_at) * 1000.0
            self._turn_end_at = None
            self.latencies_ms.append(round(latency, 1))
            actions.append(self._event("turn.latency", item_id=item, latency_ms=round(latency, 1)))
        if self.watched:
            actions.append(
                self._event(
                    "audio.progress", item_id=item, response_id=ev.response_id, sent_ms=mark.end_ms
                )
            )
        return actions

    def _on_session_created(self, ev: rt.SessionCreated, now: float) -> list[Action]:
        self.session_id = str(ev.session.get("id", ""))
        expires = ev.session.get("expires_at")
        self.expires_at = float(expires) if isinstance(expires, (int, float)) else 0.0
        return []

    def _on_session_updated(self, ev: rt.SessionUpdated, now: float) -> list[Action]:
        self.applied_session = ev.session
        if self.config.greeting and not self.greeted:
            self.greeted = True
            return self._request_response({"instructions": self.config.greeting})
        return []

    def _on_response_created(self, ev: rt.ResponseCreated, now: float) -> list[Action]:
        self.response_id = ev.response.id
        self.response_requested = False
        return []

    def _on_response_done(self, ev: rt.ResponseDone, now: float) -> list[Action]:
        resp = ev.response
        if self.response_id == resp.id or self.response_id is None:
            self.response_id = None
            self.audio_item = None
        self.response_requested = False
        usage = resp.usage if isinstance(resp.usage, dict) else None
        self.usage.add(usage)
        actions: list[Action] = []
        if resp.status == "completed":
            self.turns += 1
        elif resp.status == "failed":
            err = _status_error(resp)
            log.warning("call %s: response failed: %s", self.call_sid, err)
            actions.append(self._event("error", source="model", **err))
        goodbye = resp.id != self.hangup_not_before
        if (
            self.hangup_after is not None
            and not self.hangup_armed
            and goodbye
            and resp.status != "failed"
        ):
            # This response is the goodbye: hang up once the caller has heard it.
            self.hangup_armed = True
            self.hangup_due = now + self.config.hangup_fallback_s
        actions += self._maybe_hang_up(now)
        if self.want_response and not self.ended:
            self.want_response = False
            actions += self._request_response()
        return actions

    def _on_transcript_done(self, ev: rt.OutputAudioTranscriptDone, now: float) -> list[Action]:
        self.transcript.append(Turn("assistant", ev.item_id, ev.transcript))
        return []

    def _on_user_transcript(self, ev: rt.InputTranscriptionCompleted, now: float) -> list[Action]:
        self.transcript.append(Turn("user", ev.item_id, ev.transcript))
        return []

    def _on_speech_stopped(self, ev: rt.SpeechStopped, now: float) -> list[Action]:
        self.user_speaking = False
        frame = ev.audio_end_ms // 20
        if 0 <= frame < self._frames_in and self._frames_in - frame < _FRAME_RING:
            self._turn_end_at = self._frame_times[frame % _FRAME_RING]
        else:
            self._turn_end_at = now
        return []

    def _on_speech_started(self, ev: rt.SpeechStarted, now: float) -> list[Action]:
        self.user_speaking = True
        td = sess.turn_detection_of(self.config.session)
        if td is not None and td.get("interrupt_response") is False:
            return []  # the operator asked for no interruptions
        position = self.playback.position(now)
        if position is None and self.response_id is not None and self.audio_item is not None:
            # Twilio ran dry but the answer is still being generated (slow model): the
            # caller has heard all of it so far, and nothing more of it must play.
            item = self.audio_item
            position = (item, self.playback.items[item].played_ms)
        if position is None:
            return []  # the answer had finished playing: no clear, no truncate
        item_id, heard_ms = position
        audio_end_ms = int(min(heard_ms, self.received_ms.get(item_id, heard_ms)))
        self.playback.clear()
        self.interrupted_items.add(item_id)
        actions: list[Action] = [
            ToTwilio(tw.encode(tw.Clear(streamSid=self.stream_sid)).decode()),
            ToModel(
                rt.encode(
                    rt.ConversationItemTruncate(
                        item_id=item_id, content_index=0, audio_end_ms=audio_end_ms
                    )
                )
            ),
        ]
        # With turn detection on and interrupt_response not false the server cancels the
        # response itself (response.done cancelled/turn_detected); cancelling too would
        # only earn a response_cancel_not_active error.
        server_cancels = td is not None
        cancelled = False
        if self.response_id is not None and not server_cancels:
            actions.append(ToModel(rt.encode(rt.ResponseCancel())))
            cancelled = True
        self._mark_interrupted(item_id, audio_end_ms)
        sent = self.playback.items[item_id].sent_ms if item_id in self.playback.items else 0.0
        actions.append(
            self._event(
                "barge_in",
                item_id=item_id,
                audio_end_ms=audio_end_ms,
                sent_ms=sent,
                truncated=True,
                cancelled=cancelled or (server_cancels and self.response_id is not None),
            )
        )
        return actions

    def _mark_interrupted(self, item_id: str, heard_ms: int) -> None:
        received = self.received_ms.get(item_id, 0.0)
        for turn in reversed(self.transcript):
            if turn.item_id == item_id and turn.text:
                # Keep roughly what was heard, so a re-seeded session knows what was said.
                if received > 0:
                    keep = max(0, int(len(turn.text) * heard_ms / received))
                    turn.text = turn.text[:keep] + "..."
                break

    def _on_function_call(self, ev: rt.FunctionCallArgumentsDone, now: float) -> list[Action]:
        if ev.name in self.config.backend_tools:
            self.pending_tools[ev.call_id] = (ev.name, float("inf"))
            return [
                RunTool(ev.call_id, ev.name, ev.arguments),
                self._event(
                    "tool.started", call_id=ev.call_id, name=ev.name, arguments=ev.arguments
                ),
            ]
        due = now + self.config.console_tool_timeout_s
        self.pending_tools[ev.call_id] = (ev.name, due)
        return [
            self._event(
                "tool.pending",
                call_id=ev.call_id,
                name=ev.name,
                arguments=ev.arguments,
                timeout_s=self.config.console_tool_timeout_s,
            )
        ]

    def _on_error(self, ev: rt.Error, now: float) -> list[Action]:
        err = ev.error
        code = err.code if isinstance(err.code, str) else ""
        if code == "response_cancel_not_active":
            return []  # a benign race: the response ended as we cancelled it
        log.warning("call %s: model error %s: %s", self.call_sid, code or err.type, err.message)
        actions: list[Action] = [
            self._event("error", source="model", code=code or err.type, message=err.message)
        ]
        if code == "conversation_already_has_active_response":
            self.want_response = True
            self.response_requested = False
        if err.type == "server_error":
            # The session may be unhealthy: move to a fresh one at the next quiet moment.
            actions.append(SwitchModel(self.model, "model server error"))
        return actions

    # --- responses and tools -----------------------------------------------------------

    def _request_response(self, response: dict[str, Any] | None = None) -> list[Action]:
        if not self.model_ready:
            self.want_response = True
            return []
        if self.response_id is not None or self.response_requested:
            self.want_response = True
            return []
        self.response_requested = True
        event = rt.ResponseCreate(response=response) if response else rt.ResponseCreate()
        return [ToModel(rt.encode(event))]

    def on_tool_result(
        self, call_id: str, output: str, *, ok: bool, source: str, duration_ms: float, now: float
    ) -> list[Action]:
        """A tool finished (backend handler, console answer, or timeout)."""
        entry = self.pending_tools.pop(call_id, None)
        if entry is None or self.ended:
            return []  # already answered (e.g. a console answer after the timeout)
        name = entry[0]
        item = rt.Item(type="function_call_output", call_id=call_id, output=output)
        actions: list[Action] = [
            self._event(
                "tool.finished",
                call_id=call_id,
                name=name,
                output=output,
                ok=ok,
                duration_ms=round(duration_ms, 1),
                source=source,
            )
        ]
        if self.model_ready:
            actions.append(ToModel(rt.encode(rt.ConversationItemCreate(item=item))))
            actions += self._request_response()
        return actions

    def request_hangup(self, action: Hangup, now: float) -> None:
        """end_call / transfer_call: act after the goodbye the model says next."""
        self.hangup_after = action
        self.hangup_not_before = self.response_id
        self.hangup_due = now + self.config.hangup_fallback_s + 30.0

    def _maybe_hang_up(self, now: float) -> list[Action]:
        if self.hangup_after is None or self.ended:
            return []
        heard_all = self.hangup_armed and not self.playback.playing and self.response_id is None
        if heard_all or now >= self.hangup_due:
            action, self.hangup_after = self.hangup_after, None
            return [action]
        return []

    def next_deadline(self) -> float | None:
        dues = [due for _, due in self.pending_tools.values() if due != float("inf")]
        if self.hangup_after is not None:
            dues.append(self.hangup_due)
        return min(dues) if dues else None

    def on_timer(self, now: float) -> list[Action]:
        if self.ended:
            return []
        actions: list[Action] = []
        for call_id, (name, due) in list(self.pending_tools.items()):
            if due <= now:
                output = _json.encode(
                    {"error": f"no answer for {name} within the time limit; tell the caller"}
                ).decode()
                actions += self.on_tool_result(
                    call_id, output, ok=False, source="timeout", duration_ms=0.0, now=now
                )
        actions += self._maybe_hang_up(now)
        return actions

    # --- console -----------------------------------------------------------------------

    def on_console(self, cmd: ConsoleCommand, now: float) -> list[Action]:
        """A validated console command for this call. Raises ValueError to refuse it."""
        if self.ended:
            raise ValueError("the call has ended")
        if isinstance(cmd, SessionUpdateCommand):
            update = sess.check_update(cmd.session)
            new_model = update.get("model")
            self.config.session = sess.merge(self.config.session, update)
            if new_model and new_model != self.model_at_connect:
                return [SwitchModel(str(new_model), "model changed from the console")]
            update.pop("model", None)
            return (
                [ToModel(rt.encode(rt.SessionUpdate(session=update)))] if self.model_ready else []
            )
        if isinstance(cmd, ItemCreateCommand):
            try:
                item = msgspec.convert(cmd.item, rt.Item)
            except msgspec.ValidationError as exc:
                raise ValueError(f"item: {exc}") from None
            return self._to_model_or_refuse(rt.ConversationItemCreate(item=item))
        if isinstance(cmd, ResponseCreateCommand):
            resp = cmd.response if isinstance(cmd.response, dict) else None
            return self._request_response(resp)
        if isinstance(cmd, ResponseCancelCommand):
            if self.response_id is None:
                raise ValueError("no response in progress")
            return self._to_model_or_refuse(rt.ResponseCancel())
        if isinstance(cmd, CommitAudioCommand):
            return self._to_model_or_refuse(rt.InputAudioBufferCommit())
        if isinstance(cmd, FunctionOutputCommand):
            if cmd.call_id not in self.pending_tools:
                raise ValueError(f"no pending tool call {cmd.call_id!r} (answered or timed out)")
            return self.on_tool_result(
                cmd.call_id, cmd.output, ok=True, source="console", duration_ms=0.0, now=now
            )
        if isinstance(cmd, EndCallCommand):
            return [Hangup("ended from the console")]
        if isinstance(cmd, (SimCallCommand, PingCommand)):
            raise ValueError(f"{type(cmd).__name__} is not a call command")
        raise ValueError("unsupported command")

    def _to_model_or_refuse(self, event: rt.ClientEvent) -> list[Action]:
        if not self.model_ready:
            raise ValueError("the model is not connected right now; try again in a moment")
        return [ToModel(rt.encode(event))]


def _status_error(resp: rt.Response) -> dict[str, str]:
    details = resp.status_details
    if isinstance(details, rt.StatusDetails) and isinstance(details.error, rt.ErrorInfo):
        code = details.error.code if isinstance(details.error.code, str) else details.error.type
        return {"code": code or "failed", "message": details.error.message or "response failed"}
    return {"code": "response_failed", "message": "the model's response failed"}


_HANDLERS: dict[type, Any] = {
    rt.SessionCreated: CallBridge._on_session_created,
    rt.SessionUpdated: CallBridge._on_session_updated,
    rt.ResponseCreated: CallBridge._on_response_created,
    rt.ResponseDone: CallBridge._on_response_done,
    rt.OutputAudioTranscriptDone: CallBridge._on_transcript_done,
    rt.InputTranscriptionCompleted: CallBridge._on_user_transcript,
    rt.SpeechStarted: CallBridge._on_speech_started,
    rt.SpeechStopped: CallBridge._on_speech_stopped,
    rt.FunctionCallArgumentsDone: CallBridge._on_function_call,
    rt.Error: CallBridge._on_error,
}
