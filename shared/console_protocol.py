"""The relay <-> console protocol on `/logs` (see docs/console-protocol.md).

Commands from a console are an allow-list of strict Structs: an unknown `type`, an
unknown field or a wrong type is refused with a message naming what was wrong.
Events to consoles are plain JSON objects with `type` and (for call events) `call_sid`.
"""

from __future__ import annotations

import time
from typing import Any, Literal, Union

import msgspec
from msgspec import UNSET, UnsetType

MAX_COMMAND_BYTES = 64 * 1024


class Command(msgspec.Struct, tag_field="type", forbid_unknown_fields=True, kw_only=True):
    id: str | UnsetType = UNSET  # echoed in command.ok / command.error


class SessionUpdateCommand(Command, tag="session.update"):
    """Change the session of one live call, the default for new calls, or both."""

    session: dict[str, Any]
    call_sid: str | None = None
    scope: Literal["call", "default", "both"] = "call"
    # What the agent says first on new calls ("" = wait for the caller); default scope only.
    greeting: str | UnsetType = UNSET


class ItemCreateCommand(Command, tag="conversation.item.create"):
    call_sid: str
    item: dict[str, Any]


class ResponseCreateCommand(Command, tag="response.create"):
    call_sid: str
    response: dict[str, Any] | UnsetType = UNSET


class ResponseCancelCommand(Command, tag="response.cancel"):
    call_sid: str


class CommitAudioCommand(Command, tag="input_audio_buffer.commit"):
    call_sid: str


class FunctionOutputCommand(Command, tag="function_call.output"):
    call_sid: str
    call_id: str
    output: str


class EndCallCommand(Command, tag="call.end"):
    call_sid: str


class SimCallCommand(Command, tag="sim.call"):
    """Simulator mode only: the relay places a simulated call to itself."""

    seconds: float = 20.0
    mode: Literal["twilio", "sip"] = "twilio"  # a Media Streams call, or a SIP one


class PingCommand(Command, tag="ping"):
    pass


ConsoleCommand = Union[
    SessionUpdateCommand,
    ItemCreateCommand,
    ResponseCreateCommand,
    ResponseCancelCommand,
    CommitAudioCommand,
    FunctionOutputCommand,
    EndCallCommand,
    SimCallCommand,
    PingCommand,
]

COMMAND_TYPES = tuple(
    c.__struct_config__.tag
    for c in ConsoleCommand.__args__  # type: ignore[attr-defined]
)

_decoder: msgspec.json.Decoder[ConsoleCommand] = msgspec.json.Decoder(ConsoleCommand)
_encoder = msgspec.json.Encoder()


class CommandError(ValueError):
    pass


def decode_command(data: bytes | str) -> ConsoleCommand:
    """Decode and validate one console command; CommandError says what was refused."""
    size = len(data.encode("utf-8", "surrogatepass")) if isinstance(data, str) else len(data)
    if size > MAX_COMMAND_BYTES:
        raise CommandError(f"command is {size} bytes; the limit is {MAX_COMMAND_BYTES}")
    try:
        return _decoder.decode(data)
    except msgspec.ValidationError as exc:
        text = str(exc)
        if "Invalid value" in text and "`$.type`" in text:
            raise CommandError(
                f"{text}; allowed command types: {', '.join(COMMAND_TYPES)}"
            ) from None
        raise CommandError(text) from None
    except msgspec.DecodeError as exc:
        raise CommandError(f"not valid JSON: {exc}") from None
    except (RecursionError, UnicodeEncodeError):  # deep nesting; a str with lone surrogates
        raise CommandError("not valid JSON: nested too deeply or not valid UTF-8") from None


def encode_command(cmd: ConsoleCommand) -> bytes:
    return _encoder.encode(cmd)


def encode_event(event: dict[str, Any]) -> bytes:
    """One relay -> console event as JSON; stamped with `ts` (unix seconds) if it has none."""
    if "ts" not in event:
        event = {**event, "ts": round(time.time(), 3)}
    return _encoder.encode(event)
