"""Property-based tests (hypothesis) over the decoders and the sans-I/O call core (issue 5).

The decoders raise nothing but their documented errors on any input; the CallBridge, fed
random sequences of plausible and implausible events, never raises and keeps its invariants.
Deterministic (derandomize=True, no example database) and bounded, so it runs in seconds.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.actions import (
    Action,
    CloseModel,
    Connect,
    Handover,
    Hangup,
    RunTool,
    ToConsole,
    ToModel,
    ToTwilio,
)
from relay.call import CallBridge, CallConfig
from shared import realtime as rt
from shared import twilio as tw
from shared.audio import b64_decoded_size, bytes_to_ms
from shared.console_protocol import (
    COMMAND_TYPES,
    CommandError,
    CommitAudioCommand,
    ConsoleCommand,
    FunctionOutputCommand,
    ItemCreateCommand,
    ResponseCancelCommand,
    ResponseCreateCommand,
    SessionUpdateCommand,
    decode_command,
)
from shared.session import build_session

FUZZ = settings(
    derandomize=True,
    database=None,
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- JSON building blocks ----------------------------------------------------------------------

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=15,
)
raw_input = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300),
    st.text(max_size=300).map(lambda s: s.encode("utf-8")),
)
deep = st.integers(min_value=900, max_value=1200).map(lambda n: "[" * n + "]" * n)


def _frames(tags: tuple[str, ...], tag_field: str, fields: list[str]) -> st.SearchStrategy[str]:
    """JSON objects with a known tag and known field names holding values of random types."""
    body = st.dictionaries(
        st.sampled_from(fields), st.one_of(json_value, st.sampled_from([{}, [], ""])), max_size=6
    )
    return st.builds(
        lambda tag, rest: json.dumps({tag_field: tag, **rest}),
        st.one_of(st.sampled_from(tags), json_leaf),
        body,
    )


TWILIO_FIELDS = [
    "streamSid",
    "sequenceNumber",
    "start",
    "media",
    "mark",
    "dtmf",
    "stop",
    "protocol",
    "version",
]
TWILIO_EVENTS = ("connected", "start", "media", "mark", "dtmf", "stop", "clear", "sendDigits")
# Nested bodies with the right field names and random value types.
twilio_nested = st.builds(
    lambda event, inner: json.dumps({"event": event, "streamSid": "MZ1", event: inner}),
    st.sampled_from(["start", "media", "mark", "dtmf", "stop"]),
    st.dictionaries(
        st.sampled_from(
            ["streamSid", "callSid", "payload", "name", "digit", "customParameters", "track"]
        ),
        json_value,
        max_size=5,
    ),
)


# --- the decoders --------------------------------------------------------------------------------


def _check_inbound(data: str | bytes) -> None:
    try:
        msg = tw.decode_inbound(data)
    except msgspec.DecodeError:  # ValidationError is a DecodeError
        return
    # What decoded is safe to splice into JSON, as the relay does without re-encoding.
    spliced: list[str] = []
    if isinstance(msg, tw.Start):
        spliced += [msg.start.streamSid, msg.start.callSid]
    if isinstance(msg, tw.Media):
        spliced.append(msg.media.payload)
    for value in spliced:
        assert json.loads('{"v":"' + value + '"}')["v"] == value


@FUZZ
@given(st.one_of(raw_input, deep, _frames(TWILIO_EVENTS, "event", TWILIO_FIELDS), twilio_nested))
def test_twilio_decoder_raises_only_msgspec_errors(data: str | bytes) -> None:
    _check_inbound(data)


@FUZZ
@given(
    st.one_of(
        st.text(max_size=300), deep, twilio_nested, _frames(TWILIO_EVENTS, "event", TWILIO_FIELDS)
    )
)
def test_the_media_hot_path_never_raises_and_agrees_with_the_full_decoder(data: str) -> None:
    payload = tw.media_payload(data)
    if payload is None:
        return
    assert json.loads('{"v":"' + payload + '"}')["v"] == payload  # safe to splice
    msg = tw.decode_inbound(data)  # what the hot path accepts, the full decoder accepts
    assert isinstance(msg, tw.Media) and msg.media.payload == payload


SERVER_FIELDS = [
    "event_id",
    "session",
    "item",
    "item_id",
    "response",
    "response_id",
    "delta",
    "audio_end_ms",
    "audio_start_ms",
    "error",
    "call_id",
    "name",
    "arguments",
    "transcript",
    "rate_limits",
    "content_index",
    "output_index",
    "part",
]
server_nested = st.builds(
    lambda kind, key, inner: json.dumps({"type": kind, key: inner}),
    st.sampled_from(sorted(rt.SERVER_EVENT_TYPES)),
    st.sampled_from(["response", "error", "item", "session", "part", "rate_limits"]),
    st.dictionaries(
        st.sampled_from(
            ["id", "status", "status_details", "usage", "output", "code", "type", "message"]
        ),
        json_value,
        max_size=5,
    ),
)


@FUZZ
@given(
    st.one_of(
        raw_input,
        deep,
        _frames(tuple(sorted(rt.SERVER_EVENT_TYPES)), "type", SERVER_FIELDS),
        server_nested,
    )
)
def test_realtime_decoder_raises_only_msgspec_errors(data: str | bytes) -> None:
    try:
        event = rt.decode_server_event(data)
    except msgspec.DecodeError:
        return
    if isinstance(event, rt.OutputAudioDelta):  # spliced into Twilio frames
        for value in (event.delta, event.item_id):
            assert json.loads('{"v":"' + value + '"}')["v"] == value


COMMAND_FIELDS = [
    "id",
    "call_sid",
    "session",
    "scope",
    "item",
    "response",
    "call_id",
    "output",
    "seconds",
]


@FUZZ
@given(
    st.one_of(
        raw_input,
        deep,
        _frames(COMMAND_TYPES, "type", COMMAND_FIELDS),
        st.builds(
            lambda n, ch: '{"type":"ping","id":"' + ch * n + '"}',
            st.integers(min_value=21_000, max_value=66_000),
            st.sampled_from(["x", "\u00e9", "\u20ac"]),  # 1, 2 and 3 bytes in UTF-8
        ),
    )
)
def test_console_decoder_raises_only_command_errors(data: str | bytes) -> None:
    try:
        cmd = decode_command(data)
    except CommandError as exc:
        assert str(exc)
        return
    assert type(cmd).__struct_config__.tag in COMMAND_TYPES


def test_decoders_refuse_deep_nesting_with_their_documented_errors() -> None:
    nested = "[" * 5000 + "]" * 5000
    with pytest.raises(msgspec.DecodeError):
        tw.decode_inbound(
            '{"event":"media","streamSid":"x","media":{"payload":"","x":' + nested + "}}"
        )
    with pytest.raises(msgspec.DecodeError):
        rt.decode_server_event('{"type":"session.created","session":{"x":' + nested + "}}")
    with pytest.raises(CommandError):
        decode_command('{"type":"session.update","session":{"x":' + nested + "}}")


def test_decoders_refuse_values_that_would_break_out_of_a_json_string() -> None:
    for payload in ['AA\\"AA', "AA\\\\", "AA\\u0000"]:
        with pytest.raises(msgspec.ValidationError):
            tw.decode_inbound(
                '{"event":"media","streamSid":"MZ1","media":{"payload":"' + payload + '"}}'
            )
    with pytest.raises(msgspec.ValidationError):
        tw.decode_inbound(
            '{"event":"start","streamSid":"MZ1","start":{"streamSid":"MZ1","callSid":"C\\"A"}}'
        )
    with pytest.raises(msgspec.ValidationError):
        rt.decode_server_event(
            '{"type":"response.output_audio.delta","item_id":"i\\"d","delta":"AAAA"}'
        )
    with pytest.raises(msgspec.ValidationError):
        rt.decode_server_event(
            '{"type":"response.output_audio.delta","item_id":"i","delta":"A\\"A"}'
        )


# --- the call core --------------------------------------------------------------------------------

SID = "MZ" + "ab" * 16
CALL = "CA" + "cd" * 16
ITEMS = ["item_a", "item_b", "item_c"]
RESPONSES = ["resp_1", "resp_2", "resp_3"]
CALL_IDS = ["call_1", "call_2", "call_3"]
BACKEND_TOOLS = frozenset({"lookup", "end_call"})
OUT_KEYS = {
    "media": ({"event", "streamSid", "media"}, {"payload"}),
    "mark": ({"event", "streamSid", "mark"}, {"name"}),
    "clear": ({"event", "streamSid"}, set()),
}


def b64(n: int) -> str:
    return base64.b64encode(b"\xff" * n).decode()


def ev(**fields: Any) -> str:
    return json.dumps(fields)


# Each step is (kind, args...). Model events are JSON text, as they arrive on the socket.
model_event = st.one_of(
    st.builds(
        lambda r: ("model", ev(type="response.created", response={"id": r})),
        st.sampled_from(RESPONSES),
    ),
    st.builds(
        lambda r, status, err: (
            "model",
            ev(
                type="response.done",
                response={
                    "id": r,
                    "status": status,
                    "status_details": {"type": status, "error": err},
                    "usage": {"total_tokens": 3, "input_tokens": 1, "output_tokens": 2},
                },
            ),
        ),
        st.sampled_from(RESPONSES),
        st.sampled_from(["completed", "cancelled", "failed", "incomplete", "in_progress"]),
        st.one_of(st.none(), st.just({"type": "server_error", "code": "x", "message": "m"})),
    ),
    st.builds(
        lambda r, item, n: (
            "model",
            ev(type="response.output_audio.delta", response_id=r, item_id=item, delta=b64(n)),
        ),
        st.sampled_from(RESPONSES),
        st.sampled_from(ITEMS),
        st.integers(min_value=0, max_value=4000),
    ),
    st.builds(
        lambda ms, item: (
            "model",
            ev(type="input_audio_buffer.speech_started", audio_start_ms=ms, item_id=item),
        ),
        st.integers(min_value=-5, max_value=10**6),
        st.sampled_from(["user_1", "user_2"]),
    ),
    st.builds(
        lambda ms: ("model", ev(type="input_audio_buffer.speech_stopped", audio_end_ms=ms)),
        st.integers(min_value=-(10**6), max_value=10**9),
    ),
    st.builds(
        lambda name, call_id, args: (
            "model",
            ev(
                type="response.function_call_arguments.done",
                name=name,
                call_id=call_id,
                arguments=args,
            ),
        ),
        st.sampled_from(["lookup", "end_call", "console_only", ""]),
        st.sampled_from(CALL_IDS),
        st.sampled_from(["{}", '{"order_id": "A1"}', "not json", ""]),
    ),
    st.builds(
        lambda code: ("model", ev(type="error", error={"type": "x", "code": code, "message": "m"})),
        st.sampled_from(
            [
                None,
                "server_error",
                "session_expired",
                "conversation_already_has_active_response",
                "response_cancel_not_active",
            ]
        ),
    ),
    st.builds(
        lambda expires: (
            "model",
            ev(type="session.created", session={"id": "sess_1", "expires_at": expires}),
        ),
        st.one_of(st.integers(0, 2**40), st.text(max_size=3), st.none()),
    ),
    st.just(("model", ev(type="session.updated", session={"type": "realtime"}))),
    st.builds(
        lambda item, text: (
            "model",
            ev(type="response.output_audio_transcript.done", item_id=item, transcript=text),
        ),
        st.sampled_from(ITEMS),
        st.text(max_size=20),
    ),
    st.builds(
        lambda text: (
            "model",
            ev(
                type="conversation.item.input_audio_transcription.completed",
                item_id="user_1",
                transcript=text,
            ),
        ),
        st.text(max_size=20),
    ),
)
model_garbage = st.builds(
    lambda data: ("model", data),
    st.one_of(raw_input, _frames(tuple(sorted(rt.SERVER_EVENT_TYPES)), "type", SERVER_FIELDS)),
)


twilio_event = st.one_of(
    st.builds(lambda n: ("media", b64(n)), st.integers(min_value=0, max_value=400)),
    st.builds(lambda i: ("echo", i), st.integers(min_value=0, max_value=50)),  # a mark it sent
    st.builds(lambda name: ("mark", name), st.one_of(st.text(max_size=10), st.sampled_from(ITEMS))),
    st.builds(lambda d: ("dtmf", d), st.sampled_from(["1", "#", "*", "", "{digit}"])),
    st.just(("stop",)),
)
other_event = st.one_of(
    st.builds(lambda dt: ("time", dt), st.floats(min_value=0.0, max_value=3.0)),
    st.just(("timer",)),
    st.just(("open",)),
    st.builds(lambda code: ("closed", code), st.sampled_from([1000, 1001, 1006, 1011, 4000])),
    st.builds(
        lambda call_id, ok: ("tool", call_id, ok), st.sampled_from([*CALL_IDS, "zz"]), st.booleans()
    ),
    st.builds(lambda cmd: ("console", cmd), st.integers(min_value=0, max_value=7)),
)
steps = st.lists(
    st.one_of(model_event, model_event, model_event, twilio_event, other_event, model_garbage),
    min_size=1,
    max_size=60,
)


def _console_command(i: int) -> ConsoleCommand:
    commands: list[ConsoleCommand] = [
        ResponseCreateCommand(call_sid=CALL),
        ResponseCancelCommand(call_sid=CALL),
        CommitAudioCommand(call_sid=CALL),
        FunctionOutputCommand(call_sid=CALL, call_id="call_1", output="{}"),
        ItemCreateCommand(call_sid=CALL, item={"type": "message", "role": "user"}),
        ItemCreateCommand(call_sid=CALL, item={"type": 5}),
        SessionUpdateCommand(session={"instructions": "Be brief."}, call_sid=CALL),
        SessionUpdateCommand(session={"voice": 7}, call_sid=CALL),
    ]
    return commands[i % len(commands)]


def open_model(b: CallBridge, now: float) -> list[Action]:
    """The pump's side of a model socket opening: the one the bridge last asked for."""
    if b.upstream.gen == 0:
        b.start(prewarmed=False)
    return b.on_model_open(b.upstream.gen, now)


