"""Folding relay events into transcript lines, function calls, latency and usage."""

from __future__ import annotations

from typing import Any

from console.calls import CallBook, CallLog, percentile

SID = "CA1"


def model(ev: dict[str, Any]) -> dict[str, Any]:
    return {"type": "model", "call_sid": SID, "event": ev}


def ev(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "call_sid": SID, **fields}


def rows(log: CallLog) -> list[tuple[str, str, str]]:
    return [(ln.role, ln.text, ln.status) for ln in log.lines]


def caller_turn(log: CallLog, item: str, words: str) -> None:
    log.apply(model({"type": "input_audio_buffer.speech_started", "item_id": item}))
    log.apply(
        model(
            {
                "type": "conversation.item.added",
                "item": {
                    "id": item,
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_audio", "transcript": None}],
                },
            }
        )
    )
    log.apply(
        model(
            {
                "type": "conversation.item.input_audio_transcription.delta",
                "item_id": item,
                "delta": words[:3],
            }
        )
    )
    log.apply(
        model(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": item,
                "transcript": words,
            }
        )
    )


def assistant_turn(log: CallLog, item: str, words: str, done: bool = True) -> None:
    log.apply(
        model(
            {
                "type": "response.output_item.added",
                "item": {"id": item, "type": "message", "role": "assistant"},
            }
        )
    )
    for w in words.split(" "):
        log.apply(
            model(
                {
                    "type": "response.output_audio_transcript.delta",
                    "item_id": item,
                    "delta": w + " ",
                }
            )
        )
    if done:
        log.apply(
            model(
                {
                    "type": "response.output_audio_transcript.done",
                    "item_id": item,
                    "transcript": words,
                }
            )
        )


def test_caller_and_assistant_stream_then_settle() -> None:
    log = CallLog(SID)
    log.apply(model({"type": "input_audio_buffer.speech_started", "item_id": "u1"}))
    assert rows(log) == [("caller", "", "streaming")]
    caller_turn(log, "u1", "What's the weather?")
    assistant_turn(log, "a1", "It is sunny in Paris", done=False)
    assert rows(log)[-1] == ("assistant", "It is sunny in Paris ", "streaming")
    log.apply(
        model(
            {
                "type": "response.output_audio_transcript.done",
                "item_id": "a1",
                "transcript": "It is sunny in Paris.",
            }
        )
    )
    assert rows(log) == [
        ("caller", "What's the weather?", "done"),
        ("assistant", "It is sunny in Paris.", "done"),
    ]


def test_barge_in_marks_where_the_answer_was_cut() -> None:
    log = CallLog(SID)
    text = "one two three four five six seven eight nine ten"
    assistant_turn(log, "a1", text)
    log.apply(ev("audio.progress", item_id="a1", response_id="r", sent_ms=4000))
    log.apply(
        ev(
            "barge_in",
            item_id="a1",
            audio_end_ms=1000,
            sent_ms=4000,
            truncated=True,
            cancelled=False,
        )
    )
    line = log.lines[-1]
    assert line.status == "interrupted" and line.note == "interrupted after 1.0 s"
    assert line.text + line.cut_text == text
    assert text.startswith(line.text) and 0 < len(line.text) < len(text) / 2
    assert line.text.endswith(" ") or line.text == ""  # cut on a word boundary


def test_tool_call_inline_and_in_panel() -> None:
    log = CallLog(SID)
    log.apply(
        model(
            {
                "type": "response.function_call_arguments.done",
                "call_id": "call_1",
                "name": "get_weather",
                "arguments": '{"city":"Paris"}',
            }
        )
    )
    log.apply(
        ev("tool.started", call_id="call_1", name="get_weather", arguments='{"city":"Paris"}')
    )
    fc = log.functions["call_1"]
    assert (fc.name, fc.status, fc.arguments) == ("get_weather", "running", '{"city":"Paris"}')
    log.apply(
        ev(
            "tool.finished",
            call_id="call_1",
            name="get_weather",
            output='{"temp":21}',
            ok=True,
            duration_ms=42,
            source="backend",
        )
    )
    assert (fc.status, fc.output, fc.duration_ms, fc.source) == (
        "done",
        '{"temp":21}',
        42,
        "backend",
    )
    assert rows(log) == [
        ("tool_call", 'get_weather({"city": "Paris"})', "done"),
        ("tool_output", 'get_weather returned: {"temp":21}', "done"),
    ]


