"""The console's client socket to the relay's `/logs` feed (docs/console-protocol.md).

One per browser session, held by the console backend (the browser never talks to the
relay). It reconnects with capped exponential backoff and reports online/offline, so the
page can say "relay offline" while the relay restarts.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp

from shared.console_protocol import CommandError, decode_command, encode_command
from shared.secret import Secret

OnEvent = Callable[[dict[str, Any]], Awaitable[None]]
OnStatus = Callable[[bool, str], Awaitable[None]]


T = TypeVar("T")


class FeedOffline(RuntimeError):
    pass


def put_dropping_oldest(queue: asyncio.Queue[T], item: T) -> int:
    """Put `item` without ever raising: when the queue is full, the oldest items make room
    (the newest news wins: e.g. whether the relay is online now). Returns how many went."""
    dropped = 0
    while True:
        try:
            queue.put_nowait(item)
            return dropped
        except asyncio.QueueFull:
            try:
                queue.get_nowait()
                dropped += 1
            except asyncio.QueueEmpty:  # cannot happen (a full queue holds something)
                return dropped


def backoff_delays(lo: float = 0.5, hi: float = 10.0) -> Any:
    """0.5, 1, 2, 4 ... capped at `hi`, each with up to 20% jitter so consoles spread out."""
    delay = lo
    while True:
        yield delay * (1 + random.random() * 0.2)
        delay = min(delay * 2, hi)


def _closed(code: int | None) -> str:
    if code in (1001, 1012):
        return "the relay is shutting down or restarting"
    return f"the relay closed the connection (code {code})"


def _plain(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "nothing answers there"
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return exc.__class__.__name__


class RelayFeed:
    def __init__(
        self,
        url: str,
        token: Secret,
        *,
        min_backoff: float = 0.5,
        max_backoff: float = 10.0,
        heartbeat: float = 20.0,
    ) -> None:
        self.url = url
        self._token = token
        self._min, self._max = min_backoff, max_backoff
        self._heartbeat = heartbeat
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._stopped = asyncio.Event()
        self._ids = 0
        self._closing: asyncio.Future[Any] | None = None
        self.reachable = False  # the relay answered the last attempt (even if it refused)

    @property
    def online(self) -> bool:
        return self._ws is not None and not self._ws.closed

    def stop(self) -> None:
        self._stopped.set()
        if self._ws is not None:
            self._closing = asyncio.ensure_future(self._ws.close())

    async def send(self, command: dict[str, Any]) -> str:
        """Validate and send one command; returns its id (echoed in command.ok/error)."""
        self._ids += 1
        cmd = {"id": f"c{self._ids}", **command}
        try:
            typed = decode_command(json.dumps(cmd))
        except CommandError as exc:
            raise ValueError(str(exc)) from None
        ws = self._ws
        if ws is None or ws.closed:
            raise FeedOffline("relay offline: the command was not sent")
        await ws.send_str(encode_command(typed).decode())
        return str(cmd["id"])

    async def run(self, on_event: OnEvent, on_status: OnStatus) -> None:
        """Connect, deliver events, reconnect on loss; returns only after stop()."""
        headers = {"Authorization": f"Bearer {self._token.get()}"} if self._token else {}
        delays = backoff_delays(self._min, self._max)
        async with aiohttp.ClientSession() as http:
            while not self._stopped.is_set():
                reason = ""
                try:
                    async with http.ws_connect(
                        self.url, headers=headers, heartbeat=self._heartbeat, max_msg_size=8 << 20
                    ) as ws:
                        self._ws = ws
                        self.reachable = True
                        delays = backoff_delays(self._min, self._max)  # reset after success
                        await on_status(True, "")
                        async for msg in ws:
                            if msg.type != aiohttp.WSMsgType.TEXT:
                                continue
                            try:
                                event = json.loads(msg.data)
                            except ValueError:
                                continue
                            if isinstance(event, dict):
                                await on_event(event)
                        reason = _closed(ws.close_code)
                        self.reachable = False  # stopping, most likely: the retry tells
                except aiohttp.WSServerHandshakeError as exc:
                    self.reachable = True
                    reason = (
                        "the relay refused the console token: set the same RELAY_CONSOLE_TOKEN "
                        "for relay and console"
                        if exc.status in (401, 403)
                        else f"the relay refused the feed (HTTP {exc.status})"
                    )
                except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                    self.reachable = False
                    reason = f"cannot reach the relay at {self.url} ({_plain(exc)})"
                finally:
                    self._ws = None
                if self._stopped.is_set():
                    break
                await on_status(False, reason)
                try:
                    await asyncio.wait_for(self._stopped.wait(), next(delays))
                except TimeoutError:
                    pass
