"""Twilio REST for the console, through the twilio SDK on an httpx transport.

httpx (rather than the SDK's aiohttp client) so tests mock Twilio with respx. Every failure
becomes a `TwilioError` whose message is fit for the page ("21211: that is not a valid
phone number"), never a stack trace. Credentials stay in this process.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from console.settings import ConsoleSettings
from shared.twilio_http import HttpxTwilioClient, readable

API_BASE = "https://api.twilio.com/2010-04-01"
RECORDING_SID = re.compile(r"^RE[0-9a-fA-F]{32}$")
CALL_SID = re.compile(r"^CA[0-9a-fA-F]{32}$")
_log = logging.getLogger("console.twilio")


class TwilioError(Exception):
    """A Twilio failure with a message for humans."""


@dataclass(frozen=True)
class PhoneNumber:
    sid: str
    phone_number: str
    friendly_name: str
    voice_url: str


@dataclass(frozen=True)
class PlacedCall:
    sid: str
    status: str


@dataclass(frozen=True)
class Recording:
    sid: str
    call_sid: str
    status: str
    duration: str
    channels: int
    date_created: str


RecordingStatus = Literal["in-progress", "paused", "stopped"]


def _recording(r: Any) -> Recording:
    return Recording(
        sid=str(r.sid),
        call_sid=str(r.call_sid or ""),
        status=str(r.status or ""),
        duration=str(r.duration if r.duration is not None else ""),
        channels=int(r.channels or 1),
        date_created=r.date_created.isoformat() if r.date_created else "",
    )


class TwilioService:
    def __init__(self, settings: ConsoleSettings, http: httpx.AsyncClient) -> None:
        if not settings.twilio_configured:
            raise TwilioError(
                "Twilio is not configured: set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"
            )
        self._settings = settings
        self._http = http
        self._sid = settings.twilio_account_sid
        self.client = Client(
            self._sid, settings.twilio_auth_token.get(), http_client=HttpxTwilioClient(client=http)
        )

    async def _run(self, what: str, coro: Any) -> Any:
        try:
            return await coro
        except TwilioRestException as exc:
            raise TwilioError(readable(exc)) from None
        except httpx.HTTPError as exc:
            raise TwilioError(f"cannot reach Twilio to {what}: {exc.__class__.__name__}") from None

    async def account_name(self) -> str:
        """A real API call: proves the credentials work."""
        acct = await self._run(
            "check the account", self.client.api.v2010.accounts(self._sid).fetch_async()
        )
        return f"{acct.friendly_name} ({acct.status})"

    async def list_numbers(self) -> list[PhoneNumber]:
        rows = await self._run(
            "list numbers", self.client.incoming_phone_numbers.list_async(limit=50)
        )
        return [
            PhoneNumber(
                sid=str(n.sid),
                phone_number=str(n.phone_number),
                friendly_name=str(n.friendly_name or n.phone_number),
                voice_url=str(n.voice_url or ""),
            )
            for n in rows
        ]

    async def set_voice_url(self, number_sid: str, url: str) -> PhoneNumber:
        n = await self._run(
            "update the webhook",
            self.client.incoming_phone_numbers(number_sid).update_async(
                voice_url=url, voice_method="POST"
            ),
        )
        return PhoneNumber(str(n.sid), str(n.phone_number), str(n.friendly_name), str(n.voice_url))

    async def place_call(self, to: str, from_: str, record: bool = False) -> PlacedCall:
        url = self._settings.twiml_url
        if not url:
            raise TwilioError(
                "set PUBLIC_URL (or TWILIO_TWIML_URL) so Twilio can fetch the relay's /twiml"
            )
        extra: dict[str, Any] = {"record": True, "recording_channels": "dual"} if record else {}
        call = await self._run(
            "place the call",
            self.client.calls.create_async(to=to, from_=from_, url=url, method="POST", **extra),
        )
        return PlacedCall(sid=str(call.sid), status=str(call.status))

    async def hang_up(self, call_sid: str) -> None:
        await self._run("hang up", self.client.calls(call_sid).update_async(status="completed"))

    async def start_recording(self, call_sid: str) -> Recording:
        rec = await self._run(
            "start recording",
            self.client.calls(call_sid).recordings.create_async(
                recording_channels="dual", trim="do-not-trim"
            ),
        )
        return _recording(rec)

    async def set_recording_status(
        self, call_sid: str, recording_sid: str, status: RecordingStatus
    ) -> Recording:
        kwargs: dict[str, Any] = {"status": status}
        if status == "paused":
            kwargs["pause_behavior"] = "skip"
        rec = await self._run(
            f"set the recording to {status}",
            self.client.calls(call_sid).recordings(recording_sid).update_async(**kwargs),
        )
        return _recording(rec)

    async def list_recordings(self, call_sid: str) -> list[Recording]:
        rows = await self._run(
            "list recordings", self.client.calls(call_sid).recordings.list_async(limit=50)
        )
        return [_recording(r) for r in rows]

    async def recording_media(self, recording_sid: str) -> bytes:
        """The recording as MP3, fetched here with the account's credentials."""
        if not RECORDING_SID.match(recording_sid):
            raise TwilioError(f"{recording_sid!r} is not a recording SID")
        url = f"{API_BASE}/Accounts/{self._sid}/Recordings/{recording_sid}.mp3"
        try:
            resp = await self._http.get(
                url,
                auth=(self._sid, self._settings.twilio_auth_token.get()),
                follow_redirects=True,
                timeout=60.0,
            )
        except httpx.HTTPError as exc:
            raise TwilioError(f"cannot fetch the recording: {exc.__class__.__name__}") from None
        if resp.status_code != 200:
            raise TwilioError(f"cannot fetch the recording: HTTP {resp.status_code}")
        return resp.content


@asynccontextmanager
async def twilio(settings: ConsoleSettings) -> AsyncIterator[TwilioService]:
    """One short-lived client per action: no loop-bound state kept across Reflex events."""
    async with httpx.AsyncClient() as http:
        yield TwilioService(settings, http)
