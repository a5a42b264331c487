"""The setup checklist, outbound calls and recordings: the Twilio side of the console."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, replace

import httpx
import reflex as rx

from console import media
from console import settings as console_settings
from console.checklist import FeedStatus, Step, live_update, ready, run_checklist
from console.history import HistoryError, history
from console.outbound import caller_id_options, check_call, initial_caller_id, twilio_unavailable
from console.phone import PhoneNumberError
from console.recording import RECORDER, CallRecording
from console.state.auth import AuthState
from console.twilio_service import RecordingStatus, TwilioError, TwilioService, twilio

_log = logging.getLogger("console.recording")


class ChecklistState(AuthState):
    steps: list[dict[str, str]] = []
    numbers: list[dict[str, str]] = []
    chosen_sid: str = ""
    checking: bool = False
    ready: bool = False
    pending: bool = False  # a step is still being found out (e.g. the feed connecting)
    message: str = ""

    @rx.var
    def number_labels(self) -> list[str]:
        return [n["label"] for n in self.numbers]

    @rx.var
    def chosen_label(self) -> str:
        return next((n["label"] for n in self.numbers if n["sid"] == self.chosen_sid), "")

    @rx.event
    async def check(self) -> AsyncIterator[None]:
        if not self.authed():
            return
        self.checking = True
        yield
        await self._run_check()

    async def _run_check(self) -> None:
        from console.state.feed import FeedState

        settings = console_settings.get()
        feed = await self.get_state(FeedState)
        async with httpx.AsyncClient() as http:
            tw = TwilioService(settings, http) if settings.twilio_configured else None
            result = await run_checklist(
                settings,
                http,
                twilio=tw,
                chosen_number_sid=self.chosen_sid,
                feed=feed.feed_status(),
            )
        self._show(result.steps)
        self.numbers = [
            {
                "sid": n.sid,
                "number": n.phone_number,
                "label": f"{n.phone_number} ({n.friendly_name})",
            }
            for n in result.numbers
        ]
        self.chosen_sid = result.chosen.sid if result.chosen else ""
        self.checking = False
        phone = await self.get_state(PhoneState)
        phone.set_account_numbers([n.phone_number for n in result.numbers])

    def _show(self, steps: list[Step]) -> None:
        self.steps = [asdict(s) for s in steps]
        self.ready = ready(steps)
        self.pending = any(s.status == "pending" for s in steps)

    def live(
        self,
        feed: FeedStatus,
        *,
        version: str,
        live_calls: int,
        simulator: bool,
        model: dict[str, str] | None = None,
    ) -> None:
        """Keep the relay, model and feed steps true to what the feed sees right now."""
        if self.steps:
            steps = [Step(**s) for s in self.steps]  # type: ignore[arg-type]
            relay_url = console_settings.get().relay_url
            self._show(
                live_update(
                    steps,
                    feed,
                    version=version,
                    relay_url=relay_url,
                    live_calls=live_calls,
                    simulator=simulator,
                    model=model,
                )
            )

    @rx.event
    async def choose(self, label: str) -> None:
        self.chosen_sid = next((n["sid"] for n in self.numbers if n["label"] == label), "")
        if self.authed():
            await self._run_check()

    @rx.event
    async def update_webhook(self) -> None:
        if not self.authed() or not self.chosen_sid:
            return
        settings = console_settings.get()
        try:
            async with twilio(settings) as tw:
                await tw.set_voice_url(self.chosen_sid, settings.webhook_url)
            self.message = f"Webhook set to {settings.webhook_url}"
        except TwilioError as exc:
            self.message = str(exc)
        if self.authed():
            await self._run_check()


async def note_recording(rec: CallRecording) -> None:
    """The call's history record keeps the recording (the player in its detail view)."""
    try:
        async with history(console_settings.get()) as relay:
            await relay.note_recording(rec.call_sid, rec.recording_sid)
    except HistoryError as exc:  # the recording itself goes on; only the record lacks it
        _log.warning("recording %s not noted in the call's history: %s", rec.recording_sid, exc)


