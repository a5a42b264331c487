"""CallBridge: the sans-I/O core of one call.

It takes events (Twilio frames, model events, socket opens and closes, console commands,
tool results, the time) and returns actions (frames to send, sockets to open after a
delay, tools to run, hang up). No sockets, tasks or clocks inside: every `now` is passed
in, in seconds from a monotonic clock. The pumps in `relay/runner.py` move bytes and
sleep; everything a caller would notice is decided here, so it is tested here in
microseconds.

The state is explicit: `Upstream` (relay/upstream.py) decides reconnects, give-ups and
hand-overs; `ResponseSlot` (relay/responses.py) tracks the one response a conversation
may run and what waits for it; `Conversation` (relay/conversation.py) keeps the turns in
the model's order for re-seeding a fresh session.

Hot path: `on_media` (caller audio in) and `response.output_audio.delta` (agent audio
out) pass base64 payloads through untouched, building frames by concatenation.
"""

from __future__ import annotations

import logging
from array import array
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

import msgspec

from shared import realtime as rt
from shared import session as sess
from shared import twilio as tw
from shared.audio import BYTES_PER_MS, b64_decoded_size, is_loud_b64, is_loud_pcm16_b64
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
from shared.usage import TokenUsage

from .actions import (
    Action,
    CloseModel,
    EndReason,
    Handover,
    Hangup,
    RunTool,
    ToConsole,
    ToModel,
    ToTwilio,
)
from .conversation import Conversation, Entry
from .model_link import PREWARM_EVENT_ID
from .playback import PlaybackTracker
from .responses import Request, ResponseSlot
from .upstream import GiveUp, Upstream

log = logging.getLogger("relay.call")

_FRAME_RING = 4096  # arrival times of the last ~80 s of caller frames, for latency
_SENT_KEPT = 256  # client events remembered by event_id, to match the model's errors to
_MAX_LATENCIES = 1000  # per-turn latencies kept for the summary (hours of turns)
_MAX_ITEMS = 32  # per-item audio books kept; older items are long finished
_MAX_LOG = 500  # tool calls and session changes kept for the call record
_SPARE_RETRY_S = 10.0  # after a failed rollover/switch connect
_ANSWER_WAIT_S = 5.0  # after the caller's turn ends, how long an answer may take to start
_json = msgspec.json.Encoder()

# Frequent events the core has nothing to do with, skipped undecoded while no console
# watches (most of a SIP call's traffic). The API writes `type` first; an event that
# does not start this way just takes the ordinary path.
_SKIPPED_TYPES = (
    "response.output_audio_transcript.delta",
    "response.output_text.delta",
    "response.function_call_arguments.delta",
    "conversation.item.input_audio_transcription.delta",
)
_SKIP_STR = tuple('{"type":"' + t + '",' for t in _SKIPPED_TYPES)
_SKIP_BYTES = tuple(p.encode() for p in _SKIP_STR)


def _skippable(raw: str | bytes) -> bool:
    return raw.startswith(_SKIP_STR) if isinstance(raw, str) else raw.startswith(_SKIP_BYTES)


# Errors that no retry can fix: end the call with the apology, and say what to fix.
FINAL_ERRORS: dict[str, str] = {
    "invalid_api_key": "OpenAI refused the API key: check OPENAI_API_KEY",
    "insufficient_quota": "the OpenAI account is out of quota: check its billing",
    "account_deactivated": "the OpenAI account is deactivated",
}


@dataclass
class CallConfig:
    """Per-call knobs, fixed when the call starts (the session may change from a console)."""

    session: dict[str, Any]
    backend_tools: frozenset[str] = frozenset()
    greeting: str = ""
    dtmf_format: str = "The caller pressed the {digit} key."
    early_audio_ms: int = 10_000
    console_tool_timeout_s: float = 30.0
    hangup_fallback_s: float = 20.0
    reconnect_give_up_s: float = 20.0
    rollover_margin_s: float = 300.0
    # False: SIP mode. The service carries the audio and plays it (no Twilio socket, no
    # marks); the session was configured when the call was accepted and lives as long as
    # the call, so a reconnect rejoins it instead of re-seeding a new one.
    media: bool = True
    # The media stream's audio, both ways: Twilio's is mu-law; a browser call may use
    # audio/pcm (24 kHz PCM16). Marks, truncation and frames are in ms; this converts.
    audio_format: str = "audio/pcmu"


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile, or None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


