"""OpenAI Realtime GA events (protocols.md sections 2.4 and 2.5)."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from shared import realtime as rt

B64 = "//8AAP//AAD//wAA"  # a few bytes of audio

# One realistic payload per server event type the relay models. Where protocols.md 2.5
# has an example it is used verbatim (with the "…" elisions filled in).
SERVER_EVENTS: dict[str, dict[str, Any]] = {
    "session.created": {
        "type": "session.created",
        "event_id": "event_C9G5RJeJ2gF77mV7f2B1j",
        "session": {
            "type": "realtime",
            "object": "realtime.session",
            "id": "sess_C9G5QPteg4UIbotdKLoYQ",
            "model": "gpt-realtime-2025-08-28",
            "output_modalities": ["audio"],
            "instructions": "Your knowledge cutoff is 2023-10.",
            "tools": [],
            "tool_choice": "auto",
            "max_output_tokens": "inf",
            "tracing": None,
            "prompt": None,
            "expires_at": 1756324625,
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": 24000},
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
                "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin"},
            },
            "include": None,
        },
    },
    "session.updated": {
        "type": "session.updated",
        "event_id": "event_C9G8mqI3IucaojlVKE8Cs",
        "session": {
            "type": "realtime",
            "model": "gpt-realtime",
            "audio": {"output": {"format": {"type": "audio/pcmu"}, "voice": "marin"}},
        },
    },
    "conversation.item.added": {
        "type": "conversation.item.added",
        "event_id": "event_C9G8pjSJCfRNEhMEnYAVy",
        "previous_item_id": None,
        "item": {
            "id": "item_C9G8pGVKYnaZu8PH5YQ9O",
            "type": "message",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": None}],
        },
    },
    "conversation.item.done": {
        "type": "conversation.item.done",
        "event_id": "event_CCXLgMZPo3qioWCeQa4WH",
        "previous_item_id": "item_CCXLecNJVIVR2HUy3ABLj",
        "item": {
            "id": "item_CCXLfxmM5sXVJVz4mCa2S",
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_audio", "transcript": "Loud and clear! I can hear you."}],
        },
    },
    "conversation.item.created": {
        "type": "conversation.item.created",
        "event_id": "event_1920",
        "previous_item_id": "msg_002",
        "item": {
            "id": "msg_003",
            "object": "realtime.item",
            "type": "message",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": "hello how are you"}],
        },
    },
    "conversation.item.truncated": {
        "type": "conversation.item.truncated",
        "event_id": "event_2526",
        "item_id": "msg_004",
        "content_index": 0,
        "audio_end_ms": 1500,
    },
    "conversation.item.deleted": {
        "type": "conversation.item.deleted",
        "event_id": "event_2728",
        "item_id": "msg_005",
    },
    "input_audio_buffer.speech_started": {
        "type": "input_audio_buffer.speech_started",
        "event_id": "event_1516",
        "audio_start_ms": 1000,
        "item_id": "msg_003",
    },
    "input_audio_buffer.speech_stopped": {
        "type": "input_audio_buffer.speech_stopped",
        "event_id": "event_1718",
        "audio_end_ms": 2000,
        "item_id": "msg_003",
    },
    "input_audio_buffer.committed": {
        "type": "input_audio_buffer.committed",
        "event_id": "event_1121",
        "previous_item_id": "msg_001",
        "item_id": "msg_002",
    },
    "input_audio_buffer.cleared": {"type": "input_audio_buffer.cleared", "event_id": "event_1314"},
    "input_audio_buffer.timeout_triggered": {
        "type": "input_audio_buffer.timeout_triggered",
        "event_id": "event_CEKKrf1KTGvemCPyiJTJ2",
        "audio_start_ms": 13216,
        "audio_end_ms": 19232,
        "item_id": "item_CEKKrWH0GiwN0ET97NUZc",
    },
    "conversation.item.input_audio_transcription.delta": {
        "type": "conversation.item.input_audio_transcription.delta",
        "event_id": "event_CCXGRxsAimPAs8kS2Wc7Z",
        "item_id": "item_CCXGQ4e1ht4cOraEYcuR2",
        "content_index": 0,
        "delta": "Hey",
        "obfuscation": "aLxx0jTEciOGe",
    },
    "conversation.item.input_audio_transcription.completed": {
        "type": "conversation.item.input_audio_transcription.completed",
        "event_id": "event_CCXGRvtUVrax5SJAnNOWZ",
        "item_id": "item_CCXGQ4e1ht4cOraEYcuR2",
        "content_index": 0,
        "transcript": "Hey, can you hear me?",
        "usage": {
            "type": "tokens",
            "total_tokens": 22,
            "input_tokens": 13,
            "input_token_details": {"text_tokens": 0, "audio_tokens": 13},
            "output_tokens": 9,
        },
    },
    "conversation.item.input_audio_transcription.failed": {
        "type": "conversation.item.input_audio_transcription.failed",
        "event_id": "event_2324",
        "item_id": "msg_003",
        "content_index": 0,
        "error": {
            "type": "transcription_error",
            "code": "audio_unintelligible",
            "message": "The audio could not be transcribed.",
            "param": None,
        },
    },
    "response.created": {
        "type": "response.created",
        "event_id": "event_C9G8pqbTEddBSIxbBN6Os",
        "response": {
            "object": "realtime.response",
            "id": "resp_C9G8p7IH2WxLbkgPNouYL",
            "status": "in_progress",
            "status_details": None,
            "output": [],
            "conversation_id": "conv_C9G8mmBkLhQJwCon3hoJN",
            "output_modalities": ["audio"],
            "max_output_tokens": "inf",
            "audio": {"output": {"format": {"type": "audio/pcmu"}, "voice": "marin"}},
            "usage": None,
            "metadata": None,
        },
    },
    "response.done": {
        "type": "response.done",
        "event_id": "event_CCXHxcMy86rrKhBLDdqCh",
        "response": {
            "object": "realtime.response",
            "id": "resp_CCXHw0UJld10EzIUXQCNh",
            "status": "completed",
            "status_details": None,
            "output": [
                {
                    "id": "item_CCXHwGjjDUfOXbiySlK7i",
                    "type": "message",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_audio", "transcript": "Loud and clear!"}],
                }
            ],
            "conversation_id": "conv_CCXHsurMKcaVxIZvaCI5m",
            "output_modalities": ["audio"],
            "max_output_tokens": "inf",
            "audio": {"output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "alloy"}},
            "usage": {
                "total_tokens": 253,
                "input_tokens": 132,
                "output_tokens": 121,
                "input_token_details": {
                    "text_tokens": 119,
                    "audio_tokens": 13,
                    "image_tokens": 0,
                    "cached_tokens": 64,
                    "cached_tokens_details": {
                        "text_tokens": 64,
                        "audio_tokens": 0,
                        "image_tokens": 0,
                    },
                },
                "output_token_details": {"text_tokens": 30, "audio_tokens": 91},
            },
            "metadata": None,
        },
    },
    "response.output_item.added": {
        "type": "response.output_item.added",
        "event_id": "event_3334",
        "response_id": "resp_001",
        "output_index": 0,
        "item": {
            "id": "msg_007",
            "object": "realtime.item",
            "type": "message",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        },
    },
    "response.output_item.done": {
        "type": "response.output_item.done",
        "event_id": "event_3536",
        "response_id": "resp_002",
        "output_index": 0,
        "item": {
            "id": "fc_001",
            "object": "realtime.item",
            "type": "function_call",
            "status": "completed",
            "name": "get_weather",
            "call_id": "call_001",
            "arguments": '{"location": "San Francisco"}',
        },
    },
    "response.content_part.added": {
        "type": "response.content_part.added",
        "event_id": "event_3738",
        "response_id": "resp_001",
        "item_id": "msg_007",
        "output_index": 0,
        "content_index": 0,
        "part": {"type": "audio", "transcript": ""},
    },
    "response.content_part.done": {
        "type": "response.content_part.done",
        "event_id": "event_3940",
        "response_id": "resp_001",
        "item_id": "msg_007",
        "output_index": 0,
        "content_index": 0,
        "part": {"type": "audio", "transcript": "Sure, I can help with that."},
    },
    "response.output_audio.delta": {
        "type": "response.output_audio.delta",
        "event_id": "event_4950",
        "response_id": "resp_001",
        "item_id": "msg_008",
        "output_index": 0,
        "content_index": 0,
        "delta": B64,
    },
    "response.output_audio.done": {
        "type": "response.output_audio.done",
        "event_id": "event_5152",
        "response_id": "resp_001",
        "item_id": "msg_008",
        "output_index": 0,
        "content_index": 0,
    },
    "response.output_audio_transcript.delta": {
        "type": "response.output_audio_transcript.delta",
        "event_id": "event_4546",
        "response_id": "resp_001",
        "item_id": "msg_008",
        "output_index": 0,
        "content_index": 0,
        "delta": "Hello, how can I a",
    },
    "response.output_audio_transcript.done": {
        "type": "response.output_audio_transcript.done",
        "event_id": "event_4748",
        "response_id": "resp_001",
        "item_id": "msg_008",
        "output_index": 0,
        "content_index": 0,
        "transcript": "Hello, how can I assist you today?",
    },
    "response.output_text.delta": {
        "type": "response.output_text.delta",
        "event_id": "event_4142",
        "response_id": "resp_001",
        "item_id": "msg_007",
        "output_index": 0,
        "content_index": 0,
        "delta": "Sure, I can h",
    },
    "response.output_text.done": {
        "type": "response.output_text.done",
        "event_id": "event_4344",
        "response_id": "resp_001",
        "item_id": "msg_007",
        "output_index": 0,
        "content_index": 0,
        "text": "Sure, I can help with that.",
    },
    "response.function_call_arguments.delta": {
        "type": "response.function_call_arguments.delta",
        "event_id": "event_5354",
        "response_id": "resp_002",
        "item_id": "fc_001",
        "output_index": 0,
        "call_id": "call_001",
        "delta": '{"location": "San',
    },
    "response.function_call_arguments.done": {
        "type": "response.function_call_arguments.done",
        "event_id": "event_5556",
        "response_id": "resp_002",
        "item_id": "fc_001",
        "output_index": 0,
        "call_id": "call_001",
        "name": "get_weather",
        "arguments": '{"location": "San Francisco"}',
    },
    "rate_limits.updated": {
        "type": "rate_limits.updated",
        "event_id": "event_5758",
        "rate_limits": [
            {"name": "requests", "limit": 1000, "remaining": 999, "reset_seconds": 60},
            {"name": "tokens", "limit": 50000, "remaining": 49950, "reset_seconds": 60},
        ],
    },
    "error": {
        "type": "error",
        "event_id": "event_890",
        "error": {
            "type": "invalid_request_error",
            "code": "unknown_parameter",
            "message": "Unknown parameter: 'session.input_audio_format'.",
            "param": "session.input_audio_format",
            "event_id": "evt_cli_1",
        },
    },
    # WebRTC/SIP only: the service plays the audio and reports where it is.
    "output_audio_buffer.started": {
        "type": "output_audio_buffer.started",
        "event_id": "event_abc",
        "response_id": "resp_x",
    },
    "output_audio_buffer.stopped": {
        "type": "output_audio_buffer.stopped",
        "event_id": "event_abd",
        "response_id": "resp_x",
    },
    "output_audio_buffer.cleared": {
        "type": "output_audio_buffer.cleared",
        "event_id": "event_abe",
        "response_id": "resp_x",
    },
    "input_audio_buffer.dtmf_event_received": {
        "type": "input_audio_buffer.dtmf_event_received",
        "event_id": "event_abf",
        "event": "5",
        "received_at": 1767000000,
    },
}


def _wire(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def test_every_modelled_server_event_has_a_sample() -> None:
    assert set(SERVER_EVENTS) == set(rt.SERVER_EVENT_TYPES)


@pytest.mark.parametrize("kind", sorted(SERVER_EVENTS))
def test_server_event_decodes_to_its_struct(kind: str) -> None:
    event = rt.decode_server_event(_wire(SERVER_EVENTS[kind]))
    assert type(event) is rt.SERVER_EVENT_TYPES[kind]
    assert event.event_id == SERVER_EVENTS[kind]["event_id"]


@pytest.mark.parametrize("kind", sorted(SERVER_EVENTS))
def test_server_event_round_trips(kind: str) -> None:
    event = rt.decode_server_event(_wire(SERVER_EVENTS[kind]))
    again = rt.decode_server_event(rt.encode_server_event(event))
    assert again == event


@pytest.mark.parametrize("kind", sorted(SERVER_EVENTS))
def test_server_event_tolerates_unknown_fields(kind: str) -> None:
    obj = {**SERVER_EVENTS[kind], "brand_new_field": {"x": [1, None]}}
    event = rt.decode_server_event(_wire(obj))
    assert event == rt.decode_server_event(_wire(SERVER_EVENTS[kind]))


def test_fields_the_relay_uses_are_decoded() -> None:
    delta = rt.decode_server_event(_wire(SERVER_EVENTS["response.output_audio.delta"]))
    assert isinstance(delta, rt.OutputAudioDelta)
    assert (delta.response_id, delta.item_id, delta.delta) == ("resp_001", "msg_008", B64)

    started = rt.decode_server_event(_wire(SERVER_EVENTS["input_audio_buffer.speech_started"]))
    assert isinstance(started, rt.SpeechStarted)
    assert (started.audio_start_ms, started.item_id) == (1000, "msg_003")

    args = rt.decode_server_event(_wire(SERVER_EVENTS["response.function_call_arguments.done"]))
    assert isinstance(args, rt.FunctionCallArgumentsDone)
    assert args.call_id == "call_001"
    assert json.loads(args.arguments) == {"location": "San Francisco"}

    done = rt.decode_server_event(_wire(SERVER_EVENTS["response.done"]))
    assert isinstance(done, rt.ResponseDone)
    assert done.response.status == "completed"
    assert isinstance(done.response.usage, dict)
    assert done.response.usage["output_token_details"]["audio_tokens"] == 91
    assert isinstance(done.response.output, list)
    content = done.response.output[0].content
    assert isinstance(content, list)
    assert content[0].transcript == "Loud and clear!"

    err = rt.decode_server_event(_wire(SERVER_EVENTS["error"]))
    assert isinstance(err, rt.Error)
    assert err.error.code == "unknown_parameter"
    assert err.error.event_id == "evt_cli_1"

    limits = rt.decode_server_event(_wire(SERVER_EVENTS["rate_limits.updated"]))
    assert isinstance(limits, rt.RateLimitsUpdated)
    assert [(r.name, r.remaining) for r in limits.rate_limits] == [
        ("requests", 999),
        ("tokens", 49950),
    ]


def test_cancelled_response_keeps_its_reason() -> None:
    obj = {
        "type": "response.done",
        "event_id": "event_1",
        "response": {
            "id": "resp_1",
            "object": "realtime.response",
            "status": "cancelled",
            "status_details": {"type": "cancelled", "reason": "turn_detected"},
            "output": [],
        },
    }
    event = rt.decode_server_event(_wire(obj))
    assert isinstance(event, rt.ResponseDone)
    assert isinstance(event.response.status_details, rt.StatusDetails)
    assert event.response.status_details.reason == "turn_detected"


UNKNOWN_EVENTS = [
    {
        "type": "conversation.item.retrieved",
        "event_id": "event_CCXGSizgEppa2d4XbKA7K",
        "item": {
            "id": "item_CCXGRxbY0n6WE4EszhF5w",
            "object": "realtime.item",
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_audio", "transcript": "Yes, I can hear you loud."}],
        },
    },
    {
        "type": "mcp_list_tools.completed",
        "event_id": "event_6102",
        "item_id": "mcp_list_tools_001",
    },
    {
        "type": "response.mcp_call_arguments.delta",
        "event_id": "event_6201",
        "response_id": "resp_001",
        "item_id": "mcp_call_001",
        "output_index": 0,
        "delta": '{"partial":true',
        "obfuscation": "x",
    },
    {
        "type": "conversation.item.input_audio_transcription.segment",
        "event_id": "event_6501",
        "item_id": "msg_011",
        "content_index": 0,
        "text": "hello",
        "id": "seg_0001",
        "speaker": "speaker_1",
        "start": 0.0,
        "end": 0.4,
    },
    {"type": "some.future.event", "nested": {"a": [1, 2.5, None, True, "s"]}},
]


@pytest.mark.parametrize("obj", UNKNOWN_EVENTS, ids=lambda o: o["type"])
def test_unknown_event_passes_through_identically(obj: dict[str, Any]) -> None:
    raw = _wire(obj)
    event = rt.decode_server_event(raw)
    assert isinstance(event, rt.UnknownServerEvent)
    assert event.type == obj["type"]
    assert event.raw == obj
    assert rt.encode_server_event(event) == raw


@pytest.mark.parametrize(
    "raw",
    [b'{"type":"response.done"', b"", b"nope", b"\xff", b"[]", b"{}", b'{"type":5}'],
)
def test_malformed_server_frames_raise_msgspec_errors(raw: bytes) -> None:
    with pytest.raises(msgspec.DecodeError):
        rt.decode_server_event(raw)


def test_known_event_with_wrong_field_type_is_a_validation_error() -> None:
    obj = {**SERVER_EVENTS["response.output_audio.delta"], "delta": 5}
    with pytest.raises(msgspec.ValidationError, match="delta"):
        rt.decode_server_event(_wire(obj))


# --- client events -------------------------------------------------------------------


def _enc(event: rt.ClientEvent) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(rt.encode(event))
    return out


def test_append_shape() -> None:
    assert _enc(rt.InputAudioBufferAppend(audio=B64)) == {
        "type": "input_audio_buffer.append",
        "audio": B64,
    }


def test_commit_and_clear_shapes() -> None:
    assert _enc(rt.InputAudioBufferCommit()) == {"type": "input_audio_buffer.commit"}
    assert _enc(rt.InputAudioBufferClear()) == {"type": "input_audio_buffer.clear"}


def test_user_message_create_shape() -> None:
    event = rt.ConversationItemCreate(
        previous_item_id=None,
        item=rt.Item(
            type="message", role="user", content=[rt.ContentPart(type="input_text", text="hi")]
        ),
    )
    assert _enc(event) == {
        "type": "conversation.item.create",
        "previous_item_id": None,
        "item": {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "hi"}],
        },
    }


def test_function_call_output_shape() -> None:
    event = rt.ConversationItemCreate(
        item=rt.Item(type="function_call_output", call_id="call_abc", output='{"ok":true}')
    )
    assert _enc(event) == {
        "type": "conversation.item.create",
        "item": {"type": "function_call_output", "call_id": "call_abc", "output": '{"ok":true}'},
    }


def test_truncate_always_sends_content_index_zero() -> None:
    assert _enc(rt.ConversationItemTruncate(item_id="item_002", audio_end_ms=1500)) == {
        "type": "conversation.item.truncate",
        "item_id": "item_002",
        "content_index": 0,
        "audio_end_ms": 1500,
    }


def test_delete_and_retrieve_shapes() -> None:
    assert _enc(rt.ConversationItemDelete(item_id="item_002")) == {
        "type": "conversation.item.delete",
        "item_id": "item_002",
    }
    assert _enc(rt.ConversationItemRetrieve(item_id="item_002")) == {
        "type": "conversation.item.retrieve",
        "item_id": "item_002",
    }


def test_response_create_without_response_is_bare() -> None:
    assert rt.encode(rt.ResponseCreate()) == b'{"type":"response.create"}'


def test_response_create_with_response_shape() -> None:
    response = {
        "instructions": "Greet the caller.",
        "output_modalities": ["audio"],
        "conversation": "auto",
        "metadata": {"k": "v"},
        "input": [{"type": "item_reference", "id": "item_1"}],
    }
    assert _enc(rt.ResponseCreate(response=response)) == {
        "type": "response.create",
        "response": response,
    }


def test_response_cancel_shapes() -> None:
    assert _enc(rt.ResponseCancel(response_id="resp_123")) == {
        "type": "response.cancel",
        "response_id": "resp_123",
    }
    assert _enc(rt.ResponseCancel()) == {"type": "response.cancel"}


def test_session_update_shape_and_event_id() -> None:
    session = {"type": "realtime", "audio": {"output": {"voice": "marin"}}}
    assert _enc(rt.SessionUpdate(event_id="evt_cli_1", session=session)) == {
        "type": "session.update",
        "event_id": "evt_cli_1",
        "session": session,
    }


def test_event_id_is_omitted_unless_given() -> None:
    assert "event_id" not in _enc(rt.InputAudioBufferCommit())
    assert _enc(rt.InputAudioBufferCommit(event_id="evt_1"))["event_id"] == "evt_1"


CLIENT_EXAMPLES = [
    '{"type":"input_audio_buffer.append","audio":"//8AAP//AAD//wAA"}',
    '{"type":"input_audio_buffer.commit"}',
    '{"type":"input_audio_buffer.clear"}',
    '{"type":"conversation.item.create","previous_item_id":null,"item":{"type":"message",'
    '"role":"user","content":[{"type":"input_text","text":"hi"}]}}',
    '{"type":"conversation.item.create","item":{"type":"function_call_output",'
    '"call_id":"call_abc","output":"{\\"ok\\":true}"}}',
    '{"type":"conversation.item.truncate","item_id":"item_002","content_index":0,'
    '"audio_end_ms":1500}',
    '{"type":"conversation.item.delete","item_id":"item_002"}',
    '{"type":"conversation.item.retrieve","item_id":"item_002"}',
    '{"type":"response.create","response":{"instructions":"Greet the caller.",'
    '"output_modalities":["audio"],"conversation":"auto","metadata":{"k":"v"},'
    '"input":[{"type":"item_reference","id":"item_1"}]}}',
    '{"type":"response.cancel","response_id":"resp_123"}',
]


@pytest.mark.parametrize("raw", CLIENT_EXAMPLES)
def test_documented_client_events_decode_and_re_encode(raw: str) -> None:
    event = rt.decode_client_event(raw)
    assert type(event) is rt.CLIENT_EVENT_TYPES[json.loads(raw)["type"]]
    assert json.loads(rt.encode(event)) == json.loads(raw)


def test_websocket_only_client_events_are_not_modelled() -> None:
    # output_audio_buffer.clear is WebRTC/SIP only; the relay must never build one.
    assert "output_audio_buffer.clear" not in rt.CLIENT_EVENT_TYPES
    with pytest.raises(msgspec.ValidationError):
        rt.decode_client_event('{"type":"output_audio_buffer.clear"}')
