"""Call records as the History and call detail views show them; the Profiles form."""

from __future__ import annotations

import json
from typing import Any

import pytest

from console import history_view as hv
from console.config_form import FormError
from console.profiles_form import (
    DEFAULT,
    ProfileForm,
    check_name,
    from_profile,
    summary,
    to_profile,
)

T0 = 1767000000.0
RECORD: dict[str, Any] = {
    "call_sid": "CA0123",
    "started_at": T0,
    "direction": "inbound",
    "from": "+15551234567",
    "to": "+15557654321",
    "answered_at": T0 + 1.5,
    "ended_at": T0 + 61.25,
    "end_reason": "transferred",
    "end_reason_text": "to +15550001111",
    "model": "gpt-realtime",
    "voice": "marin",
    "profile": "sales",
    "turns": [
        {"role": "assistant", "text": "Hello! How can I help?", "item_id": "item_a1",
         "at": T0 + 2.0, "interrupted": False, "heard_ms": None},
        {"role": "user", "text": "What's the weather in Paris?", "item_id": "item_u1",
         "at": T0 + 5.0, "interrupted": False, "heard_ms": None},
        {"role": "assistant", "text": "It is sunny and twenty degrees, and tomorrow",
         "item_id": "item_a2", "at": T0 + 8.0, "interrupted": True, "heard_ms": 1840},
    ],
    "tool_calls": [
        {"call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}",
         "output": "{\"temp_c\":20}", "ok": True, "duration_ms": 312, "source": "backend",
         "at": T0 + 6.0},
        {"call_id": "call_2", "name": "lookup_order", "arguments": "{}", "output": "",
         "ok": False, "duration_ms": 30000, "source": "timeout", "at": T0 + 9.0},
    ],
    "session_changes": [{"kind": "reconnect", "at": T0 + 20.0, "reason": "close 1006"}],
    "usage": {"input_text": 1200, "input_audio": 3000, "input_cached_text": 1000,
              "input_cached_audio": 500, "output_text": 150, "output_audio": 2400},
    "cost_usd": 0.2374,
    "latency": [{"item_id": "item_a1", "latency_ms": 640},
                {"item_id": "item_a2", "latency_ms": 820}],
    "recording_sids": ["RE" + "c" * 32],
    "something_new": {"readers": "ignore it"},
}  # fmt: skip


def test_a_history_row() -> None:
    summary_ = {k: v for k, v in RECORD.items() if not isinstance(v, list)}
    row = hv.call_row({**summary_, "duration_s": 59.75, "turns": 3, "cost_usd": 0.2374})
    assert row["href"] == "/history/CA0123"
    assert row["direction"] == "in" and row["duration"] == "1:00"
    assert row["end"] == "transferred" and row["end_code"] == "transferred"
    assert row["cost"] == "$0.237" and row["turns"] == "3" and row["profile"] == "sales"
    bare = hv.call_row({"call_sid": "CA1", "profile": None, "cost_usd": None, "end_reason": None})
    assert bare["profile"] == "default" and bare["cost"] == "n/a" and bare["duration"] == ""
    assert hv.clock(3725) == "1:02:05" and hv.money(0.004) == "$0.0040"


def test_the_call_detail() -> None:
    d = hv.detail(RECORD)
    facts = {f["label"]: f["value"] for f in d.facts}
    assert facts["From"] == "+15551234567" and facts["Duration"] == "1:00"
    assert facts["Profile"] == "sales" and "Answered" not in facts
    assert d.end == "transferred: to +15550001111"
    assert hv.end_words("caller_hung_up", "the caller hung up") == "the caller hung up"
    assert hv.end_words("console_ended", "ended from the console") == "hung up from the console"
    assert hv.end_words("error", "the Twilio stream closed without a stop") == (
        "an error ended the call: the Twilio stream closed without a stop"
    )

    # Turns and tool calls in time order, offsets from the answer.
    assert [(ln["role"], ln["at"]) for ln in d.lines] == [
        ("assistant", "0:00"),
        ("caller", "0:04"),
        ("tool", "0:04"),
        ("assistant", "0:06"),
        ("tool", "0:08"),
    ]
    hello, _, weather, cut, order = d.lines
    assert hello["latency"] == "640 ms" and cut["latency"] == "820 ms"
    assert cut["interrupted"] == "1" and cut["note"] == "interrupted: the caller heard 1.8 s"
    assert weather["text"] == 'get_weather({"city": "Paris"})'
    assert weather["note"] == "done, 312 ms, answered by the relay"
    assert order["note"] == "timeout, 30000 ms, answered by nobody (timed out)"
    untimed = {"name": "t", "ok": True, "duration_ms": 0, "source": "console", "at": T0}
    line = hv.detail({**RECORD, "turns": [], "tool_calls": [untimed]}).lines[0]
    assert line["note"] == "done, answered by the console"  # the relay did not time it

    assert d.tools[0]["source"] == "the relay" and d.tools[0]["ok"] == "yes"
    assert d.tools[1]["status"] == "timeout" and "timed out" in d.tools[1]["source"]
    assert [p["ms"] for p in d.latency] == ["640", "820"]
    assert d.latency_p50 == "730 ms" and d.latency_p95 == "811 ms"
    usage = {u["label"]: (u["tokens"], u["note"]) for u in d.usage}
    assert usage["Text in"] == ("1200", "1000 cached") and usage["Total"] == ("6750", "")
    assert d.cost.startswith("$0.237 (an estimate")
    assert d.changes == [{"at": "0:18", "what": "reconnected to the model", "reason": "close 1006"}]
    assert d.recording_sids == ["RE" + "c" * 32]


