"""Live calls by CallSid, and fan-out of call events to consoles.

Each console has a bounded queue drained by its own sender task. Publishing never
awaits: a console whose queue is full is dropped (with a reason), so no call ever
waits for a slow watcher.

With shared state (relay/cluster) the hub also hands every event of its calls to
`forward` (the feed bus to the other processes), delivers theirs to its consoles
(`deliver`), and counts as watched while a console anywhere is connected.
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
    # Events that arrive while its relay.hello is being put together, sent after it.
    held: list[bytes] | None = None


@dataclass
class Hub:
    queue_size: int = 2000
    calls: dict[str, CallRunner] = field(default_factory=dict)
    consoles: set[ConsoleClient] = field(default_factory=set)
    ended: list[dict[str, Any]] = field(default_factory=list)
    on_console_dropped: Callable[[], None] = lambda: None
    # Shared state: events of this process's calls go to other processes' consoles too.
    forward: Callable[[bytes], None] | None = None
    on_consoles: Callable[[int], None] = lambda count: None  # local console count changed
    remote_watched: bool = False  # a console of another process is connected
    _empty: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._empty.set()

    @property
    def watched(self) -> bool:
        return bool(self.consoles) or self.remote_watched

    def set_remote_watched(self, watched: bool) -> None:
        if watched != self.remote_watched:
            self.remote_watched = watched
            self._update_watched()

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

    def add_console(self, name: str, *, hold: bool = False) -> ConsoleClient:
        """A new console; `hold`: keep its events until `release` sends its hello first."""
        client = ConsoleClient(name, asyncio.Queue(self.queue_size), held=[] if hold else None)
        self.consoles.add(client)
        self._update_watched()
        self.on_consoles(len(self.consoles))
        return client

    def release(self, client: ConsoleClient, hello: dict[str, Any]) -> None:
        """Send `hello`, then the events held for it meanwhile."""
        held, client.held = client.held or [], None
        self.send_to(client, hello)
        for data in held:
            self._put(client, data)

    def remove_console(self, client: ConsoleClient) -> None:
        self.consoles.discard(client)
        self._update_watched()
        self.on_consoles(len(self.consoles))

    def _update_watched(self) -> None:
        watched = self.watched
        for runner in self.calls.values():
            runner.bridge.watched = watched

    def publish(self, event: dict[str, Any] | bytes) -> None:
        """An event of this process: to its consoles and (shared state) to the others'."""
        if not self.watched:
            return
        data = event if isinstance(event, bytes) else encode_event(event)
        if self.forward is not None:
            self.forward(data)
        self.deliver(data)

    def publish_local(self, event: dict[str, Any]) -> None:
        """An event about this process's own state (e.g. its defaults): its consoles only."""
        if self.consoles:
            self.deliver(encode_event(event))

    def deliver(self, data: bytes) -> None:
        """An encoded event (this process's or another's) to this process's consoles."""
        for client in list(self.consoles):
            self._put(client, data)

    def send_to(self, client: ConsoleClient, event: dict[str, Any]) -> None:
        self._put(client, encode_event(event))

    def _put(self, client: ConsoleClient, data: bytes) -> None:
        if client.held is not None:
            if len(client.held) < self.queue_size:
                client.held.append(data)
            else:
                self.drop(client, "too slow")
            return
        try:
            client.queue.put_nowait(data)
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
