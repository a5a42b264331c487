"""The sans-I/O call core, driven directly: no sockets, no clocks, microseconds per test."""

from __future__ import annotations

import base64
import json

import pytest
from bridge_kit import (
    SID,
    bridge,
    connect,
    console,
    delta,
    ev,
    model_events,
    open_bridge,
    start_response,
    twilio_frames,
)

from relay.actions import EndReason, Hangup, RunTool
from shared import twilio as tw
from shared.console_protocol import decode_command


def test_early_audio_is_queued_in_order_and_flushed_after_the_session_update() -> None:
    b = bridge()
    assert b.on_media("AAAA", 0.0) is None
    assert b.on_media("BBBB", 0.02) is None
    events = model_events(connect(b, 0.1))
    assert [e["type"] for e in events] == [
        "session.update",
        "input_audio_buffer.append",
        "input_audio_buffer.append",
    ]
    assert [e["audio"] for e in events[1:]] == ["AAAA", "BBBB"]
    assert events[0]["session"]["type"] == "realtime"
    assert b.on_media("CCCC", 0.2) == b'{"type":"input_audio_buffer.append","audio":"CCCC"}'


def test_early_audio_overflow_keeps_the_newest_and_says_so() -> None:
    b = bridge()
    b.config.early_audio_ms = 100
    b.__post_init__()
    for i in range(8):
        b.on_media(f"F{i}", i * 0.02)
    actions = connect(b, 1.0)
    assert [e["audio"] for e in model_events(actions)[1:]] == ["F3", "F4", "F5", "F6", "F7"]
    assert any(e["code"] == "early_audio_overflow" for e in console(actions))


def test_agent_audio_goes_to_twilio_untouched_with_a_named_mark() -> None:
    b = open_bridge()
    start_response(b)
    frames = twilio_frames(b.on_model(delta("item_a", 100), 1.0))
    assert frames[0]["event"] == "media" and frames[0]["streamSid"] == SID
    assert base64.b64decode(frames[0]["media"]["payload"]) == b"\xff" * 800
    assert frames[1] == {"event": "mark", "streamSid": SID, "mark": {"name": "item_a:100"}}
    assert all(tw.decode_outbound(json.dumps(f)) for f in frames)


def test_barge_in_truncates_at_what_was_heard_between_marks() -> None:
    b = open_bridge()
    start_response(b)
    for _ in range(5):  # 500 ms sent at once (burst)
        b.on_model(delta("item_a", 100), 1.0)
    b.on_mark("item_a:100", 1.1)  # Twilio played the first chunk by t=1.1
    actions = b.on_model(ev(type="input_audio_buffer.speech_started", item_id="u1"), 1.23)
    frames = twilio_frames(actions)
    assert frames == [{"event": "clear", "streamSid": SID}]
    (trunc,) = [e for e in model_events(actions) if e["type"] == "conversation.item.truncate"]
    assert trunc["item_id"] == "item_a"
    assert abs(trunc["audio_end_ms"] - 230) <= 1  # 100 ms confirmed + 130 ms since
    # The server cancels on its own (interrupt_response), so the relay does not.
    assert not [e for e in model_events(actions) if e["type"] == "response.cancel"]


def test_truncation_is_clamped_to_audio_received() -> None:
    b = open_bridge()
    start_response(b)
    b.on_model(delta("item_a", 100), 1.0)
    b.on_model(delta("item_a", 100), 1.0)
    b.on_mark("item_a:100", 1.1)
    actions = b.on_model(ev(type="input_audio_buffer.speech_started"), 5.0)  # long after
    (trunc,) = [e for e in model_events(actions) if e["type"] == "conversation.item.truncate"]
    assert trunc["audio_end_ms"] == 200


def test_no_truncate_after_the_answer_finished_playing() -> None:
    b = open_bridge()
    start_response(b)
    b.on_model(delta("item_a", 100), 1.0)
    b.on_model(ev(type="response.done", response={"id": "resp_1", "status": "completed"}), 1.0)
    b.on_mark("item_a:100", 1.1)
    actions = b.on_model(ev(type="input_audio_buffer.speech_started"), 3.0)
    assert twilio_frames(actions) == []
    assert model_events(actions) == []