def test_pending_console_tool_and_timeout() -> None:
    log = CallLog(SID)
    log.apply(ev("tool.pending", call_id="c2", name="lookup_order", arguments="{}", timeout_s=30))
    assert log.functions["c2"].status == "pending" and log.functions["c2"].timeout_s == 30
    log.apply(
        ev(
            "tool.finished",
            call_id="c2",
            name="lookup_order",
            output='{"error":"timeout"}',
            ok=False,
            duration_ms=30000,
            source="timeout",
        )
    )
    assert log.functions["c2"].status == "timeout"
    assert "timed out" in log.lines[-1].text


def test_dtmf_errors_latency_usage_session() -> None:
    log = CallLog(SID)
    log.apply(ev("dtmf", digit="5"))
    log.apply(
        model(
            {
                "type": "error",
                "error": {"type": "invalid_request_error", "code": "bad_voice", "message": "no"},
            }
        )
    )
    log.apply(ev("error", source="twilio", code="31921", message="stream closed"))
    log.apply(ev("turn.latency", item_id="a1", latency_ms=640))
    log.apply(ev("turn.latency", item_id="a2", latency_ms=820))
    log.apply(
        model(
            {
                "type": "response.done",
                "response": {
                    "usage": {
                        "total_tokens": 10,
                        "input_tokens": 6,
                        "output_tokens": 4,
                        "input_token_details": {"audio_tokens": 5, "cached_tokens": 2},
                        "output_token_details": {"audio_tokens": 3},
                    }
                },
            }
        )
    )
    log.apply(model({"type": "response.done", "response": {"usage": {"total_tokens": 5}}}))
    log.apply(model({"type": "session.updated", "session": {"instructions": "Be brief"}}))
    assert [r[:2] for r in rows(log)] == [
        ("dtmf", "pressed 5"),
        ("error", "The model reported a problem: no"),
        ("error", "Twilio reported a problem: stream closed"),
    ]
    assert [(p.turn, p.latency_ms) for p in log.latency] == [(1, 640), (2, 820)]
    assert log.usage.total_tokens == 15 and log.usage.input_audio_tokens == 5
    assert log.applied_session == {"instructions": "Be brief"}
    assert log.last_error.startswith("Twilio reported")
    assert [ln.note for ln in log.lines if ln.role == "error"] == ["bad_voice", "31921"]


def test_call_book_lifecycle() -> None:
    book = CallBook()
    book.hello(
        [
            {
                "call_sid": "CA0",
                "from": "+1",
                "to": "+2",
                "started_at": 1.0,
                "state": "active",
                "model": "gpt-realtime",
            }
        ]
    )
    book.apply(
        {
            "type": "call.started",
            "call_sid": SID,
            "call": {
                "call_sid": SID,
                "from": "+3",
                "to": "+4",
                "started_at": 2.0,
                "state": "connecting",
            },
        }
    )
    book.apply(ev("call.state", state="active"))
    assert [c.call_sid for c in book.ordered()] == [SID, "CA0"]
    book.apply(
        ev(
            "call.ended",
            summary={
                "duration_s": 12.3,
                "turns": 2,
                "reason": "hangup",
                "usage": {"total_tokens": 99},
            },
        )
    )
    log = book.calls[SID]
    assert not log.live and log.usage.total_tokens == 99
    assert log.lines[-1].text == "call ended: hangup, after 12 s"
    assert [c.call_sid for c in book.ordered()] == ["CA0", SID]  # live first
    book.hello([])  # relay restarted: CA0 is gone
    assert not book.calls["CA0"].live
    assert book.apply({"type": "pong", "id": "1"}) is None