def test_a_call_that_never_started_properly() -> None:
    d = hv.detail({"call_sid": "CA9", "started_at": T0, "model": "my-model", "cost_usd": None})
    facts = {f["label"]: f["value"] for f in d.facts}
    assert facts["Answered"] == "never" and facts["Duration"] == ""
    assert d.end == "not ended (or not recorded)"
    assert d.lines == [] and d.latency_p50 == ""
    assert "no price for my-model" in d.cost


# --- the Profiles form -----------------------------------------------------------------


def test_an_empty_form_sets_nothing_and_defaults_are_left_out() -> None:
    assert to_profile(ProfileForm(name="x")) == {}
    assert summary({"name": "x"}) == "the defaults (sets nothing of its own)"


def test_a_full_profile_round_trips() -> None:
    profile = {
        "name": "sales",
        "instructions": "You sell things.",
        "voice": "cedar",
        "model": "gpt-realtime-mini",
        "tools": [{"type": "function", "name": "check_stock", "parameters": {"type": "object"}}],
        "greeting": "Say hello.",
        "turn_detection": {"type": "server_vad", "threshold": 0.6, "silence_duration_ms": 400,
                           "prefix_padding_ms": 300},
    }  # fmt: skip
    form = from_profile(profile)
    assert form.turn_detection == "server_vad" and form.threshold == "0.6"
    assert form.silence_ms == "400" and form.greeting_mode == "say"
    body = to_profile(form)
    assert body == {k: v for k, v in profile.items() if k != "name"}  # prefix padding kept
    assert "4 " not in summary(profile) and "1 tool(s)" in summary(profile)


def test_no_tools_no_greeting_and_turn_detection_off() -> None:
    form = ProfileForm(tools="[]", greeting_mode="none", turn_detection="none")
    assert to_profile(form) == {"tools": [], "greeting": "", "turn_detection": {"type": "none"}}
    back = from_profile({"name": "q", "tools": [], "greeting": "", "turn_detection": None})
    assert back.tools == "[]" and back.greeting_mode == "none" and back.turn_detection == DEFAULT
    assert summary({"tools": [], "greeting": ""}) == "no tools, waits for the caller"


def test_changing_the_turn_detection_kind_drops_the_other_kinds_fields() -> None:
    form = from_profile({"turn_detection": {"type": "server_vad", "silence_duration_ms": 400}})
    form.turn_detection, form.eagerness = "semantic_vad", "low"
    assert to_profile(form)["turn_detection"] == {"type": "semantic_vad", "eagerness": "low"}


@pytest.mark.parametrize(
    ("form", "field", "words"),
    [
        (ProfileForm(tools="[{"), "tools", "Tools: not valid JSON"),
        (ProfileForm(tools='"lookup"'), "tools", "expected a JSON list"),
        (ProfileForm(greeting_mode="say"), "greeting", "type what the agent says"),
        (ProfileForm(turn_detection="server_vad", threshold="2"), "threshold", "between 0 and 1"),
        (ProfileForm(turn_detection="server_vad", silence_ms="soon"), "silence_ms", "a number"),
    ],
)
def test_what_cannot_be_sent_is_refused_by_field(form: ProfileForm, field: str, words: str) -> None:
    with pytest.raises(FormError) as err:
        to_profile(form)
    assert err.value.field == field and words in str(err.value)


def test_one_tool_pasted_alone_is_a_list_of_one() -> None:
    tool = {"name": "t", "parameters": {"type": "object"}}
    assert to_profile(ProfileForm(tools=json.dumps(tool)))["tools"] == [tool]


def test_profile_names() -> None:
    assert check_name("  sales desk ") == "sales desk"
    for bad in ("", "-x", "a/b", "x" * 65):
        with pytest.raises(FormError):
            check_name(bad)