def test_marks_echoed_by_clear_do_not_count_as_heard() -> None:
    b = open_bridge()
    start_response(b)
    b.on_model(delta("item_a", 100), 1.0)
    b.on_model(delta("item_a", 100), 1.0)
    b.on_model(ev(type="input_audio_buffer.speech_started"), 1.05)
    assert b.on_mark("item_a:100", 1.06) == []  # the echo caused by clear
    assert b.playback.items["item_a"].played_ms == 0.0


def test_late_deltas_of_an_interrupted_item_are_never_played() -> None:
    b = open_bridge()
    start_response(b)
    b.on_model(delta("item_a", 100), 1.0)
    b.on_model(ev(type="input_audio_buffer.speech_started"), 1.05)
    assert twilio_frames(b.on_model(delta("item_a", 100), 1.06)) == []


def test_without_turn_detection_the_relay_cancels_the_running_response() -> None:
    b = open_bridge(turn_detection=None)
    start_response(b)
    b.on_model(delta("item_a", 100), 1.0)
    actions = b.on_model(ev(type="input_audio_buffer.speech_started"), 1.05)
    assert [e["type"] for e in model_events(actions)] == [
        "conversation.item.truncate",
        "response.cancel",
    ]


def test_interrupt_response_false_means_no_barge_in() -> None:
    b = open_bridge(turn_detection={"type": "server_vad", "interrupt_response": False})
    start_response(b)
    b.on_model(delta("item_a", 100), 1.0)
    assert b.on_model(ev(type="input_audio_buffer.speech_started"), 1.05) == []


def test_backend_tool_output_is_encoded_once_and_response_waits_for_the_current_one() -> None:
    b = open_bridge()
    start_response(b)
    actions = b.on_model(
        ev(
            type="response.function_call_arguments.done",
            call_id="call_1",
            name="get_weather_from_coords",
            arguments='{"latitude": 1, "longitude": 2}',
        ),
        1.0,
    )
    assert any(isinstance(a, RunTool) and a.name == "get_weather_from_coords" for a in actions)
    out = b.on_tool_result(
        "call_1", '{"temp": 21}', ok=True, source="backend", duration_ms=3.0, now=1.1
    )
    events = model_events(out)
    assert events == [
        {
            "type": "conversation.item.create",
            "item": {
                "type": "function_call_output",
                "id": "out_1",
                "call_id": "call_1",
                "output": '{"temp": 21}',
            },
        }
    ]  # no response.create yet: one is still running
    done = b.on_model(ev(type="response.done", response={"id": "resp_1", "status": "completed"}), 2)
    assert [e["type"] for e in model_events(done)] == ["response.create"]


def test_console_tool_times_out_with_an_error_output() -> None:
    b = open_bridge()
    actions = b.on_model(
        ev(type="response.function_call_arguments.done", call_id="c9", name="crm", arguments="{}"),
        1.0,
    )
    assert console(actions)[-1]["type"] == "tool.pending"
    assert b.next_deadline() == 6.0
    assert b.on_timer(5.9) == []
    out = b.on_timer(6.0)
    (item,) = [e for e in model_events(out) if e["type"] == "conversation.item.create"]
    assert "error" in json.loads(item["item"]["output"])
    assert console(out)[0]["source"] == "timeout"
    # A console answer after the timeout is refused, not sent twice.
    cmd = decode_command(
        b'{"type":"function_call.output","call_sid":"CA1","call_id":"c9","output":"x"}'
    )
    try:
        b.on_console(cmd, 7.0)
    except ValueError as exc:
        assert "c9" in str(exc)
    else:
        raise AssertionError("a late answer must be refused")


def test_console_answers_a_pending_tool() -> None:
    b = open_bridge()
    b.on_model(
        ev(type="response.function_call_arguments.done", call_id="c9", name="crm", arguments="{}"),
        1.0,
    )
    cmd = decode_command(
        b'{"type":"function_call.output","call_sid":"CA1","call_id":"c9","output":"{\\"ok\\":1}"}'
    )
    out = b.on_console(cmd, 2.0)
    assert [e["type"] for e in model_events(out)] == ["conversation.item.create", "response.create"]