def test_model_reconnects_and_switches_show_as_model_lines() -> None:
    book = CallBook()
    book.apply(
        ev(
            "call.started",
            call={"call_sid": SID, "from": "+14155550100", "model": "gpt-realtime"},
        )
    )
    book.apply(ev("model.reconnecting", code=1006, attempt=1))
    book.apply(ev("model.reconnecting", code=None, attempt=2))
    book.apply(
        ev("model.switched", model="gpt-realtime-mini", reason="model changed from the console")
    )
    book.apply(ev("error", source="model", code="switch_failed", message="connect refused"))
    log = book.calls[SID]
    assert [r[:2] for r in rows(log)] == [
        ("model", "model connection lost (close code 1006); reconnecting, attempt 1…"),
        ("model", "model connection lost; reconnecting, attempt 2…"),
        (
            "model",
            "moved to a fresh model session (gpt-realtime-mini): model changed from the console",
        ),
        ("error", "The model reported a problem: connect refused"),
    ]
    assert log.model == "gpt-realtime-mini"
    assert log.live  # a reconnect is not the end of the call


def test_console_notes_land_in_the_transcript() -> None:
    log = CallLog(SID)
    log.note("recording", "recording RE1 in-progress (automatic), dual channel", 1.0)
    assert rows(log) == [
        ("recording", "recording RE1 in-progress (automatic), dual channel", "done")
    ]


def test_end_reason_in_plain_words_from_the_code_or_the_relay_text() -> None:
    log = CallLog(SID)
    assert log.end_reason == ""
    log.apply(ev("call.ended", summary={"end_reason": "console_ended", "duration_s": 4.2}))
    assert log.end_reason == "hung up from the console"
    assert log.lines[-1].text == "call ended: hung up from the console, after 4 s"
    other = CallLog("CA2")
    other.apply(ev("call.ended", summary={"end_reason": "caller_hung_up", "reason": "Bye"}))
    assert other.end_reason == "Bye"


def test_latency_is_voice_to_voice_per_turn_with_p50_p95() -> None:
    log = CallLog(SID)
    assert log.latency_stats() == (None, None)  # nothing yet, not "0 ms"
    for ms in (300.4, 280, 900):
        log.apply(ev("turn.latency", item_id="i", latency_ms=ms))
    assert [p.latency_ms for p in log.latency] == [300, 280, 900]
    p50, p95 = log.latency_stats()
    assert p50 == 300 and p95 is not None and 800 < p95 < 900
    # Once over, the relay's own figures (the same as /metrics and the call record) win.
    log.apply(ev("call.ended", summary={"latency_p50_ms": 301.0, "latency_p95_ms": 850.0}))
    assert log.latency_stats() == (301.0, 850.0)


def test_percentile() -> None:
    assert percentile([], 50) is None
    assert percentile([5.0], 95) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5


def test_calls_that_ended_before_the_console_connected_are_listed() -> None:
    book = CallBook()
    book.hello(
        [],
        ended=[
            {
                "call_sid": "CA9",
                "from": "+15550001111",
                "started_at": 100.0,
                "state": "ended",
                "summary": {
                    "duration_s": 7.0,
                    "end_reason": "caller_hung_up",
                    "turns": 2,
                    "latency_ms": [310.0, 290.0],
                },
            }
        ],
    )
    log = book.calls["CA9"]
    assert not log.live and not log.seen_live
    assert log.end_reason == "the caller hung up"
    assert [p.latency_ms for p in log.latency] == [310, 290]
    assert log.lines[-1].ts == 107.0
    book.hello([], ended=[{"call_sid": "CA9", "summary": {"end_reason": "error"}}])
    assert log.end_reason == "the caller hung up"  # told once