class PhoneState(AuthState):
    to_number: str = ""
    caller_id: str = ""
    caller_ids: list[str] = []
    # Each control's outcome shows next to it: the Call button's, and the recording's.
    message: str = ""
    error: bool = False
    rec_message: str = ""
    rec_error: bool = False
    record_call: bool = False
    auto_record: str = ""  # what the page says about CONSOLE_RECORD_CALLS
    recordings: list[dict[str, str]] = []

    def _fail(self, text: str) -> None:
        self.message, self.error = text, True

    def _ok(self, text: str) -> None:
        self.message, self.error = text, False

    def _rec(self, text: str, error: bool) -> None:
        self.rec_message, self.rec_error = text, error

    async def _unavailable(self) -> str:
        """Why Twilio controls cannot work here (the page disables them; this is the check)."""
        from console.state.feed import FeedState

        simulator = (await self.get_state(FeedState)).simulator
        return twilio_unavailable(console_settings.get().twilio_configured, simulator)

    @rx.event
    def init(self) -> None:
        settings = console_settings.get()
        self.auto_record = (
            "Every Twilio call is recorded (CONSOLE_RECORD_CALLS), dual channel."
            if settings.record_calls
            else ""
        )
        if not self.caller_ids:  # the checklist fills in the account's numbers
            self.set_account_numbers([])

    def set_account_numbers(self, numbers: list[str]) -> None:
        """The caller-ID choices: TWILIO_OUTBOUND_NUMBER and the account's numbers."""
        default = console_settings.get().twilio_outbound_number
        self.caller_ids = caller_id_options(numbers, default)
        self.caller_id = initial_caller_id(self.caller_id, self.caller_ids, default)

    @rx.event
    def set_to_number(self, value: str) -> None:
        self.to_number = value

    @rx.event
    def set_caller_id(self, value: str) -> None:
        self.caller_id = value

    @rx.event
    def set_record_call(self, value: bool) -> None:
        self.record_call = value

    @rx.event
    async def place_call(self) -> None:
        if not self.authed():
            return
        if why := await self._unavailable():
            self._fail(why)
            return
        try:
            call = check_call(self.to_number, self.caller_id, self.caller_ids)
        except PhoneNumberError as exc:
            self._fail(str(exc))
            return
        try:
            async with twilio(console_settings.get()) as tw:
                placed = await tw.place_call(call.to, call.from_)
        except TwilioError as exc:
            self._fail(str(exc))
            return
        if self.record_call:
            RECORDER.want(placed.sid)  # recorded (dual channel) once the relay has the call
        self._ok(f"Calling {call.to} from {call.from_}: {placed.sid} ({placed.status})")

    async def _publish(self, rec: CallRecording) -> None:
        from console.state.feed import FeedState, broadcast, recording_event

        known = RECORDER.get(rec.call_sid)
        RECORDER.put(rec)
        broadcast(recording_event(rec))
        (await self.get_state(FeedState))._refresh()
        if rec.recording_sid and (known is None or known.recording_sid != rec.recording_sid):
            await note_recording(rec)

    async def _recording_call(self) -> str:
        """The selected call, or "" after saying why recording cannot be used now."""
        if not self.authed():
            return ""
        if why := await self._unavailable():
            self._rec(why, True)
            return ""
        from console.state.feed import FeedState

        feed = await self.get_state(FeedState)
        if not feed.selected:
            self._rec("Select a call first.", True)
        elif feed.recording_note:
            self._rec(feed.recording_note, True)
            return ""
        return feed.selected

    @rx.event
    async def start_recording(self) -> None:
        call_sid = await self._recording_call()
        if not call_sid:
            return
        current = RECORDER.get(call_sid)
        if current and current.status in ("starting", "in-progress", "paused"):
            self._rec(
                f"This call is already being recorded ({current.recording_sid or 'starting'}).",
                True,
            )
            return
        try:
            async with twilio(console_settings.get()) as tw:
                rec = await tw.start_recording(call_sid)
        except TwilioError as exc:
            self._rec(str(exc), True)
            return
        await self._publish(CallRecording(call_sid, rec.sid, rec.status))
        self._rec(f"Recording {rec.sid}", False)

    @rx.event
    async def set_recording(self, status: str) -> None:
        call_sid = await self._recording_call()
        if not call_sid:
            return
        current = RECORDER.get(call_sid)
        if current is None or not current.recording_sid:
            self._rec("No recording of this call to change: start one first.", True)
            return
        if status not in ("in-progress", "paused", "stopped"):
            return
        wanted: RecordingStatus = status  # type: ignore[assignment]
        try:
            async with twilio(console_settings.get()) as tw:
                rec = await tw.set_recording_status(call_sid, current.recording_sid, wanted)
        except TwilioError as exc:
            self._rec(str(exc), True)
            return
        await self._publish(replace(current, status=rec.status, error=""))
        self._rec(f"Recording {rec.sid} {rec.status}", False)

    @rx.event
    async def list_recordings(self) -> None:
        call_sid = await self._recording_call()
        if not call_sid:
            return
        try:
            async with twilio(console_settings.get()) as tw:
                recs = await tw.list_recordings(call_sid)
        except TwilioError as exc:
            self._rec(str(exc), True)
            return
        password = console_settings.get().password
        self.recordings = [
            {
                "sid": r.sid,
                "status": r.status,
                "duration": r.duration,
                "created": r.date_created,
                "path": media.signed_path(password, r.sid, time.time()),
            }
            for r in recs
        ]
        self._rec(f"{len(recs)} recording(s)", False)
