"""An httpx-backed HTTP client for the twilio SDK's async API.

The SDK's own async client uses aiohttp; with httpx underneath, tests mock Twilio's
REST API with respx, and one pooled client serves every request.
"""

from __future__ import annotations

import logging

import httpx
from twilio.http import AsyncHttpClient
from twilio.http.response import Response

_log = logging.getLogger("twilio.http")


class HttpxTwilioClient(AsyncHttpClient):  # type: ignore[misc]
    def __init__(self, timeout: float = 10.0) -> None:
        super().__init__(logger=_log, is_async=True, timeout=timeout)
        self._client = httpx.AsyncClient(timeout=timeout)

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
        await self._client.aclose()
