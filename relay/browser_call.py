"""Browser calls: the console's softphone, streamed to `/browser-call` by the console backend.

The stream speaks Twilio's Media Streams protocol and runs through the same MediaStream and
call core as a phone call; only its start differs: the console token instead of a Twilio
signature and a stream token, a CallSid the console made, and a choice of audio: mu-law
8 kHz (the phone's, the default) or PCM16 24 kHz (the Realtime API's own, for a wideband
test). There is no Twilio call behind it, so hanging up is closing the stream.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from shared import session as sess
from shared import twilio as tw

from .actions import EndReason, Hangup
from .runner import CallRunner

log = logging.getLogger("relay.runner")

# What the console generates: "BR" and 128 random bits, never a Twilio CallSid ("CA...").
BROWSER_CALL_SID = re.compile(r"^BR[0-9a-f]{32}\Z")
E164 = re.compile(r"^\+[1-9][0-9]{6,14}\Z")
PCM24: dict[str, Any] = {"type": "audio/pcm", "rate": sess.PCM_RATE}
# customParameters.audio -> the stream's format in both directions.
AUDIO = {"pcmu": "audio/pcmu", "pcm24": "audio/pcm"}
FROM = "browser"


@dataclass(frozen=True)
class BrowserStart:
    audio_format: str
    to: str


def check_start(info: tw.StartInfo) -> BrowserStart | str:
    """The start of a browser stream, or why it is refused (a close reason)."""
    if not BROWSER_CALL_SID.match(info.callSid):
        return "a browser CallSid is BR followed by 32 hex digits"
    params = info.customParameters
    audio = AUDIO.get(params.get("audio") or "pcmu")
    if audio is None:
        return f"audio must be one of {', '.join(AUDIO)}"
    to = params.get("to", "")
    return BrowserStart(audio, to if E164.match(to) else "")


def session_for(session: dict[str, Any], audio_format: str) -> dict[str, Any]:
    """The call's session with the stream's format on both sides (mu-law is the default's)."""
    if audio_format != "audio/pcm":
        return session
    return sess.merge(session, {"audio": {"input": {"format": PCM24}, "output": {"format": PCM24}}})


class BrowserCallRunner(CallRunner):
    """A browser call's runner: no Twilio REST (no call to hang up, redirect or apologise
    on), so ending the call closes the stream; the console shows the reason."""

    async def _hang_up(self, action: Hangup) -> None:
        log.info("call %s: hanging up (%s)", self.bridge.call_sid, action.detail)
        if action.reason is EndReason.RELAY_SHUTDOWN:
            code = 1001
        else:
            code = 1011 if action.apology else 1000
        await self.close_twilio(code, action.detail)
