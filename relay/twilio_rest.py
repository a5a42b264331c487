"""The few Twilio REST calls the relay makes itself: hang up, redirect (transfer, apology)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client
from twilio.twiml.voice_response import VoiceResponse

from shared.secret import Secret
from shared.twilio_http import HttpxTwilioClient, readable

log = logging.getLogger("relay.twilio")


@dataclass
class TwilioRest:
    account_sid: str
    auth_token: Secret
    api_base: str = ""  # tests and regional edges; empty: the SDK's default

    def __post_init__(self) -> None:
        self._http = HttpxTwilioClient(timeout=10.0)
        self._client = Client(self.account_sid, self.auth_token.get(), http_client=self._http)
        if self.api_base:
            self._client.api.base_url = self.api_base

    async def hang_up(self, call_sid: str) -> str | None:
        """End the call. Returns an error message, or None on success."""
        return await self._update(call_sid, status="completed")

    async def redirect(self, call_sid: str, twiml: str) -> str | None:
        return await self._update(call_sid, twiml=twiml)

    async def _update(self, call_sid: str, **kwargs: str) -> str | None:
        try:
            await self._client.calls(call_sid).update_async(**kwargs)
        except TwilioRestException as exc:
            message = f"Twilio: {readable(exc)}"
            log.warning("call %s: %s", call_sid, message)
            return message
        except Exception as exc:  # network trouble must not take the call down
            log.warning("call %s: Twilio REST failed: %s", call_sid, type(exc).__name__)
            return f"Twilio REST failed: {type(exc).__name__}"
        return None

    async def close(self) -> None:
        await self._http.close()


def dial_twiml(number: str) -> str:
    r = VoiceResponse()
    r.dial(number)
    return str(r)


def say_and_hangup_twiml(text: str) -> str:
    r = VoiceResponse()
    r.say(text)
    r.hangup()
    return str(r)
