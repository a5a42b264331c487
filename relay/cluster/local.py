"""The embedded default: one process, no Redis, everything in this process's memory.

These are the relay's behaviour before shared state existed, behind the interfaces: no
await does I/O, so none of them yields to the event loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shared.console_protocol import ConsoleCommand

from ..security import StreamTokens
from .base import Node, Shared

if TYPE_CHECKING:
    from ..hub import Hub

ENDED_KEPT = 100


class LocalTokens:
    def __init__(self, tokens: StreamTokens | None = None) -> None:
        self.tokens = tokens or StreamTokens()

    async def issue(self, call_sid: str) -> str:
        return self.tokens.issue(call_sid)

    async def redeem(self, token: str, call_sid: str) -> bool:
        return self.tokens.redeem(token, call_sid)


class LocalRegistry:
    """The hub's own dict of calls is the registry."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def has_room(self, limit: int) -> bool:
        return len(self.hub.calls) < limit

    async def admit(self, call_sid: str, limit: int) -> str:
        if len(self.hub.calls) >= limit:
            return "busy"
        return "duplicate" if call_sid in self.hub.calls else ""

    def started(self, info: dict[str, Any]) -> None:
        pass

    def release(self, call_sid: str) -> None:
        pass

    def ended(self, call_sid: str, entry: dict[str, Any]) -> None:
        ended = self.hub.ended
        ended.append(entry)
        del ended[:-ENDED_KEPT]

    async def live(self) -> list[dict[str, Any]]:
        return [r.bridge.info() for r in self.hub.calls.values()]

    async def recent(self, n: int) -> list[dict[str, Any]]:
        return self.hub.ended[-n:]

    async def forward(self, call_sid: str, cmd: ConsoleCommand) -> dict[str, Any] | None:
        return None  # every call of this relay is in the hub


class NoFeed:
    def publish(self, data: bytes) -> None:
        pass

    def consoles_changed(self, count: int) -> None:
        pass


class NoDefaultsSync:
    async def changed(self, session: dict[str, Any], greeting: str) -> None:
        pass


def local_state(hub: Hub, node: Node) -> Shared:
    return Shared(node, LocalTokens(), LocalRegistry(hub), NoFeed(), NoDefaultsSync())
