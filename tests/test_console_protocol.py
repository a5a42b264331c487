"""Console -> relay commands: an allow-list of strict types with messages that say why."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared import console_protocol as cp
from shared.console_protocol import CommandError, decode_command

CA = "CA" + "ab" * 16

COMMANDS: list[tuple[dict[str, Any], type[cp.Command]]] = [
    (
        {
            "type": "session.update",
            "id": "c1",
            "session": {"voice": "ash"},
            "call_sid": CA,
            "scope": "both",
        },
        cp.SessionUpdateCommand,
    ),
    (
        {
            "type": "conversation.item.create",
            "call_sid": CA,
            "item": {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "hi"}],
            },
        },
        cp.ItemCreateCommand,
    ),
    (
        {"type": "response.create", "call_sid": CA, "response": {"instructions": "Say hi."}},
        cp.ResponseCreateCommand,
    ),
    ({"type": "response.create", "call_sid": CA}, cp.ResponseCreateCommand),
    ({"type": "response.cancel", "call_sid": CA}, cp.ResponseCancelCommand),
    ({"type": "input_audio_buffer.commit", "call_sid": CA}, cp.CommitAudioCommand),
    (
        {"type": "function_call.output", "call_sid": CA, "call_id": "call_1", "output": "{}"},
        cp.FunctionOutputCommand,
    ),
    ({"type": "call.end", "call_sid": CA}, cp.EndCallCommand),
    ({"type": "sim.call", "seconds": 5}, cp.SimCallCommand),
    ({"type": "sim.call"}, cp.SimCallCommand),
    ({"type": "ping", "id": "p1"}, cp.PingCommand),
]


def test_every_command_type_has_a_sample() -> None:
    assert {c["type"] for c, _ in COMMANDS} == set(cp.COMMAND_TYPES)


@pytest.mark.parametrize(("obj", "cls"), COMMANDS, ids=lambda x: getattr(x, "__name__", None))
def test_each_command_decodes(obj: dict[str, Any], cls: type[cp.Command]) -> None:
    for data in (json.dumps(obj), json.dumps(obj).encode()):
        cmd = decode_command(data)
        assert type(cmd) is cls
        encoded = json.loads(cp.encode_command(cmd))
        assert {k: encoded[k] for k in obj} == obj  # every field survives re-encoding


def test_command_fields_and_defaults() -> None:
    cmd = decode_command('{"type":"session.update","session":{"voice":"ash"}}')
    assert isinstance(cmd, cp.SessionUpdateCommand)
    assert cmd.session == {"voice": "ash"}
    assert cmd.call_sid is None
    assert cmd.scope == "call"

    sim = decode_command('{"type":"sim.call"}')
    assert isinstance(sim, cp.SimCallCommand)
    assert sim.seconds == 20.0

    out = decode_command(
        '{"type":"function_call.output","id":"x","call_sid":"CA1","call_id":"call_9","output":"42"}'
    )
    assert isinstance(out, cp.FunctionOutputCommand)
    assert (out.id, out.call_sid, out.call_id, out.output) == ("x", "CA1", "call_9", "42")


def test_unknown_type_is_refused_with_the_allowed_list() -> None:
    with pytest.raises(CommandError) as info:
        decode_command('{"type":"call.transfer","call_sid":"CA1"}')
    message = str(info.value)
    assert "'call.transfer'" in message
    for kind in cp.COMMAND_TYPES:
        assert kind in message


def test_missing_type_is_refused() -> None:
    with pytest.raises(CommandError, match="type"):
        decode_command('{"call_sid":"CA1"}')


@pytest.mark.parametrize(
    "raw",
    [
        '{"type":"ping","extra":1}',
        '{"type":"call.end","call_sid":"CA1","reason":"done"}',
        '{"type":"session.update","session":{},"callSid":"CA1"}',
    ],
)
def test_unknown_field_is_refused_by_name(raw: str) -> None:
    extra = next(k for k in json.loads(raw) if k not in ("type", "session", "call_sid"))
    with pytest.raises(CommandError, match=f"unknown field `{extra}`"):
        decode_command(raw)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ('{"type":"call.end"}', "call_sid"),
        ('{"type":"call.end","call_sid":7}', "call_sid"),
        ('{"type":"session.update","session":{},"scope":"everyone"}', "scope"),
        ('{"type":"function_call.output","call_sid":"CA1","call_id":"c","output":{}}', "output"),
        ('{"type":"sim.call","seconds":"ten"}', "seconds"),
    ],
)
def test_missing_or_wrong_typed_fields_are_named(raw: str, field: str) -> None:
    with pytest.raises(CommandError, match=field):
        decode_command(raw)


def test_oversize_command_is_refused() -> None:
    big = json.dumps({"type": "session.update", "session": {"instructions": "x" * 70_000}})
    with pytest.raises(CommandError, match="limit"):
        decode_command(big)
    with pytest.raises(CommandError, match="limit"):
        decode_command(big.encode())


def test_size_limit_counts_bytes_not_characters() -> None:
    # 30,000 three-byte characters: ~90 KB on the wire although only ~30k characters.
    big = json.dumps(
        {"type": "session.update", "session": {"instructions": "€" * 30_000}}, ensure_ascii=False
    )
    assert len(big) < cp.MAX_COMMAND_BYTES < len(big.encode())
    with pytest.raises(CommandError, match="limit"):
        decode_command(big)


def test_command_just_under_the_limit_is_accepted() -> None:
    head = '{"type":"session.update","session":{"instructions":"'
    tail = '"}}'
    raw = head + "x" * (cp.MAX_COMMAND_BYTES - len(head) - len(tail)) + tail
    assert len(raw) == cp.MAX_COMMAND_BYTES
    assert isinstance(decode_command(raw), cp.SessionUpdateCommand)


@pytest.mark.parametrize("raw", ['{"type":"ping"', "ping", "", b"\xff\xfe", "{'type':'ping'}"])
def test_malformed_json_is_a_command_error(raw: str | bytes) -> None:
    with pytest.raises(CommandError):
        decode_command(raw)


@pytest.mark.parametrize("raw", ["[]", "null", "42", '"ping"'])
def test_non_object_json_is_a_command_error(raw: str) -> None:
    with pytest.raises(CommandError):
        decode_command(raw)


def test_encode_event_is_compact_json() -> None:
    event = {"type": "dtmf", "call_sid": CA, "digit": "5", "ts": 1.5}
    assert json.loads(cp.encode_event(event)) == event