def test_dtmf_reaches_the_model_as_user_text_and_the_console() -> None:
    b = open_bridge()
    msg = tw.decode_inbound(
        json.dumps(
            {
                "event": "dtmf",
                "streamSid": SID,
                "sequenceNumber": "5",
                "dtmf": {"track": "inbound_track", "digit": "7"},
            }
        )
    )
    actions = b.on_twilio(msg, 1.0)
    events = model_events(actions)
    assert events[0]["item"]["content"][0] == {
        "type": "input_text",
        "text": "The caller pressed the 7 key.",
    }
    assert events[1]["type"] == "response.create"
    assert console(actions)[0] == {"type": "dtmf", "call_sid": "CA1", "digit": "7"}


def test_end_call_hangs_up_only_after_the_goodbye_was_heard() -> None:
    b = open_bridge()
    b.request_hangup(Hangup(EndReason.AGENT_ENDED, "the agent ended the call"), 1.0)
    start_response(b, "resp_2")
    b.on_model(delta("bye", 100, "resp_2"), 1.1)
    done = b.on_model(
        ev(type="response.done", response={"id": "resp_2", "status": "completed"}), 1.2
    )
    assert not any(isinstance(a, Hangup) for a in done)  # still playing
    heard = b.on_mark("bye:100", 1.3)
    assert any(isinstance(a, Hangup) for a in heard)


def test_turn_latency_runs_from_the_callers_end_of_speech() -> None:
    b = open_bridge()
    for i in range(100):  # 2 s of caller audio, frame i arrives at t = i * 0.02
        b.on_media("AAAA", i * 0.02)
    b.on_model(ev(type="input_audio_buffer.speech_stopped", audio_end_ms=1000), 1.6)
    start_response(b)
    actions = b.on_model(delta("item_a", 100), 1.75)
    (lat,) = [e for e in console(actions) if e["type"] == "turn.latency"]
    assert lat["latency_ms"] == 750.0  # frame 50 arrived at 1.0 s


def test_unknown_and_malformed_model_events_never_raise() -> None:
    b = open_bridge()
    b.watched = True
    assert console(b.on_model(b'{"type":"brand.new.event","x":1}', 1.0))[0]["event"]["x"] == 1
    assert console(b.on_model(b"not json", 1.0))[0]["code"] == "malformed"


def test_console_session_update_is_normalised_to_ga() -> None:
    b = open_bridge()
    cmd = decode_command(
        json.dumps(
            {"type": "session.update", "call_sid": "CA1", "session": {"voice": "ash"}}
        ).encode()
    )
    (update,) = model_events(b.on_console(cmd, 1.0))
    assert update["session"] == {"type": "realtime", "audio": {"output": {"voice": "ash"}}}


def test_playback_position_allows_for_the_round_trip_to_twilio() -> None:
    from relay.playback import PlaybackTracker

    p = PlaybackTracker()
    p.sent("a", 100, now=0.0)  # into an empty buffer: a round-trip probe
    p.sent("a", 100, now=0.0)
    p.sent("a", 100, now=0.0)
    p.echoed("a:100", now=0.14)  # played at ~0.12, echo took another 20 ms: RTT 40 ms
    assert p.rtt_ms == pytest.approx(40.0)
    item, heard = p.position(now=0.16)  # type: ignore[misc]
    # 100 ms confirmed, 20 ms since the echo, and the clear still needs one hop to arrive.
    assert item == "a" and heard == pytest.approx(160.0)


def test_streaming_deltas_no_one_watches_are_skipped_and_a_watched_call_forwards_them() -> None:
    b = open_bridge()
    delta = b'{"type":"response.output_audio_transcript.delta","item_id":"a1","delta":"Hel"}'
    assert b.on_model(delta, 1.0) == []
    # Skipped undecoded: even a broken one costs no decode (and no error line) unwatched.
    assert b.on_model(b'{"type":"response.output_audio_transcript.delta", broken', 1.0) == []
    b.watched = True
    (forwarded,) = console(b.on_model(delta, 1.0))
    assert forwarded["type"] == "model" and forwarded["event"]["delta"] == "Hel"
    (error,) = console(b.on_model(b'{"type":"response.output_audio_transcript.delta", x', 1.0))
    assert error["code"] == "malformed"