@dataclass(eq=False)
class CallBridge:
    call_sid: str
    stream_sid: str
    config: CallConfig
    started_at: float  # unix seconds
    from_: str = ""
    to: str = ""
    direction: str = "inbound"
    profile: str | None = None  # the agent profile whose settings the call uses
    clock_offset: float = 0.0  # unix time minus the monotonic `now` the pumps pass in
    state: str = "connecting"
    watched: bool = False  # a console is listening: forward model events

    upstream: Upstream = field(default_factory=Upstream)
    slot: ResponseSlot = field(default_factory=ResponseSlot)
    conversation: Conversation = field(default_factory=Conversation)
    playback: PlaybackTracker = field(default_factory=PlaybackTracker)

    model_ready: bool = False  # the current socket is open and configured
    session_id: str = ""
    expires_at: float = 0.0  # unix seconds, from session.created
    applied_session: dict[str, Any] = field(default_factory=dict)
    model_at_connect: str = ""
    handovers: int = 0

    received_ms: dict[str, float] = field(default_factory=dict)  # from the model, per item
    interrupted_items: dict[str, None] = field(default_factory=dict)  # an ordered set
    audio_item: str | None = None  # the item the running response is speaking
    greeted: bool = False
    turns: int = 0
    usage: TokenUsage = field(default_factory=TokenUsage)
    # For the call record (relay/call_record.py): what happened, with unix times, bounded.
    latency_log: list[tuple[str, float]] = field(default_factory=list)  # (item_id, ms)
    tool_log: list[dict[str, Any]] = field(default_factory=list)
    session_log: list[dict[str, Any]] = field(default_factory=list)  # reconnects, hand-overs
    recording_sids: list[str] = field(default_factory=list)  # Twilio recordings (console)

    # call_id -> (name, due, arguments, started at)
    pending_tools: dict[str, tuple[str, float, str, float]] = field(default_factory=dict)
    hangup_after: Hangup | None = None
    hangup_armed: bool = False  # the goodbye response has been generated
    hangup_not_before: str | None = None  # the response that called the tool is not the goodbye
    hangup_due: float = 0.0
    ending: Hangup | None = None  # the hang-up the core asked for, if any
    ended: bool = False
    end_reason: EndReason = EndReason.CALLER_HUNG_UP
    end_detail: str = ""
    user_speaking: bool = False
    service_playing: bool = False  # SIP: the service is playing an answer to the caller
    answer_due: float | None = None  # the caller finished a turn; the model's answer is due

    _early: deque[tuple[str, float]] = field(default_factory=deque)
    _early_dropped: int = 0
    _frame_times: array[float] = field(default_factory=lambda: array("d", [0.0] * _FRAME_RING))
    _frames_in: int = 0  # frames appended to the current model session
    _last_loud: int = -1  # index of the caller's last voice-level frame in this turn
    _turn_end_at: float | None = None
    _prefix: str = ""
    _mark_prefix: str = ""
    _unknown_mark_logged: bool = False
    _seq: int = 0
    _sent: OrderedDict[str, str] = field(default_factory=OrderedDict)  # event_id -> type
    _initial_update: str = ""  # event_id of the session.update that configures a session
    _spare_not_before: float = 0.0
    _bytes_per_ms: float = 8.0
    _pcm16: bool = False

    def __post_init__(self) -> None:
        sid = self.stream_sid
        self._prefix = '{"event":"media","streamSid":"' + sid + '","media":{"payload":"'
        self._mark_prefix = '{"event":"mark","streamSid":"' + sid + '","mark":{"name":"'
        self._early = deque(maxlen=max(1, self.config.early_audio_ms // 20))
        self.upstream.give_up_s = self.config.reconnect_give_up_s
        self._bytes_per_ms = BYTES_PER_MS[self.config.audio_format]
        self._pcm16 = self.config.audio_format == "audio/pcm"

    # --- info --------------------------------------------------------------------------

    @property
    def quiet(self) -> bool:
        """Nobody is speaking and nothing is pending: a safe moment for a new session."""
        return (
            not self.slot.busy
            and not self.playing
            and not self.user_speaking
            and self.answer_due is None
            and not self.pending_tools
        )

    @property
    def playing(self) -> bool:
        """The caller is hearing (or is about to hear) an answer."""
        return self.playback.playing if self.config.media else self.service_playing

    @property
    def model(self) -> str:
        return str(self.config.session.get("model", "gpt-realtime"))

    @property
    def response_id(self) -> str | None:
        """The response the model is producing now, if any."""
        return self.slot.response_id if self.slot.state == "active" else None

    def info(self) -> dict[str, Any]:
        return {
            "call_sid": self.call_sid,
            "stream_sid": self.stream_sid,
            "from": self.from_,
            "to": self.to,
            "direction": self.direction,
            "started_at": self.started_at,
            "state": self.state,
            "model": self.model,
            "profile": self.profile,
        }

    @property
    def latencies_ms(self) -> list[float]:
        """Voice-to-voice latency of each timed turn, in order."""
        return [ms for _, ms in self.latency_log]

    def summary(self, now_wall: float) -> dict[str, Any]:
        latencies = self.latencies_ms
        return {
            "duration_s": round(max(0.0, now_wall - self.started_at), 3),
            "turns": self.turns,
            "usage": self.usage.as_dict(),
            "reason": self.end_detail or REASON_TEXT[self.end_reason],
            "end_reason": self.end_reason.value,
            "latency_ms": latencies,
            "latency_p50_ms": percentile(latencies, 50),
            "latency_p95_ms": percentile(latencies, 95),
            "reconnects": self.upstream.reconnects,
            "handovers": self.handovers,
        }

    def _event(self, kind: str, **fields: Any) -> ToConsole:
        return ToConsole({"type": kind, "call_sid": self.call_sid, **fields})

    def set_state(self, state: str) -> list[Action]:
        if state == self.state:
            return []
        self.state = state
        return [self._event("call.state", state=state)]

    # --- client events ------------------------------------------------------------------

    def _wall(self, now: float) -> float:
        """Unix time of a monotonic `now`."""
        return now + self.clock_offset

    def _next_id(self) -> str:
        self._seq += 1
        return f"relay_{self._seq}"

    def _send(self, event: rt.ClientEvent, event_id: str = "") -> ToModel:
        """A client event with an id of ours, remembered so an `error` can name it."""
        event.event_id = event_id = event_id or self._next_id()
        self._sent[event_id] = type(event).__struct_config__.tag  # type: ignore[assignment]
        if len(self._sent) > _SENT_KEPT:
            self._sent.popitem(last=False)
        return ToModel(rt.encode(event))

    def _create_item(self, entry: Entry) -> ToModel:
        entry.session = self.upstream.gen
        return self._send(rt.ConversationItemCreate(item=Conversation.item_for(entry)))

    # --- lifecycle ----------------------------------------------------------------------

    def start(self, *, prewarmed: bool) -> list[Action]:
        """The Twilio stream is accepted: open the model session (or take the pre-warmed one)."""
        return [self.upstream.start(self.model, prewarmed)]

    def end(self, reason: EndReason, detail: str = "") -> list[Action]:
        """The Twilio side is gone. The reason of a hang-up the core asked for wins."""
        if self.ended:
            return []
        self.ended = True
        if self.ending is not None:
            reason, detail = self.ending.reason, self.ending.detail
        self.end_reason, self.end_detail = reason, detail
        self.state = "ended"
        self.slot.clear()
        return [self._event("call.state", state="ended")]

    def _hang_up(self, action: Hangup) -> list[Action]:
        if self.ended or self.ending is not None:
            return []
        self.ending = action
        self.hangup_after = None
        return [action]

    def _give_up(self, detail: str) -> list[Action]:
        """The model cannot be had: the caller hears the apology and the call ends."""
        log.error("call %s: %s; ending the call", self.call_sid, detail)
        return [
            self._event("error", source="model", code="model_unavailable", message=detail),
            *self._hang_up(Hangup(EndReason.MODEL_UNAVAILABLE, detail, apology=True)),
        ]

    def on_task_failed(self, detail: str) -> list[Action]:
        """A task of this call died: never leave the caller in silence."""
        return [
            self._event("error", source="relay", code="internal_error", message=detail),
            *self._hang_up(Hangup(EndReason.ERROR, detail, apology=True)),
        ]

    def shutdown(self) -> list[Action]:
        """The relay is stopping and the drain time is over."""
        return self._hang_up(
            Hangup(EndReason.RELAY_SHUTDOWN, "the relay is restarting", apology=True)
        )

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
        index = self._frames_in
        self._frame_times[index % _FRAME_RING] = now
        self._frames_in = index + 1
        if self.user_speaking and (
            is_loud_pcm16_b64(payload) if self._pcm16 else is_loud_b64(payload)
        ):
            self._last_loud = index
        # Appends carry no event_id: the hot path stays lean, and a refused frame has no
        # remedy the relay could apply.
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
            return self.on_dtmf(msg.dtmf.digit, now)
        if isinstance(msg, tw.Stop):
            return self.end(EndReason.CALLER_HUNG_UP, "the caller hung up")
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
        actions += self._maybe_handover(now)
        return actions

    def on_dtmf(self, digit: str, now: float) -> list[Action]:
        """A keypress becomes a user message and gets an answer, even mid-reconnect."""
        text = self.config.dtmf_format.replace("{digit}", digit)
        entry = self.conversation.add_local(
            Entry(
                self.conversation.new_id("dtmf"),
                "message",
                role="user",
                text=text,
                at=self._wall(now),
            )
        )
        actions: list[Action] = [self._event("dtmf", digit=digit)]
        if self.model_ready:
            actions.append(self._create_item(entry))
        actions += self._want_response(Request("dtmf"), now)
        return actions

    # --- the model socket ---------------------------------------------------------------

    def on_model_open(self, gen: int, now: float, *, configured: bool = False) -> list[Action]:
        """Socket `gen` is open. `configured`: a pre-warmed session got its session.update."""
        which = self.upstream.opened(gen)
        if which == "stale" or self.ended:
            return [CloseModel(gen)]
        if which == "spare":
            return self._maybe_handover(now)
        return self._session_opened(now, configured=configured)

    def _session_opened(self, now: float, *, configured: bool) -> list[Action]:
        """Configure the current session, re-seed it, flush early audio, answer what waits."""
        reseed = bool(self.model_at_connect)  # not the call's first session
        self.model_ready = True
        self.model_at_connect = self.model
        self._frames_in = 0
        self._last_loud = -1
        self.user_speaking = False  # the new session's turn detection starts afresh
        self.answer_due = None
        actions: list[Action] = []
        if not self.config.media:
            return actions + self._sip_session_opened(now)
        if configured:
            self._initial_update = PREWARM_EVENT_ID
        else:
            self._initial_update = self._next_id()
            update = rt.SessionUpdate(session=self.config.session)
            actions.append(self._send(update, self._initial_update))
        for entry in self.conversation.unsent(self.upstream.gen, reseed):
            actions.append(self._create_item(entry))
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
        actions += self._pump_response(now)
        return actions

    def _sip_session_opened(self, now: float) -> list[Action]:
        """SIP: the accepted call's session, joined (again): send what waited, greet once."""
        actions: list[Action] = [
            self._create_item(e) for e in self.conversation.unsent(self.upstream.gen, False)
        ]
        if self.config.greeting and not self.greeted:
            self.greeted = True  # the accept configured it: no session.updated to wait for
            self.slot.want(Request("greeting", {"instructions": self.config.greeting}))
        return actions + self.set_state("active") + self._pump_response(now)

    def on_connect_failed(self, gen: int, now: float, *, final: bool, detail: str) -> list[Action]:
        """Socket `gen` could not be opened (`final`: the model refused for good)."""
        if self.ended:
            return []
        if self.upstream.spare_failed(gen):
            log.warning("call %s: could not open a fresh session: %s", self.call_sid, detail)
            self._spare_not_before = now + _SPARE_RETRY_S
            return [self._event("error", source="model", code="switch_failed", message=detail)]
        decision = self.upstream.connect_failed(gen, self.model, now, final=final, detail=detail)
        if decision is None:
            return []
        actions: list[Action] = [
            self._event("error", source="model", code="connect_failed", message=detail)
        ]
        if isinstance(decision, GiveUp):
            return actions + self._give_up(decision.detail)
        return [*actions, decision]

    def on_model_closed(self, gen: int, code: int | None, now: float) -> list[Action]:
        """Socket `gen` closed. The current one: reconnect, hand over, or give up."""
        if self.ended:
            return []
        if gen == self.upstream.spare_gen:
            self.upstream.drop_spare()
            return []
        was_open = self.upstream.is_open and gen == self.upstream.gen
        if not self.config.media and was_open and code == 1000:
            # SIP: the service closes the control socket when the call is over.
            return self._hang_up(Hangup(EndReason.CALLER_HUNG_UP, "the caller hung up"))
        decision = self.upstream.closed(gen, self.model, code, now)
        if decision is None:
            return []  # a socket we handed over from, closing as asked
        self.model_ready = False
        if was_open:
            self.slot.lost(caller_speaking=self.user_speaking)
        self.audio_item = None
        self._log_session("reconnect", f"the model socket closed (code {code})", now)
        actions: list[Action] = [
            *self.set_state("reconnecting"),
            self._event("model.reconnecting", code=code, attempt=self.upstream.reconnects),
        ]
        log.warning(
            "call %s: model socket closed (code %s); %s",
            self.call_sid,
            code,
            "giving up" if isinstance(decision, GiveUp) else "reconnecting",
        )
        if isinstance(decision, GiveUp):
            return actions + self._give_up(decision.detail)
        if isinstance(decision, Handover):
            return actions + self._handover(decision, now)
        return [*actions, decision]

    def _maybe_handover(self, now: float) -> list[Action]:
        up = self.upstream
        if not up.spare_ready or not self.quiet or self.ended:
            return []
        return self._handover(up.handover(), now)

    def _log_session(self, kind: str, reason: str, now: float) -> None:
        if len(self.session_log) < _MAX_LOG:
            self.session_log.append({"kind": kind, "at": self._wall(now), "reason": reason})

    def _handover(self, action: Handover, now: float) -> list[Action]:
        reason = self.upstream.spare_reason or "reconnect"
        self.handovers += 1
        kind = "rollover" if reason == "session rollover" else "switch"
        if reason != "reconnect":  # a drop is already logged as a reconnect
            self._log_session(kind, reason, now)
        log.info("call %s: switching model session (%s)", self.call_sid, reason)
        self.model_ready = False
        return [
            action,
            self._event("model.switched", model=self.model, reason=reason),
            *self._session_opened(now, configured=False),
        ]

    def _want_spare(self, reason: str, now: float) -> list[Action]:
        if now < self._spare_not_before:
            return []
        connect = self.upstream.want_spare(self.model, reason)
        return [connect] if connect is not None else []

    # --- model events -------------------------------------------------------------------

    def on_model(self, raw: str | bytes, now: float) -> list[Action]:
        if self.ended:
            return []
        delta = rt.audio_delta(raw)  # the hot path: half the model's events, and never forwarded
        if delta is not None:
            return self._on_audio_delta(delta, now)
        if not self.watched and _skippable(raw):
            return []  # a streaming delta only a console would show: not even decoded
        try:
            event = rt.decode_server_event(raw)
        except msgspec.DecodeError as exc:
            log.warning("call %s: malformed model event: %s", self.call_sid, exc)
            return [self._event("error", source="model", code="malformed", message=str(exc))]
        if isinstance(event, rt.OutputAudioDelta):
            return self._on_audio_delta(event, now)
        actions: list[Action] = []
        if self.watched:
            ts = f"{now + self.clock_offset:.3f}".encode()
            actions.append(
                ToConsole(
                    b'{"type":"model","call_sid":"'
                    + self.call_sid.encode()
                    + b'","ts":'
                    + ts
                    + b',"event":'
                    + (raw.encode() if isinstance(raw, str) else raw)
                    + b"}"
                )
            )
        handler = _HANDLERS.get(type(event))
        if handler is not None:
            actions += handler(self, event, now)
        if self.upstream.spare_ready:
            actions += self._maybe_handover(now)
        return actions

    def _on_audio_delta(self, ev: rt.AudioDelta | rt.OutputAudioDelta, now: float) -> list[Action]:
        if not self.config.media:
            return []  # SIP: the audio is the service's to play, not ours
        item = ev.item_id
        if item in self.interrupted_items or not ev.delta:
            return []  # in flight when the caller barged in: never play it
        self.audio_item = item
        ms = b64_decoded_size(ev.delta) / self._bytes_per_ms
        received = self.received_ms.get(item)
        if received is None:
            received = 0.0
            _bound(self.received_ms)
        self.received_ms[item] = received + ms
        mark = self.playback.sent(item, ms, now)
        actions: list[Action] = [
            ToTwilio(self._prefix + ev.delta + '"}}'),
            ToTwilio(self._mark_prefix + mark.name + '"}}'),
        ]
        latency = self._answer_heard(item, now)
        if latency is not None:
            actions.append(self._event("turn.latency", item_id=item, latency_ms=latency))
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
            return self._want_response(
                Request("greeting", {"instructions": self.config.greeting}), now
            )
        return []

    def _on_item_added(
        self, ev: rt.ConversationItemAdded | rt.ConversationItemDone, now: float
    ) -> list[Action]:
        self.conversation.added(ev.item, ev.previous_item_id, self.upstream.gen, self._wall(now))
        return []

    def _on_item_done(self, ev: rt.ConversationItemDone, now: float) -> list[Action]:
        if ev.item.id not in self.conversation.by_id:
            self.conversation.added(
                ev.item, ev.previous_item_id, self.upstream.gen, self._wall(now)
            )
        self.conversation.done(ev.item)
        return []

    def _on_response_created(self, ev: rt.ResponseCreated, now: float) -> list[Action]:
        self.slot.created(ev.response.id)
        self.answer_due = None
        return []

    def _on_response_done(self, ev: rt.ResponseDone, now: float) -> list[Action]:
        resp = ev.response
        self.slot.done(resp.id)
        if self.audio_item is not None and self.slot.state == "idle":
            self.audio_item = None
        usage = resp.usage if isinstance(resp.usage, dict) else None
        self.usage.add(usage)
        actions: list[Action] = []
        if resp.status == "completed":
            self.turns += 1
        elif resp.status == "failed":
            err = _status_error(resp)
            log.warning("call %s: response failed: %s", self.call_sid, err)
            actions.append(self._event("error", source="model", **err))
            if err["code"] in FINAL_ERRORS:
                return actions + self._give_up(FINAL_ERRORS[err["code"]])
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
        actions += self._pump_response(now)
        return actions

    def _on_transcript_done(self, ev: rt.OutputAudioTranscriptDone, now: float) -> list[Action]:
        self._ensure_entry(ev.item_id, "assistant", now)
        self.conversation.set_text(ev.item_id, ev.transcript)
        return []

    def _on_user_transcript(self, ev: rt.InputTranscriptionCompleted, now: float) -> list[Action]:
        self._ensure_entry(ev.item_id, "user", now)
        self.conversation.set_text(ev.item_id, ev.transcript)
        return []

    def _ensure_entry(self, item_id: str, role: str, now: float) -> None:
        """An item whose `conversation.item.added` we never saw: keep it at the end."""
        if item_id and item_id not in self.conversation.by_id:
            item = rt.Item(type="message", id=item_id, role=role)
            self.conversation.added(item, None, self.upstream.gen, self._wall(now))

    def _on_speech_stopped(self, ev: rt.SpeechStopped, now: float) -> list[Action]:
        self.user_speaking = False
        self._turn_end_at = self._speech_end_time(ev.audio_end_ms, now)
        td = sess.turn_detection_of(self.config.session)
        if td is not None and td.get("create_response") is not False:
            # The model is about to answer from audio only this session holds: not a
            # moment to hand over to a fresh one.
            self.answer_due = now + _ANSWER_WAIT_S
        return []

    def _speech_end_time(self, audio_end_ms: int, now: float) -> float:
        """When the caller stopped speaking, as the relay received it.

        `audio_end_ms` includes the silence turn detection waited for, so the last
        voice-level frame before it is the end of speech; without one, server VAD's
        configured silence is taken off instead."""
        td = sess.turn_detection_of(self.config.session) or {}
        if not self.config.media:  # no frames to look back over: take the silence off
            silence = td.get("silence_duration_ms", 500) if td.get("type") == "server_vad" else 0
            return now - (silence / 1000.0 if isinstance(silence, int) else 0.0)
        end = audio_end_ms // 20
        frames = self._frames_in
        loud = self._last_loud
        self._last_loud = -1
        if 0 <= loud <= end and frames - loud < _FRAME_RING:
            return self._frame_times[loud % _FRAME_RING]
        silence = td.get("silence_duration_ms", 500) if td.get("type") == "server_vad" else 0
        frame = end - (silence // 20 if isinstance(silence, int) else 0)
        if 0 <= frame < frames and frames - frame < _FRAME_RING:
            return self._frame_times[frame % _FRAME_RING]
        return now

    def _on_speech_started(self, ev: rt.SpeechStarted, now: float) -> list[Action]:
        self.user_speaking = True
        self._last_loud = -1
        if not self.config.media:
            return []  # SIP: the service stops its own playback and truncates the answer
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
        received = self.received_ms.get(item_id, heard_ms)
        audio_end_ms = int(min(heard_ms, received))
        self.playback.clear()
        self.interrupted_items[item_id] = None
        _bound(self.interrupted_items)
        actions: list[Action] = [
            ToTwilio(tw.encode(tw.Clear(streamSid=self.stream_sid)).decode()),
            self._send(
                rt.ConversationItemTruncate(
                    item_id=item_id, content_index=0, audio_end_ms=audio_end_ms
                )
            ),
        ]
        # With turn detection on and interrupt_response not false the server cancels the
        # response itself (response.done cancelled/turn_detected); cancelling too would
        # only earn a response_cancel_not_active error.
        server_cancels = td is not None
        cancelled = False
        if self.response_id is not None and not server_cancels:
            actions.append(self._send(rt.ResponseCancel()))
            cancelled = True
        self.conversation.interrupted(item_id, audio_end_ms, received)
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

    def _on_playback_started(self, ev: rt.OutputAudioBufferStarted, now: float) -> list[Action]:
        """SIP: the service started playing an answer; the caller hears it from now."""
        self.service_playing = True
        latency = self._answer_heard(self.audio_item or ev.response_id, now)
        if latency is None:
            return []
        return [self._event("turn.latency", item_id=ev.response_id, latency_ms=latency)]

    def _answer_heard(self, item: str, now: float) -> float | None:
        """The caller starts hearing an answer: the turn's voice-to-voice latency in ms
        (kept for the summary and the record), or None if no turn end was timed."""
        if self._turn_end_at is None:
            return None
        latency = round((now - self._turn_end_at) * 1000.0, 1)
        self._turn_end_at = None
        if len(self.latency_log) < _MAX_LATENCIES:
            self.latency_log.append((item, latency))
        return latency

    def _on_playback_stopped(
        self, ev: rt.OutputAudioBufferStopped | rt.OutputAudioBufferCleared, now: float
    ) -> list[Action]:
        self.service_playing = False
        return self._maybe_hang_up(now)

    def _on_item_truncated(self, ev: rt.ConversationItemTruncated, now: float) -> list[Action]:
        """SIP: the service cut an answer where the caller interrupted it."""
        if self.config.media:
            return []  # our own truncate, confirmed
        self.conversation.interrupted(ev.item_id, ev.audio_end_ms, 0.0)
        return [
            self._event(
                "barge_in",
                item_id=ev.item_id,
                audio_end_ms=ev.audio_end_ms,
                sent_ms=ev.audio_end_ms,
                truncated=True,
                cancelled=self.response_id is not None,
            )
        ]

    def _on_dtmf_received(self, ev: rt.DtmfReceived, now: float) -> list[Action]:
        return self.on_dtmf(ev.event, now) if ev.event else []

    def _on_function_call(self, ev: rt.FunctionCallArgumentsDone, now: float) -> list[Action]:
        wall = self._wall(now)
        if ev.item_id not in self.conversation.by_id:
            item = rt.Item(type="function_call", id=ev.item_id)
            self.conversation.added(item, None, self.upstream.gen, wall)
        self.conversation.set_call(ev.item_id, ev.call_id, ev.name, ev.arguments)
        if ev.name in self.config.backend_tools:
            self.pending_tools[ev.call_id] = (ev.name, float("inf"), ev.arguments, wall)
            return [
                RunTool(ev.call_id, ev.name, ev.arguments),
                self._event(
                    "tool.started", call_id=ev.call_id, name=ev.name, arguments=ev.arguments
                ),
            ]
        due = now + self.config.console_tool_timeout_s
        self.pending_tools[ev.call_id] = (ev.name, due, ev.arguments, wall)
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
        event_id = err.event_id if isinstance(err.event_id, str) else ""
        refused = self._sent.pop(event_id, "") if event_id else ""
        if code == "response_cancel_not_active":
            return []  # a benign race: the response ended as we cancelled it
        log.warning(
            "call %s: model error %s%s: %s",
            self.call_sid,
            code or err.type,
            f" (for {refused})" if refused else "",
            err.message,
        )
        actions: list[Action] = [
            self._event(
                "error",
                source="model",
                code=code or err.type,
                message=err.message,
                refused=refused or None,
            )
        ]
        if code in FINAL_ERRORS:
            return actions + self._give_up(FINAL_ERRORS[code])
        if event_id and event_id in (self._initial_update, PREWARM_EVENT_ID):
            # The session would run on the API's defaults (wrong audio format, no tools):
            # the caller would hear noise. Nothing the call can do: fix the config.
            detail = f"the model refused the session settings ({err.message}); fix them"
            return actions + self._give_up(detail)
        busy = code == "conversation_already_has_active_response"
        if refused == "response.create" or (busy and not event_id):
            dropped = self.slot.refused(
                event_id or self.slot.event_id,
                transient=err.type == "server_error",
                busy=busy,
            )
            if dropped is not None:
                actions.append(
                    self._event(
                        "error",
                        source="relay",
                        code="response_dropped",
                        message=f"the model refused a response ({dropped.source}): {err.message}",
                    )
                )
            actions += self._pump_response(now)
        if err.type == "server_error":
            # The session may be unhealthy: move to a fresh one at the next quiet moment.
            actions += self._want_spare("model server error", now)
        return actions

    # --- responses and tools -----------------------------------------------------------

    def _want_response(self, request: Request, now: float) -> list[Action]:
        if not self.slot.want(request):
            log.warning("call %s: too many responses waiting; one dropped", self.call_sid)
            return [
                self._event(
                    "error",
                    source="relay",
                    code="response_dropped",
                    message="too many responses were waiting; this one was dropped",
                )
            ]
        return self._pump_response(now)

    def _pump_response(self, now: float) -> list[Action]:
        """Ask for the next waiting response if the model can take one now."""
        if not self.model_ready or self.ended or self.slot.state != "idle":
            return []
        event_id = self._next_id()
        request = self.slot.next(event_id, now)
        if request is None:
            return []
        event = rt.ResponseCreate(response=request.options) if request.options else None
        return [self._send(event or rt.ResponseCreate(), event_id)]

    def on_tool_result(
        self, call_id: str, output: str, *, ok: bool, source: str, duration_ms: float, now: float
    ) -> list[Action]:
        """A tool finished (backend handler, console answer, or timeout).

        The output is kept in the conversation even while no model is connected: the next
        session gets it after the re-seed, and the caller hears the answer."""
        entry = self.pending_tools.pop(call_id, None)
        if entry is None or self.ended:
            return []  # already answered (e.g. a console answer after the timeout)
        name, _, arguments, at = entry
        if source != "backend":  # a console's answer (or none): as long as the model waited
            duration_ms = max(0.0, (self._wall(now) - at) * 1000.0)
        if len(self.tool_log) < _MAX_LOG:
            self.tool_log.append(
                {
                    "call_id": call_id,
                    "name": name,
                    "arguments": arguments,
                    "output": output,
                    "ok": ok,
                    "duration_ms": round(duration_ms),
                    "source": source,
                    "at": at,
                }
            )
        out = self.conversation.add_local(
            Entry(
                self.conversation.new_id("out"),
                "function_call_output",
                call_id=call_id,
                output=output,
                at=self._wall(now),
            )
        )
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
            actions.append(self._create_item(out))
        actions += self._want_response(Request("tool"), now)
        return actions

    def request_hangup(self, action: Hangup, now: float) -> None:
        """end_call / transfer_call: act after the goodbye the model says next."""
        self.hangup_after = action
        self.hangup_not_before = self.response_id
        self.hangup_due = now + self.config.hangup_fallback_s + 30.0

    def _maybe_hang_up(self, now: float) -> list[Action]:
        if self.hangup_after is None or self.ended:
            return []
        heard_all = self.hangup_armed and not self.playing and self.response_id is None
        if heard_all or now >= self.hangup_due:
            return self._hang_up(self.hangup_after)
        return []

    def next_deadline(self) -> float | None:
        dues = [p[1] for p in self.pending_tools.values() if p[1] != float("inf")]
        if self.hangup_after is not None:
            dues.append(self.hangup_due)
        if (slot_due := self.slot.deadline()) is not None:
            dues.append(slot_due)
        return min(dues) if dues else None

    def on_timer(self, now: float) -> list[Action]:
        if self.ended:
            return []
        actions: list[Action] = []
        for call_id, (name, due, _, _) in list(self.pending_tools.items()):
            if due <= now:
                output = _json.encode(
                    {"error": f"no answer for {name} within the time limit; tell the caller"}
                ).decode()
                actions += self.on_tool_result(
                    call_id, output, ok=False, source="timeout", duration_ms=0.0, now=now
                )
        if self.answer_due is not None and now >= self.answer_due:
            self.answer_due = None  # no answer came (or it was never going to)
        lost = self.slot.timed_out(now)
        if lost is not None:
            actions.append(
                self._event(
                    "error",
                    source="model",
                    code="response_timeout",
                    message=f"the model never started a response ({lost.source})",
                )
            )
        actions += self._pump_response(now)
        actions += self._maybe_hang_up(now)
        rollover_at = self.expires_at - self.config.rollover_margin_s
        rollover = self.config.media and self.expires_at and self.upstream.is_open
        if rollover and now + self.clock_offset > rollover_at:
            actions += self._want_spare("session rollover", now)
        actions += self._maybe_handover(now)
        return actions

    # --- console -----------------------------------------------------------------------

    def on_console(self, cmd: ConsoleCommand, now: float) -> list[Action]:
        """A validated console command for this call. Raises ValueError to refuse it."""
        if self.ended or self.ending is not None:
            raise ValueError("the call has ended")
        if isinstance(cmd, SessionUpdateCommand):
            update = sess.check_update(cmd.session)
            new_model = update.get("model")
            self.config.session = sess.merge(self.config.session, update)
            if new_model and new_model != self.model_at_connect:
                if not self.config.media:
                    raise ValueError("a SIP call keeps the model it was accepted with")
                return self._want_spare("model changed from the console", now)
            update.pop("model", None)
            return [self._send(rt.SessionUpdate(session=update))] if self.model_ready else []
        if isinstance(cmd, ItemCreateCommand):
            try:
                item = msgspec.convert(cmd.item, rt.Item)
            except msgspec.ValidationError as exc:
                raise ValueError(f"item: {exc}") from None
            return self._to_model_or_refuse(rt.ConversationItemCreate(item=item))
        if isinstance(cmd, ResponseCreateCommand):
            options = cmd.response if isinstance(cmd.response, dict) and cmd.response else None
            if not self.slot.want(Request("console", options)):
                raise ValueError("too many responses are waiting; try again in a moment")
            return self._pump_response(now)
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
            return self._hang_up(Hangup(EndReason.CONSOLE_ENDED, "ended from the console"))
        if isinstance(cmd, (SimCallCommand, PingCommand)):
            raise ValueError(f"{type(cmd).__name__} is not a call command")
        raise ValueError("unsupported command")

    def _to_model_or_refuse(self, event: rt.ClientEvent) -> list[Action]:
        if not self.model_ready:
            raise ValueError("the model is not connected right now; try again in a moment")
        return [self._send(event)]


REASON_TEXT: dict[EndReason, str] = {
    EndReason.CALLER_HUNG_UP: "the caller hung up",
    EndReason.AGENT_ENDED: "the agent ended the call",
    EndReason.TRANSFERRED: "transferred",
    EndReason.CONSOLE_ENDED: "ended from the console",
    EndReason.MODEL_UNAVAILABLE: "the model was unavailable",
    EndReason.RELAY_SHUTDOWN: "the relay shut down",
    EndReason.ERROR: "an internal error",
}


def _bound(books: dict[str, Any]) -> None:
    """Keep per-item books to the newest items (dicts keep insertion order)."""
    while len(books) >= _MAX_ITEMS:
        del books[next(iter(books))]


def _status_error(resp: rt.Response) -> dict[str, str]:
    details = resp.status_details
    if isinstance(details, rt.StatusDetails) and isinstance(details.error, rt.ErrorInfo):
        code = details.error.code if isinstance(details.error.code, str) else details.error.type
        return {"code": code or "failed", "message": details.error.message or "response failed"}
    return {"code": "response_failed", "message": "the model's response failed"}


_HANDLERS: dict[type, Any] = {
    rt.SessionCreated: CallBridge._on_session_created,
    rt.SessionUpdated: CallBridge._on_session_updated,
    rt.ConversationItemAdded: CallBridge._on_item_added,
    rt.ConversationItemCreated: CallBridge._on_item_added,
    rt.ConversationItemDone: CallBridge._on_item_done,
    rt.ResponseCreated: CallBridge._on_response_created,
    rt.ResponseDone: CallBridge._on_response_done,
    rt.OutputAudioTranscriptDone: CallBridge._on_transcript_done,
    rt.InputTranscriptionCompleted: CallBridge._on_user_transcript,
    rt.SpeechStarted: CallBridge._on_speech_started,
    rt.SpeechStopped: CallBridge._on_speech_stopped,
    rt.FunctionCallArgumentsDone: CallBridge._on_function_call,
    rt.Error: CallBridge._on_error,
    rt.OutputAudioBufferStarted: CallBridge._on_playback_started,
    rt.OutputAudioBufferStopped: CallBridge._on_playback_stopped,
    rt.OutputAudioBufferCleared: CallBridge._on_playback_stopped,
    rt.ConversationItemTruncated: CallBridge._on_item_truncated,
    rt.DtmfReceived: CallBridge._on_dtmf_received,
}
