"""No dead air, decided in the core: every fault ends in an answer or a clean goodbye.

Each test drives the sans-I/O bridge with injected time (microseconds, no sockets) through
one of the faults that used to leave a caller in silence, and checks what the caller gets.
"""

from __future__ import annotations

import base64

from bridge_kit import (
    added,
    bridge,
    connect,
    connects,
    console,
    delta,
    done,
    error,
    ev,
    heard_text,
    model_events,
    open_bridge,
    said_text,
    sent_ids,
    start_response,
)

from relay.actions import CloseModel, Connect, EndReason, Handover, Hangup, ToModel
from relay.call import CallBridge
from relay.conversation import MAX_ENTRIES
from shared.audio import silence_mulaw, tone_mulaw
from shared.console_protocol import ConsoleCommand, decode_command


def cmd(raw: str) -> ConsoleCommand:
    return decode_command(raw.encode())


def hangups(actions: list[object]) -> list[Hangup]:
    return [a for a in actions if isinstance(a, Hangup)]


def types(actions: list[object]) -> list[str]:
    return [e["type"] for e in model_events(actions)]


def function_call(b: CallBridge, now: float, call_id: str = "call_1") -> None:
    """The model calls the backend weather tool in response resp_1."""
    b.on_model(
        added("fc1", "", "u1", type="function_call", call_id=call_id, name="w", arguments=""),
        now,
    )
    b.on_model(
        ev(
            type="response.function_call_arguments.done",
            response_id="resp_1",
            item_id="fc1",
            output_index=0,
            call_id=call_id,
            name="get_weather_from_coords",
            arguments='{"latitude": 1, "longitude": 2}',
        ),
        now,
    )


# --- 1. a failed response.create never blocks later ones ----------------------------------


def test_a_refused_response_create_is_dropped_and_a_later_keypress_is_answered() -> None:
    b = open_bridge()
    (first,) = sent_ids(b.on_dtmf("1", 1.0), "response.create")
    actions = b.on_model(error("invalid_value", first), 1.1)
    assert [e["code"] for e in console(actions) if e["type"] == "error"] == [
        "invalid_value",
        "response_dropped",
    ]
    assert b.slot.state == "idle" and b.quiet
    assert sent_ids(b.on_dtmf("2", 2.0), "response.create")


def test_a_transient_refusal_is_retried_once_then_dropped() -> None:
    b = open_bridge()
    (first,) = sent_ids(b.on_dtmf("1", 1.0), "response.create")
    actions = b.on_model(error("server_error", first, type="server_error"), 1.1)
    (retry,) = sent_ids(actions, "response.create")
    assert retry != first
    actions = b.on_model(error("server_error", retry, type="server_error"), 1.2)
    assert not sent_ids(actions, "response.create")
    assert any(e.get("code") == "response_dropped" for e in console(actions))
    assert b.slot.state == "idle"


def test_a_busy_refusal_is_asked_again_when_the_running_response_ends() -> None:
    b = open_bridge()
    (first,) = sent_ids(b.on_dtmf("1", 1.0), "response.create")
    start_response(b, "resp_vad")  # turn detection started one first
    b.on_model(error("conversation_already_has_active_response", first), 1.1)
    assert sent_ids(b.on_model(done("resp_vad"), 2.0), "response.create")


def test_a_response_create_that_is_never_answered_frees_the_slot_after_its_deadline() -> None:
    b = open_bridge()
    b.on_dtmf("1", 1.0)
    assert b.next_deadline() == 11.0
    retried = b.on_timer(11.5)  # lost: asked again once
    assert sent_ids(retried, "response.create")
    gave_up = b.on_timer(22.0)
    assert any(e.get("code") == "response_timeout" for e in console(gave_up))
    assert b.slot.state == "idle" and b.quiet


# --- 2. work done while the model is away is delivered ---------------------------------------


