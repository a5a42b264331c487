"""Live calls by CallSid, and fan-out of call events to consoles.

Each console has a bounded queue drained by its own sender task. Publishing never
awaits: a console whose queue is full is dropped (with a reason), so no call ever
waits for a slow watcher.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.console_protocol import encode_event

if TYPE_CHECKING:
    from .runner import CallRunner

log = logging.getLogger("relay.hub")


@dataclass(eq=False)
class ConsoleClient:
    name: str
    queue: asyncio.Queue[bytes | None]
    on_drop: Callable[[str], None] = lambda reason: None
    dropped: bool = False


@dataclass
class Hub:
    queue_size: int = 2000
    calls: dict[str, CallRunner] = field(default_factory=dict)
    consoles: set[ConsoleClient] = field(default_factory=set)
    ended: list[dict[str, Any]] = field(default_factory=list)
    on_console_dropped: Callable[[], None] = lambda: None
    _empty: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._empty.set()

    @property
    def watched(self) -> bool:
        return bool(self.consoles)

    def add_call(self, runner: CallRunner) -> None:
        self.calls[runner.bridge.call_sid] = runner
        runner.bridge.watched = self.watched
        self._empty.clear()

    def remove_call(self, call_sid: str) -> None:
        self.calls.pop(call_sid, None)
        if not self.calls:
            self._empty.set()

    async def wait_empty(self, timeout: float) -> bool:
        """Until no call is live; False if `timeout` seconds pass first."""
        try:
            async with asyncio.timeout(timeout):
                await self._empty.wait()
        except TimeoutError:
            return False
        return True

    def add_console(self, name: str) -> ConsoleClient:
        client = ConsoleClient(name, asyncio.Queue(self.queue_size))
        self.consoles.add(client)
        self._update_watched()
        return client

    def remove_console(self, client: ConsoleClient) -> None:
        self.consoles.discard(client)
        self._update_watched()

    def _update_watched(self) -> None:
        watched = self.watched
        for runner in self.calls.values():
            runner.bridge.watched = watched

    def publish(self, event: dict[str, Any] | bytes) -> None:
        if not self.consoles:
            return
        data = event if isinstance(event, bytes) else encode_event(event)
        for client in list(self.consoles):
            try:
                client.queue.put_nowait(data)
            except asyncio.QueueFull:
                self.drop(client, "too slow")

    def send_to(self, client: ConsoleClient, event: dict[str, Any]) -> None:
        try:
            client.queue.put_nowait(encode_event(event))
        except asyncio.QueueFull:
            self.drop(client, "too slow")

    def drop(self, client: ConsoleClient, reason: str) -> None:
        if client.dropped:
            return
        client.dropped = True
        log.warning("console %s dropped: %s", client.name, reason)
        self.remove_console(client)
        self.on_console_dropped()
        client.on_drop(reason)
        # Wake the sender so it closes the socket; make room if the queue is full.
        while True:
            try:
                client.queue.put_nowait(None)
                break
            except asyncio.QueueFull:
                client.queue.get_nowait()
