"""Token usage: one reading of the Realtime usage object for the core, the record and the
console (shared/usage.py)."""

from __future__ import annotations

import json
from typing import Any

from bridge_kit import ev, open_bridge

from console.calls import CallLog
from relay.store import Usage
from shared.usage import TokenUsage

RESPONSE_USAGE: dict[str, Any] = {
    "total_tokens": 380,
    "input_tokens": 250,
    "output_tokens": 130,
    "input_token_details": {
        "text_tokens": 100,
        "audio_tokens": 150,
        "cached_tokens": 64,
        "cached_tokens_details": {"text_tokens": 64, "audio_tokens": 0},
    },
    "output_token_details": {"text_tokens": 30, "audio_tokens": 100},
}


def test_responses_are_summed_by_kind() -> None:
    usage = TokenUsage()
    usage.add(RESPONSE_USAGE)
    usage.add(RESPONSE_USAGE)
    assert usage == TokenUsage(
        input_tokens=500,
        output_tokens=260,
        total_tokens=760,
        input_text_tokens=200,
        input_audio_tokens=300,
        input_cached_tokens=128,
        input_cached_text_tokens=128,
        output_text_tokens=60,
        output_audio_tokens=200,
    )
    record = Usage.from_tokens(usage)
    assert (record.input_audio, record.output_audio, record.total) == (300, 200, 760)


def test_missing_or_malformed_parts_count_as_nothing() -> None:
    usage = TokenUsage()
    usage.add(None)
    usage.add({})
    usage.add(
        {
            "total_tokens": "380",
            "input_tokens": -5,
            "output_tokens": True,
            "input_token_details": ["not", "a", "dict"],
            "output_token_details": {"audio_tokens": 7.5, "text_tokens": 3},
        }
    )
    assert usage == TokenUsage(output_text_tokens=3)


def test_the_summary_form_reads_back_and_ignores_what_it_does_not_know() -> None:
    usage = TokenUsage()
    usage.add(RESPONSE_USAGE)
    flat = json.loads(json.dumps(usage.as_dict()))
    assert TokenUsage.from_summary(flat) == usage
    assert TokenUsage.from_summary({"total_tokens": "9", "future_kind": 4}) == TokenUsage()


def test_the_console_keeps_audio_and_cached_tokens_once_the_call_has_ended() -> None:
    # The console sums live response.done events, then takes the relay's sum from the call
    # summary, which is flat: reading it as a response's usage lost the audio counts.
    bridge = open_bridge()
    done = {"type": "response.done", "response": {"id": "resp_1", "status": "completed"}}
    done["response"]["usage"] = RESPONSE_USAGE
    bridge.on_model(ev(**done), 1.0)
    log = CallLog("CA1")
    log.apply({"type": "model", "call_sid": "CA1", "event": done})
    live = log.usage.as_dict()
    summary = json.loads(json.dumps(bridge.summary(2.0)))
    log.apply({"type": "call.ended", "call_sid": "CA1", "summary": summary})
    assert log.usage.as_dict() == live
    assert (log.usage.input_audio_tokens, log.usage.input_cached_tokens) == (150, 64)
