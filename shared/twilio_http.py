"""Twilio REST plumbing both services use: an httpx transport and readable errors.

The SDK's own async client uses aiohttp; with httpx underneath, tests mock Twilio's
REST API with respx, and one pooled client serves every request. Twilio's error codes
become sentences a person can act on ("21211: that is not a valid phone number").
"""

from __future__ import annotations

import logging

import httpx
from twilio.base.exceptions import TwilioRestException
from twilio.http import AsyncHttpClient
from twilio.http.response import Response

_log = logging.getLogger("twilio.http")

# The codes people actually hit, said plainly; others fall back to Twilio's own message.
FRIENDLY: dict[int, str] = {
    20003: "Twilio refused the credentials: check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN",
    20404: "not found on this Twilio account (wrong SID, or it belongs to another account)",
    20429: "too many requests to Twilio; wait a moment and retry",
    21201: "no 'To' number was given",
    21210: "the caller ID is not a number of this account or a verified caller ID",
    21211: "that is not a valid phone number",
    21212: "the caller ID is not a valid phone number",
    21213: "a caller ID ('From') is required",
    21214: "that number cannot be reached",
    21215: "calls to that country are not enabled (Twilio console > Voice > Geo permissions)",
    21216: "that number is blocked by Twilio",
    21217: "that phone number is not valid",
    21219: "trial accounts can only call verified numbers: verify it in the Twilio console",
    21220: "the call is not in progress (it ended or has not been answered yet)",
    21205: "the TwiML URL is not a valid public URL: check PUBLIC_URL or TWILIO_TWIML_URL",
    21402: "the webhook URL is not valid: check PUBLIC_URL",
    21502: "the webhook URL is not valid: check PUBLIC_URL",
}


def readable(exc: TwilioRestException) -> str:
    code = exc.code if isinstance(exc.code, int) else None
    text = FRIENDLY.get(code) if code is not None else None
    if text is None:
        raw = str(exc.msg or "").strip().splitlines()
        text = raw[0] if raw else f"HTTP {exc.status}"
        text = text.removeprefix("Unable to create record: ").removeprefix(
            "Unable to update record: "
        )
    return f"{code}: {text}" if code is not None else text


class HttpxTwilioClient(AsyncHttpClient):  # type: ignore[misc]  # the SDK is untyped
    """The twilio SDK's async transport on httpx; borrows `client` or owns one."""

    def __init__(self, client: httpx.AsyncClient | None = None, timeout: float = 10.0) -> None:
        super().__init__(logger=_log, is_async=True, timeout=timeout)
        self._owned = client is None
        self._client = client if client is not None else httpx.AsyncClient(timeout=timeout)

    async def request(
        self,
        method: str,
        uri: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        resp = await self._client.request(
            method.upper(),
            uri,
            params=params,  # type: ignore[arg-type]
            data=data,  # type: ignore[arg-type]
            headers=headers,
            auth=auth,
            timeout=timeout if timeout is not None else self.timeout,
            follow_redirects=allow_redirects,
        )
        return Response(resp.status_code, resp.text, dict(resp.headers))

    async def close(self) -> None:
        if self._owned:
            await self._client.aclose()