@dataclass
class Harness:
    """Drives one bridge and checks every action it returns."""

    bridge: CallBridge
    now: float = 0.0
    marks_sent: list[str] = field(default_factory=list)
    forwarded_ms: dict[str, float] = field(default_factory=dict)  # audio sent to Twilio, per item
    after_end: list[Action] = field(default_factory=list)
    pending_item: str | None = None  # the item of the last delta fed, until its media frame

    def feed(self, step: tuple[Any, ...]) -> list[Action]:
        b = self.bridge
        kind = step[0]
        self.pending_item = None
        if kind == "time":
            self.now += step[1]
            return []
        if kind == "timer":
            return b.on_timer(self.now)
        if kind == "open":
            return open_model(b, self.now)
        if kind == "closed":
            return b.on_model_closed(b.upstream.gen, step[1], self.now)
        if kind == "tool":
            return b.on_tool_result(
                step[1], '{"ok": true}', ok=step[2], source="backend", duration_ms=1.0, now=self.now
            )
        if kind == "console":
            try:
                return b.on_console(_console_command(step[1]), self.now)
            except ValueError:  # the documented way to refuse a command
                return []
        if kind == "model":
            data = step[1]
            if isinstance(data, str) and '"response.output_audio.delta"' in data:
                self.pending_item = json.loads(data).get("item_id")
            return b.on_model(data, self.now)
        # Twilio frames go through the real decoder, as in media_socket.py.
        if kind == "media":
            frame = {"event": "media", "streamSid": SID, "media": {"payload": step[1]}}
        elif kind in ("echo", "mark"):
            if kind == "echo":
                if not self.marks_sent:
                    return []
                name = self.marks_sent[step[1] % len(self.marks_sent)]
            else:
                name = step[1]
            frame = {"event": "mark", "streamSid": SID, "mark": {"name": name}}
        elif kind == "dtmf":
            frame = {"event": "dtmf", "streamSid": SID, "dtmf": {"digit": step[1]}}
        else:
            frame = {"event": "stop", "streamSid": SID}
        msg = tw.decode_inbound(json.dumps(frame))
        return b.on_twilio(msg, self.now)

    def check(self, actions: list[Action], ended_before: bool) -> None:
        b = self.bridge
        if ended_before:
            self.after_end += [a for a in actions if isinstance(a, ToModel | ToTwilio)]
        for action in actions:
            assert isinstance(
                action,
                ToTwilio | ToModel | ToConsole | RunTool | Hangup | Connect | Handover | CloseModel,
            )
            if isinstance(action, ToTwilio):
                self._check_twilio(action.data)
            elif isinstance(action, ToModel):
                self._check_model(action.data)
            elif isinstance(action, ToConsole):
                event = action.event
                obj = (
                    json.loads(event) if isinstance(event, bytes) else json.loads(json.dumps(event))
                )
                assert isinstance(obj["type"], str)
                assert obj.get("call_sid", CALL) == CALL
            elif isinstance(action, RunTool):
                assert action.name in BACKEND_TOOLS
        assert b.state in ("connecting", "active", "reconnecting", "ended")
        for item, audio in b.playback.items.items():
            assert 0 <= audio.played_ms <= audio.sent_ms + 1e-6, (item, audio)

    def _check_twilio(self, data: str) -> None:
        frame = json.loads(data)  # always valid JSON
        event = frame["event"]
        assert event in OUT_KEYS, frame  # only media, mark and clear (else Twilio error 31951)
        top, inner = OUT_KEYS[event]
        assert set(frame) == top, frame
        assert frame["streamSid"] == SID
        if event != "clear":
            assert set(frame[event]) == inner, frame
        if event == "media":
            audio = base64.b64decode(frame["media"]["payload"], validate=True)
            item = self.pending_item
            assert item is not None
            self.forwarded_ms[item] = self.forwarded_ms.get(item, 0.0) + bytes_to_ms(len(audio))
        elif event == "mark":
            self.marks_sent.append(frame["mark"]["name"])

    def _check_model(self, data: bytes) -> None:
        event = rt.decode_client_event(data)  # a valid GA client event
        if isinstance(event, rt.ConversationItemTruncate):
            received = self.forwarded_ms.get(event.item_id)
            assert received is not None, f"truncate of {event.item_id}, never played"
            assert 0 <= event.audio_end_ms <= received + 1e-6, (event, received)
            assert event.content_index == 0
        if isinstance(event, rt.InputAudioBufferAppend):
            base64.b64decode(event.audio, validate=True)


