"""The softphone's state: the audio choice, and a ticket for each call placed from the page.

The audio itself never passes through Reflex: the page streams to the console backend's
own socket (console/softphone.py) with the one-time ticket `talk` hands it."""

from __future__ import annotations

import json
import time

import reflex as rx
from reflex_base.event import EventSpec

from console import settings as console_settings
from console import softphone
from console.state.auth import AuthState
from console.state.feed import FeedState


class SoftphoneState(AuthState):
    audio: str = "pcmu"

    @rx.event
    def set_audio(self, value: str) -> None:
        if self.authed() and value in softphone.AUDIO:
            self.audio = value

    @rx.event
    async def talk(self) -> EventSpec | None:
        if not self.authed():
            return rx.redirect("/login")
        ticket, text = softphone.issue_ticket(
            console_settings.get().password, self.audio, time.time()
        )
        # Show this call's transcript as soon as the relay reports it.
        feed = await self.get_state(FeedState)
        feed.softphone_sid = ticket.call_sid
        start = {
            "path": f"{softphone.PATH}?ticket={text}",
            "callSid": ticket.call_sid,
            "audio": ticket.audio,
        }
        return rx.call_script(f"window.phoneRelaySoftphone.start({json.dumps(start)})")