def test_a_tool_result_during_a_reconnect_reaches_the_new_session_and_gets_an_answer() -> None:
    b = open_bridge()
    gen = b.upstream.gen
    b.on_model(added("u1", "user", None), 0.5)
    start_response(b)
    function_call(b, 1.0)
    reconnect = connects(b.on_model_closed(gen, 1006, 1.1))
    assert len(reconnect) == 1 and reconnect[0].delay_s > 0
    away = b.on_tool_result(
        "call_1", '{"temp": 21}', ok=True, source="backend", duration_ms=5.0, now=1.2
    )
    assert not [a for a in away if isinstance(a, ToModel)]
    b.on_model(heard_text("u1", "What's the weather?"), 1.3)  # a late transcript, kept
    events = model_events(b.on_model_open(reconnect[0].gen, 1.5))
    assert [e["type"] for e in events] == [
        "session.update",
        "conversation.item.create",
        "conversation.item.create",
        "conversation.item.create",
        "response.create",
    ]
    items = [e["item"] for e in events[1:4]]
    assert items[0]["content"][0]["text"] == "What's the weather?"
    assert (items[1]["type"], items[1]["call_id"]) == ("function_call", "call_1")
    assert (items[2]["type"], items[2]["output"]) == ("function_call_output", '{"temp": 21}')


def test_a_keypress_during_a_reconnect_is_answered_after_it() -> None:
    b = open_bridge()
    (again,) = connects(b.on_model_closed(b.upstream.gen, 1011, 1.0))
    b.on_dtmf("5", 1.1)
    events = model_events(b.on_model_open(again.gen, 1.4))
    kinds = [e["type"] for e in events]
    assert kinds[-2:] == ["conversation.item.create", "response.create"]
    assert "5" in events[-2]["item"]["content"][0]["text"]


def test_a_keypress_before_the_first_session_is_sent_once_it_opens() -> None:
    b = bridge()
    b.on_dtmf("9", 0.0)
    events = model_events(connect(b, 0.5))
    assert [e["type"] for e in events] == [
        "session.update",
        "conversation.item.create",
        "response.create",
    ]


def test_an_answer_cut_off_by_the_drop_is_asked_for_again_unless_the_caller_talks() -> None:
    b = open_bridge()
    start_response(b)
    (again,) = connects(b.on_model_closed(b.upstream.gen, 1006, 1.0))
    assert "response.create" in types(b.on_model_open(again.gen, 1.2))

    talking = open_bridge()
    start_response(talking)
    talking.on_model(ev(type="input_audio_buffer.speech_started", item_id="u2"), 0.9)
    (again,) = connects(talking.on_model_closed(talking.upstream.gen, 1006, 1.0))
    opened = talking.on_model_open(again.gen, 1.2)
    assert "response.create" not in types(opened)
    assert not talking.user_speaking  # the new session's turn detection starts afresh


# --- 3. failures are classified --------------------------------------------------------------


def test_a_refused_key_ends_the_call_at_once_with_the_apology_and_what_to_fix() -> None:
    b = bridge()
    (first,) = b.start(prewarmed=False)
    detail = "OpenAI refused the API key: check OPENAI_API_KEY (HTTP 401 on the upgrade)"
    actions = b.on_connect_failed(first.gen, 0.3, final=True, detail=detail)
    (hangup,) = hangups(actions)
    assert hangup.reason is EndReason.MODEL_UNAVAILABLE and hangup.apology
    assert not connects(actions)
    assert any("OPENAI_API_KEY" in e.get("message", "") for e in console(actions))


def test_a_close_in_the_4000_range_is_final() -> None:
    b = open_bridge()
    actions = b.on_model_closed(b.upstream.gen, 4000, 2.0)
    assert hangups(actions) and not connects(actions)


def test_transient_failures_back_off_and_give_up_after_the_budget() -> None:
    b = bridge()
    b.upstream.rand = lambda: 1.0  # no jitter
    (attempt,) = b.start(prewarmed=False)
    now, delays = 0.0, []
    while True:
        actions = b.on_connect_failed(attempt.gen, now, final=False, detail="cannot reach")
        if hangups(actions):
            break
        (attempt,) = connects(actions)
        delays.append(attempt.delay_s)
        now += attempt.delay_s + 0.05  # each attempt takes 50 ms to fail
    assert delays[:4] == [0.1, 0.2, 0.4, 0.8] and max(delays) <= 5.0
    assert 20.0 <= now <= 21.0  # RELAY_RECONNECT_GIVE_UP_S, not a second more
    assert len(delays) < 15


# --- 5. a console's response options are kept ------------------------------------------------


def test_console_response_options_wait_for_the_running_response() -> None:
    b = open_bridge()
    start_response(b)
    raw = '{"type":"response.create","call_sid":"CA1","response":{"instructions":"Say bye."}}'
    assert not sent_ids(b.on_console(cmd(raw), 1.0), "response.create")
    events = model_events(b.on_model(done(), 2.0))
    assert events == [{"type": "response.create", "response": {"instructions": "Say bye."}}]