def _bridge(greeting: str, watched: bool) -> CallBridge:
    config = CallConfig(
        session=build_session(),
        backend_tools=BACKEND_TOOLS,
        greeting=greeting,
        early_audio_ms=200,
        console_tool_timeout_s=1.0,
        hangup_fallback_s=2.0,
    )
    bridge = CallBridge(call_sid=CALL, stream_sid=SID, config=config, started_at=0.0)
    bridge.watched = watched
    return bridge


def _run(events: list[tuple[Any, ...]], greeting: str, watched: bool, start_open: bool) -> Harness:
    h = Harness(_bridge(greeting, watched))
    if start_open:
        h.check(open_model(h.bridge, 0.0), False)
    for step in events:
        ended = h.bridge.ended
        h.check(h.feed(step), ended)
    return h


@FUZZ
@given(steps, st.sampled_from(["", "Say hello."]), st.booleans(), st.booleans())
def test_call_bridge_never_raises_and_keeps_its_invariants(
    events: list[tuple[Any, ...]], greeting: str, watched: bool, start_open: bool
) -> None:
    _run(events, greeting, watched, start_open)


@FUZZ
@given(steps, st.booleans())
def test_call_bridge_sends_nothing_after_the_call_ended(
    events: list[tuple[Any, ...]], watched: bool
) -> None:
    h = _run([("stop",), *events], "", watched, True)
    assert h.after_end == []


def test_truncate_never_exceeds_the_audio_sent_example() -> None:
    """A hand-written case of the property: barge-in right after a delta."""
    h = Harness(_bridge("", True))
    h.check(open_model(h.bridge, 0.0), False)
    for step in [
        ("model", ev(type="response.created", response={"id": "resp_1"})),
        (
            "model",
            ev(
                type="response.output_audio.delta",
                response_id="resp_1",
                item_id="item_a",
                delta=b64(800),
            ),
        ),
        ("time", 5.0),
        ("model", ev(type="input_audio_buffer.speech_started", audio_start_ms=10, item_id="u")),
    ]:
        h.check(h.feed(step), False)
    assert h.forwarded_ms == {"item_a": 100.0}
    assert b64_decoded_size(b64(800)) == 800
