"""What the call core asks its pumps to do. Plain data; the pumps do the I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union


@dataclass(slots=True)
class ToTwilio:
    data: str  # an encoded Media Streams frame (ASGI sends text frames as str)


@dataclass(slots=True)
class ToModel:
    data: bytes  # an encoded Realtime client event


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
    reason: str
    transfer_to: str = ""  # non-empty: redirect the call here instead of hanging up


@dataclass(slots=True)
class SwitchModel:
    """Open a fresh model session (new model, rollover, or reconnect) and hand over."""

    model: str
    reason: str


Action = Union[ToTwilio, ToModel, ToConsole, RunTool, Hangup, SwitchModel]
