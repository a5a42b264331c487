"""Call recordings the console started, per CallSid, shared by every browser session.

`CONSOLE_RECORD_CALLS=true` records every call (inbound and outbound) as the relay reports
it. Each open browser has its own relay feed and so sees every `call.started`; the
`Recorder` makes sure only the first one starts a recording (claims are synchronous, so
on the backend's single event loop there is no race). Plain data plus one Twilio helper.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from console.settings import ConsoleSettings
from console.twilio_service import CALL_SID, TwilioError, TwilioService

ACTIVE = ("in-progress", "paused")
MAX_CALLS = 2000  # forget the oldest calls beyond this (a console left running for weeks)


@dataclass(frozen=True)
class CallRecording:
    call_sid: str
    recording_sid: str = ""
    status: str = ""  # Twilio's: in-progress, paused, stopped, completed... or "starting"
    error: str = ""
    auto: bool = False

    def describe(self, call_live: bool = True) -> str:
        """One line for the call view (Twilio ends a running recording with the call)."""
        how = " (automatic)" if self.auto else ""
        if self.error:
            return f"recording failed{how}: {self.error}"
        if self.status == "starting":
            return f"recording starting{how}…"
        status = self.status if call_live or self.status not in ACTIVE else "ended with the call"
        return f"recording {self.recording_sid} {status}{how}, dual channel"


class Recorder:
    """Which calls are (being) recorded, process-wide."""

    def __init__(self, limit: int = MAX_CALLS) -> None:
        self._limit = limit
        self._calls: dict[str, CallRecording] = {}
        self._wanted: set[str] = set()

    def claim(self, call_sid: str, auto: bool = True) -> bool:
        """True for the first caller only: that one starts the recording."""
        if not call_sid or call_sid in self._calls:
            return False
        self.put(CallRecording(call_sid, status="starting", auto=auto))
        return True

    def want(self, call_sid: str) -> None:
        """Record this call when it starts even if automatic recording is off."""
        self._wanted.add(call_sid)

    def wanted(self, call_sid: str) -> bool:
        return call_sid in self._wanted

    def get(self, call_sid: str) -> CallRecording | None:
        return self._calls.get(call_sid)

    def put(self, rec: CallRecording) -> None:
        self._calls.pop(rec.call_sid, None)
        self._calls[rec.call_sid] = rec
        while len(self._calls) > self._limit:
            oldest = next(iter(self._calls))
            del self._calls[oldest]
            self._wanted.discard(oldest)


def not_recordable(direction: str) -> str:
    """Why a call of this direction cannot be recorded from here ("" when it can): only a
    call Twilio carries to the relay has a Twilio call to record."""
    if direction == "browser":
        return "A browser call does not go through Twilio: there is nothing to record."
    if direction == "sip":
        return (
            "A SIP call is recorded on its Elastic SIP Trunk (Twilio console, the trunk's "
            "Recording setting), not from here."
        )
    return ""


def auto_record_blocker(settings: ConsoleSettings, simulator: bool) -> str:
    """Why calls are not recorded automatically ("" when they are)."""
    if not settings.record_calls:
        return "CONSOLE_RECORD_CALLS is off"
    if not settings.twilio_configured:
        return "Twilio is not configured"
    if simulator:
        return "the relay runs in simulator mode: its calls are not on Twilio"
    return ""


def should_record(recorder: Recorder, settings: ConsoleSettings, simulator: bool, sid: str) -> bool:
    """Whether this browser's feed should start a recording for `sid` (and claims it)."""
    if not CALL_SID.match(sid) or recorder.get(sid) is not None:
        return False
    wanted = recorder.wanted(sid)
    if not wanted and auto_record_blocker(settings, simulator):
        return False
    if wanted and (simulator or not settings.twilio_configured):
        return False
    return recorder.claim(sid, auto=not wanted)


async def start(
    recorder: Recorder, tw: TwilioService, call_sid: str, *, check_existing: bool = False
) -> CallRecording:
    """Start a dual-channel recording of a claimed call; a Twilio error is kept, readable.

    `check_existing`: first look for a recording already running (a call that was live
    when this console started may have been recorded by a previous console process).
    """
    claimed = recorder.get(call_sid) or CallRecording(call_sid, status="starting")
    try:
        if check_existing:
            running = [r for r in await tw.list_recordings(call_sid) if r.status in ACTIVE]
            if running:
                rec = replace(claimed, recording_sid=running[0].sid, status=running[0].status)
                recorder.put(rec)
                return rec
        made = await tw.start_recording(call_sid)
        rec = replace(claimed, recording_sid=made.sid, status=made.status, error="")
    except TwilioError as exc:
        rec = replace(claimed, status="failed", error=str(exc))
    recorder.put(rec)
    return rec


RECORDER = Recorder()
