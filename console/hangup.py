"""Hanging up: through Twilio REST for real calls, else the relay's `call.end` command.

Twilio ending the call is the sure way (the relay only closes the media stream, and what
Twilio does next depends on the TwiML); simulated calls, browser calls (the softphone), or a
console without Twilio credentials, only have the relay. If Twilio refuses, the relay is
asked as a fallback.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from console.settings import ConsoleSettings
from console.twilio_service import TwilioError, twilio

SendCommand = Callable[[dict[str, Any]], Awaitable[str]]  # returns "" or why not sent


@dataclass(frozen=True)
class HangUpResult:
    message: str
    error: bool
    via: str  # "twilio" | "relay"


def through_twilio(settings: ConsoleSettings, simulator: bool) -> bool:
    return settings.twilio_configured and not simulator


async def hang_up(
    call_sid: str,
    settings: ConsoleSettings,
    simulator: bool,
    send: SendCommand,
    *,
    browser: bool = False,
) -> HangUpResult:
    twilio_error = ""
    if through_twilio(settings, simulator) and not browser:
        try:
            async with twilio(settings) as tw:
                await tw.hang_up(call_sid)
            return HangUpResult("Hung up: Twilio ended the call.", False, "twilio")
        except TwilioError as exc:
            twilio_error = f"Twilio could not hang up ({exc}); "
    why = await send({"type": "call.end", "call_sid": call_sid})
    if why:
        return HangUpResult(f"{twilio_error}{why}", True, "relay")
    if twilio_error:
        return HangUpResult(f"{twilio_error}asked the relay to end the call", True, "relay")
    return HangUpResult("Hanging up…", False, "relay")
