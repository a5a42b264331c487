"""What the call core asks its pumps to do. Plain data; the pumps do the I/O and the sleeping."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Union


class EndReason(StrEnum):
    """Why a call ended: one word for the console, the summary, the logs and the metrics."""

    CALLER_HUNG_UP = "caller_hung_up"
    AGENT_ENDED = "agent_ended"
    TRANSFERRED = "transferred"
    CONSOLE_ENDED = "console_ended"
    MODEL_UNAVAILABLE = "model_unavailable"
    RELAY_SHUTDOWN = "relay_shutdown"
    ERROR = "error"


@dataclass(slots=True)
class ToTwilio:
    data: str  # an encoded Media Streams frame (text frames are str)


@dataclass(slots=True)
class ToModel:
    data: bytes  # an encoded Realtime client event, for the current model socket


@dataclass(slots=True)
class ToConsole:
    event: dict[str, Any] | bytes  # bytes: already-encoded JSON


@dataclass(slots=True)
class RunTool:
    call_id: str
    name: str
    arguments: str


@dataclass(slots=True)
class Hangup:
    """End the call: hang up, transfer, or say the apology first; then close the stream."""

    reason: EndReason
    detail: str  # plain words for the log and the console
    transfer_to: str = ""  # non-empty: redirect the call here instead of hanging up
    apology: bool = False  # say RELAY_APOLOGY before hanging up (needs Twilio REST)


@dataclass(slots=True)
class Connect:
    """Open model socket `gen` after `delay_s` (a reconnect's backoff, or 0).

    `prewarmed`: take the session pre-warmed on the webhook if there is one.
    `spare`: open it beside the current socket, to hand over to later (rollover, switch).
    The pump reports back with `on_model_open` or `on_connect_failed`.
    """

    gen: int
    model: str
    delay_s: float = 0.0
    prewarmed: bool = False
    spare: bool = False


@dataclass(slots=True)
class Handover:
    """Make the spare socket `gen` the current one and close the old one."""

    gen: int


@dataclass(slots=True)
class CloseModel:
    """Close model socket `gen` (a spare nobody wants any more)."""

    gen: int


Action = Union[ToTwilio, ToModel, ToConsole, RunTool, Hangup, Connect, Handover, CloseModel]