# --- 6. re-seeded context is in order and cut to what was heard ------------------------------


def test_reseed_keeps_the_models_order_though_the_question_is_transcribed_late() -> None:
    b = open_bridge()
    b.on_model(added("u1", "user", None), 0.1)
    b.on_model(added("a1", "assistant", "u1"), 0.2)
    b.on_model(said_text("a1", "It is sunny."), 0.3)  # the answer's text comes first
    b.on_model(heard_text("u1", "How is the weather?"), 0.4)
    (again,) = connects(b.on_model_closed(b.upstream.gen, 1006, 1.0))
    items = [e["item"] for e in model_events(b.on_model_open(again.gen, 1.2))[1:]]
    assert [(i["id"], i["role"], i["content"][0]["text"]) for i in items] == [
        ("u1", "user", "How is the weather?"),
        ("a1", "assistant", "It is sunny."),
    ]


def test_a_late_transcript_of_an_interrupted_answer_is_cut_to_what_was_heard() -> None:
    b = open_bridge()
    b.on_model(added("a1", "assistant", None), 0.1)
    start_response(b)
    for _ in range(10):
        b.on_model(delta("a1", 100), 0.2)  # one second of answer, sent at once
    b.on_mark("a1:100", 0.3)
    b.on_model(ev(type="input_audio_buffer.speech_started", item_id="u2"), 0.45)  # 250 ms heard
    text = "One two three four five six seven eight nine ten."
    b.on_model(said_text("a1", text), 0.5)  # arrives after the barge-in
    heard = b.conversation.by_id["a1"].text
    assert heard.endswith("...") and len(heard) <= len(text) * 0.3 + 3
    (again,) = connects(b.on_model_closed(b.upstream.gen, 1006, 1.0))
    items = [e["item"] for e in model_events(b.on_model_open(again.gen, 1.2))[1:]]
    assert items[0]["content"][0]["text"] == heard


# --- 7. the end reason travels with the call -------------------------------------------------


def test_end_reasons_survive_the_stream_closing_after_the_hang_up() -> None:
    cases = {
        EndReason.CONSOLE_ENDED: lambda b: b.on_console(
            cmd('{"type":"call.end","call_sid":"CA1"}'), 1.0
        ),
        EndReason.ERROR: lambda b: b.on_task_failed("the timer task raised"),
        EndReason.RELAY_SHUTDOWN: lambda b: b.shutdown(),
        EndReason.MODEL_UNAVAILABLE: lambda b: b.on_model_closed(b.upstream.gen, 4003, 1.0),
    }
    for reason, cause in cases.items():
        b = open_bridge()
        (hangup,) = hangups(cause(b))
        assert hangup.reason is reason
        b.end(EndReason.ERROR, "the Twilio stream closed without a stop")
        summary = b.summary(5.0)
        assert summary["end_reason"] == reason.value, reason
        assert summary["reason"] == hangup.detail


def test_the_agent_ending_the_call_hangs_up_after_the_goodbye_is_heard() -> None:
    b = open_bridge()
    start_response(b)
    b.request_hangup(Hangup(EndReason.AGENT_ENDED, "the agent ended the call"), 1.0)
    b.on_model(done(), 1.1)
    start_response(b, "resp_2")
    b.on_model(delta("bye", 200, "resp_2"), 1.2)
    assert not hangups(b.on_model(done("resp_2"), 1.3))  # still playing
    (hangup,) = hangups(b.on_mark("bye:200", 1.5))
    assert hangup.reason is EndReason.AGENT_ENDED
    b.end(EndReason.CALLER_HUNG_UP)
    assert b.summary(2.0)["end_reason"] == "agent_ended"


def test_a_caller_hang_up_is_the_reason_when_nothing_else_ended_the_call() -> None:
    b = open_bridge()
    b.end(EndReason.CALLER_HUNG_UP, "the caller hung up")
    assert b.summary(1.0)["end_reason"] == "caller_hung_up"


# --- 8. hand-overs and drops -----------------------------------------------------------------


