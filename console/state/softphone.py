"""The softphone's state: the audio choice, and a ticket for each call placed from the page.

The audio itself never passes through Reflex: the page streams to the console backend's
own socket (console/softphone.py) with the one-time ticket `talk` hands it. A call can be
placed as one of the numbers that have a profile, to talk to that profile's agent."""

from __future__ import annotations

import json
import time
from urllib.parse import quote

import reflex as rx
from reflex_base.event import EventSpec

from console import settings as console_settings
from console import softphone
from console.history import HistoryError, history
from console.phone import E164
from console.state.auth import AuthState
from console.state.feed import FeedState

DEFAULT = "default"  # call as no number in particular: the relay's default profile


class SoftphoneState(AuthState):
    audio: str = "pcmu"
    call_as: str = DEFAULT  # or a number that has a profile (the call's `To`)
    numbers: list[dict[str, str]] = []  # number, label: the numbers profiles answer

    @rx.event
    def set_audio(self, value: str) -> None:
        if self.authed() and value in softphone.AUDIO:
            self.audio = value

    @rx.event
    def set_call_as(self, value: str) -> None:
        if self.authed() and (value == DEFAULT or any(n["number"] == value for n in self.numbers)):
            self.call_as = value

    @rx.event(background=True)
    async def load_numbers(self) -> None:
        """The numbers with a profile, to call as one of them; none if the store is away
        (the Talk panel then just calls with the defaults). In the background: a relay slow
        to answer must not hold up the page's other events."""
        async with self:
            if not self.authed():
                return
        numbers: list[dict[str, str]] = []
        try:
            async with history(console_settings.get()) as relay:
                book = await relay.profiles()
        except HistoryError:
            pass
        else:
            numbers = [
                {"number": number, "label": f"{number} ({name})"}
                for number, name in sorted(book.numbers.items())
                if E164.fullmatch(number)  # what a ticket can carry
            ]
        async with self:
            self.numbers = numbers
            if not any(n["number"] == self.call_as for n in numbers):
                self.call_as = DEFAULT

    @rx.event
    async def talk(self) -> EventSpec | None:
        if not self.authed():
            return rx.redirect("/login")
        to = "" if self.call_as == DEFAULT else self.call_as
        ticket, text = softphone.issue_ticket(
            console_settings.get().password, self.audio, time.time(), to
        )
        # Show this call's transcript as soon as the relay reports it.
        feed = await self.get_state(FeedState)
        feed.softphone_sid = ticket.call_sid
        start = {
            "path": f"{softphone.PATH}?ticket={quote(text, safe='')}",
            "callSid": ticket.call_sid,
            "audio": ticket.audio,
        }
        return rx.call_script(f"window.phoneRelaySoftphone.start({json.dumps(start)})")
