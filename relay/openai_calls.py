"""The Realtime API's REST calls for SIP: accept, reject, hang up and refer (transfer) a call.

`POST {OPENAI_API_BASE}/realtime/calls/{call_id}/accept|reject|hangup|refer`, with the key
as a bearer token. Every body matches the `openai` package's types (call_accept_params,
call_reject_params, call_refer_params): tests/test_sip.py validates them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

from shared.secret import Secret

log = logging.getLogger("relay.sip")

BUSY = 486  # SIP "Busy Here": at RELAY_MAX_CALLS, or draining
TIMEOUT = aiohttp.ClientTimeout(total=10.0)


class CallApiError(Exception):
    """A call request failed; the message says why (no secrets). `status` 0: no answer."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class RealtimeCalls:
    http: aiohttp.ClientSession
    api_base: str
    api_key: Secret

    async def accept(self, call_id: str, session: dict[str, Any]) -> None:
        await self._post(call_id, "accept", accept_body(session))

    async def reject(self, call_id: str, status_code: int = BUSY) -> None:
        await self._post(call_id, "reject", {"status_code": status_code})

    async def hangup(self, call_id: str) -> None:
        await self._post(call_id, "hangup", None)

    async def refer(self, call_id: str, number: str) -> None:
        target = number if number.startswith(("tel:", "sip:")) else f"tel:{number}"
        await self._post(call_id, "refer", {"target_uri": target})

    async def _post(self, call_id: str, verb: str, body: dict[str, Any] | None) -> None:
        url = f"{self.api_base}/realtime/calls/{quote(call_id, safe='')}/{verb}"
        headers = {"Authorization": f"Bearer {self.api_key.get() or 'simulator'}"}
        try:
            async with self.http.post(url, json=body, headers=headers, timeout=TIMEOUT) as resp:
                if resp.status >= 300:
                    detail = (await resp.text())[:300]
                    raise CallApiError(
                        f"OpenAI answered {verb} with HTTP {resp.status}: {detail}", resp.status
                    )
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = type(exc).__name__
            raise CallApiError(f"OpenAI could not be reached to {verb}: {reason}") from None


def accept_body(session: dict[str, Any]) -> dict[str, Any]:
    """The accept request for a call: the call's GA session config, minus the audio formats
    (SIP negotiates the codec with the caller's carrier; the relay never sees the audio)."""
    body = {k: v for k, v in session.items() if k != "audio"}
    audio: dict[str, Any] = {}
    for side in ("input", "output"):
        config = session.get("audio", {}).get(side)
        if isinstance(config, dict):
            rest = {k: v for k, v in config.items() if k != "format"}
            if rest:
                audio[side] = rest
    if audio:
        body["audio"] = audio
    body["type"] = "realtime"
    return body
