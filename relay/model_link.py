"""The upstream socket to the Realtime API: connect, and pre-warm while the phone rings."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp

from shared import realtime as rt
from shared.secret import Secret

from . import metrics
from .upstream import http_is_final, refusal_hint

log = logging.getLogger("relay.model")


class ModelConnectError(Exception):
    """The model refused or could not be reached; the message says why (no secrets).

    `final`: a refusal that asking again cannot fix (a bad key, an unknown model)."""

    def __init__(self, message: str, *, status: int = 0, final: bool = False) -> None:
        super().__init__(message)
        self.status, self.final = status, final


@dataclass
class ModelConnector:
    http: aiohttp.ClientSession
    url: str
    api_key: Secret
    connect_timeout_s: float = 10.0

    async def connect(self, model: str) -> aiohttp.ClientWebSocketResponse:
        """A new Realtime session for `model`."""
        return await self._connect(f"{self.url}?model={quote(model)}")

    async def join_call(self, call_id: str) -> aiohttp.ClientWebSocketResponse:
        """The control socket of an accepted SIP call (its session lives with the call)."""
        try:
            return await self._connect(f"{self.url}?call_id={quote(call_id, safe='')}")
        except ModelConnectError as exc:
            if exc.status == 404:  # the call is over (or was never accepted)
                raise ModelConnectError(
                    "the call is no longer there (HTTP 404 on the upgrade)", status=404, final=True
                ) from None
            raise

    async def _connect(self, url: str) -> aiohttp.ClientWebSocketResponse:
        # GA: Authorization only; never the OpenAI-Beta header.
        headers = {"Authorization": f"Bearer {self.api_key.get() or 'simulator'}"}
        try:
            return await self.http.ws_connect(
                url,
                headers=headers,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0),
                max_msg_size=32 * 1024 * 1024,
                autoping=True,
                compress=0,  # base64 audio barely compresses; deflate would cost CPU per frame
            )
        except aiohttp.WSServerHandshakeError as exc:
            status = exc.status
            if http_is_final(status):
                message = f"{refusal_hint(status)} (HTTP {status} on the upgrade)"
                raise ModelConnectError(message, status=status, final=True) from None
            raise ModelConnectError(
                f"model refused the connection: HTTP {status}", status=status
            ) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise ModelConnectError(f"cannot reach the model: {type(exc).__name__}") from None


@dataclass
class Prewarmed:
    ws: aiohttp.ClientWebSocketResponse
    model: str
    session: dict[str, Any]
    opened_at: float


@dataclass
class PrewarmPool:
    """Model sessions opened on the /twiml webhook, waiting for their /call by CallSid."""

    connector: ModelConnector
    timeout_s: float = 30.0
    max_in_flight: int = 50  # pre-warmed sessions cost money: bound them (forged /twiml)
    _tasks: dict[str, asyncio.Task[Prewarmed | None]] = field(default_factory=dict)
    _reapers: dict[str, asyncio.TimerHandle] = field(default_factory=dict)

    def start(self, call_sid: str, model: str, session: dict[str, Any]) -> bool:
        """Open a session for this call in the background; False if over the bound."""
        if call_sid in self._tasks:
            return True
        if len(self._tasks) >= self.max_in_flight:
            metrics.prewarm("capped")
            log.warning(
                "call %s: not pre-warming: %d sessions already waiting (RELAY_PREWARM_MAX)",
                call_sid,
                len(self._tasks),
            )
            return False
        task = asyncio.get_running_loop().create_task(self._open(model, session))
        self._tasks[call_sid] = task
        self._reapers[call_sid] = asyncio.get_running_loop().call_later(
            self.timeout_s, self._reap, call_sid
        )
        return True

    async def _open(self, model: str, session: dict[str, Any]) -> Prewarmed | None:
        try:
            ws = await self.connector.connect(model)
            # Under a known event_id, so the call can tell a refusal of this config.
            update = rt.SessionUpdate(session=session, event_id=PREWARM_EVENT_ID)
            await ws.send_frame(rt.encode(update), aiohttp.WSMsgType.TEXT)
            return Prewarmed(ws, model, session, time.monotonic())
        except (ModelConnectError, aiohttp.ClientError, ConnectionError) as exc:
            log.warning("pre-warm failed: %s", exc)
            return None

    async def take(self, call_sid: str, model: str, session: dict[str, Any]) -> Prewarmed | None:
        """The pre-warmed session for this call if it matches the call's config."""
        task = self._tasks.pop(call_sid, None)
        reaper = self._reapers.pop(call_sid, None)
        if reaper is not None:
            reaper.cancel()
        if task is None:
            metrics.prewarm("miss")
            return None
        try:
            warm = await task
        except asyncio.CancelledError:
            return None
        if warm is None:
            metrics.prewarm("failed")
            return None
        if warm.ws.closed or warm.model != model or warm.session != session:
            metrics.prewarm("stale")
            await warm.ws.close()
            return None
        metrics.prewarm("hit")
        return warm

    def _reap(self, call_sid: str) -> None:
        """Nobody picked it up (caller hung up while ringing): close it."""
        self._reapers.pop(call_sid, None)
        task = self._tasks.pop(call_sid, None)
        if task is None:
            return
        log.info("call %s: closing unused pre-warmed model session", call_sid)
        metrics.prewarm("expired")
        task.add_done_callback(_close_result)
        task.cancel()

    async def close(self) -> None:
        for sid in list(self._tasks):
            self._reap(sid)

    def __len__(self) -> int:
        return len(self._tasks)


_closing: set[asyncio.Task[None]] = set()  # references, so closes are not collected mid-way

PREWARM_EVENT_ID = "relay_prewarm"


def _close_result(task: asyncio.Task[Prewarmed | None]) -> None:
    if task.cancelled() or task.exception() is not None:
        return
    warm = task.result()
    if warm is not None:
        close = asyncio.get_running_loop().create_task(_close(warm.ws))
        _closing.add(close)
        close.add_done_callback(_closing.discard)


async def _close(ws: aiohttp.ClientWebSocketResponse) -> None:
    await ws.close()