def test_a_drop_during_a_pending_switch_is_counted_and_backed_off() -> None:
    b = open_bridge()
    old = b.upstream.gen
    start_response(b)  # not quiet: the switch waits
    switch = '{"type":"session.update","call_sid":"CA1","session":{"model":"gpt-realtime-2"}}'
    (spare,) = connects(b.on_console(cmd(switch), 1.0))
    assert spare.spare
    dropped = b.on_model_closed(old, 1006, 1.1)
    (again,) = connects(dropped)
    assert not again.spare and again.delay_s > 0
    assert b.upstream.reconnects == 1
    assert [e["type"] for e in console(dropped)].count("model.reconnecting") == 1
    assert b.on_model_open(spare.gen, 1.2) == [CloseModel(spare.gen)]  # no longer wanted
    assert "session.update" in types(b.on_model_open(again.gen, 1.4))
    assert b.model_at_connect == "gpt-realtime-2"


def test_a_planned_hand_over_is_not_a_reconnect_and_its_close_is_ignored() -> None:
    b = open_bridge()
    old = b.upstream.gen
    switch = '{"type":"session.update","call_sid":"CA1","session":{"model":"gpt-realtime-2"}}'
    (spare,) = connects(b.on_console(cmd(switch), 1.0))
    actions = b.on_model_open(spare.gen, 1.2)  # quiet: hand over at once
    assert actions[0] == Handover(spare.gen)
    assert types(actions)[0] == "session.update"
    assert any(e["type"] == "model.switched" for e in console(actions))
    assert b.on_model_closed(old, 1000, 1.3) == []
    assert b.upstream.reconnects == 0 and b.model_ready


def test_a_session_rolls_over_at_a_quiet_moment_before_it_expires() -> None:
    b = bridge()
    b.clock_offset = 1000.0  # unix time = monotonic + 1000
    connect(b, 0.0)
    b.config.rollover_margin_s = 300.0
    b.on_model(ev(type="session.created", session={"id": "s1", "expires_at": 1000 + 3600}), 0.1)
    assert not connects(b.on_timer(3000.0))
    start_response(b)
    (spare,) = connects(b.on_timer(3301.0))
    assert b.on_model_open(spare.gen, 3301.5) == []  # an answer is running: wait
    actions = b.on_model(done(), 3302.0)
    assert Handover(spare.gen) in actions
    assert b.summary(0.0)["handovers"] == 1


# --- bounded state and the latency the caller feels ------------------------------------------


def test_an_hour_of_turns_keeps_the_per_call_books_bounded() -> None:
    b = open_bridge()
    previous = None
    for turn in range(600):
        now = turn * 6.0
        item = f"a{turn}"
        b.on_model(added(item, "assistant", previous), now)
        previous = item
        start_response(b, f"r{turn}")
        b.on_model(delta(item, 100, f"r{turn}"), now)
        b.on_model(ev(type="input_audio_buffer.speech_started", item_id=f"u{turn}"), now + 0.05)
        b.on_model(done(f"r{turn}", "cancelled"), now + 0.1)
    assert len(b.received_ms) <= 32 and len(b.interrupted_items) <= 32
    assert len(b.playback.items) <= 32 and len(b.conversation) <= MAX_ENTRIES


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_latency_runs_from_the_callers_last_word_to_the_first_answer_audio() -> None:
    b = open_bridge()
    speech, quiet = b64(tone_mulaw(20)), b64(silence_mulaw(20))
    t = 1.0
    b.on_model(ev(type="input_audio_buffer.speech_started", item_id="u1"), t)
    for _ in range(25):  # 500 ms of voice
        b.on_media(speech, t)
        t += 0.02
    last_word = t - 0.02
    for _ in range(15):  # 300 ms of silence: semantic VAD decides the turn is over
        b.on_media(quiet, t)
        t += 0.02
    b.on_model(ev(type="input_audio_buffer.speech_stopped", audio_end_ms=800, item_id="u1"), t)
    start_response(b)
    actions = b.on_model(delta("a1", 100), t + 0.25)
    (latency,) = [e for e in console(actions) if e["type"] == "turn.latency"]
    assert abs(latency["latency_ms"] - (t + 0.25 - last_word) * 1000) < 1
    assert 540 < latency["latency_ms"] < 580
    summary = b.summary(10.0)
    assert summary["latency_p50_ms"] == summary["latency_p95_ms"] == latency["latency_ms"]


def test_connect_actions_carry_the_model_and_generation() -> None:
    b = bridge()
    assert b.start(prewarmed=True) == [Connect(1, "gpt-realtime", 0.0, prewarmed=True)]
