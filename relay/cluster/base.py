"""What the relay needs from the state its processes share, as small interfaces.

Each has two implementations, chosen once at start-up: in memory for the embedded default
(one process, no Redis: relay/cluster/local.py) and in Redis for several processes or
instances (relay/cluster/redis_state.py). The call core never sees either.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.console_protocol import ConsoleCommand


@dataclass(frozen=True)
class Node:
    """Which process this is: shown on /health and /metrics, and the owner of its calls."""

    instance: str  # one machine or container: its workers share it
    worker: int  # 1..RELAY_WORKERS within the instance (1 for a single process)
    pid: int = field(default_factory=os.getpid)
    started_at: float = field(default_factory=time.time)
    # Unique for the life of this process: a restarted worker is a new owner.
    id: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            tag = f"{self.instance}/w{self.worker}/{self.pid}-{secrets.token_hex(3)}"
            object.__setattr__(self, "id", tag)

    @property
    def label(self) -> str:
        """For people: 'relay worker 2 (pid 123) on host:8081'."""
        return f"relay worker {self.worker} (pid {self.pid}) on {self.instance}"

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "instance": self.instance, "worker": self.worker, "pid": self.pid}


class SharedStateError(ConnectionError):
    """The shared state did not answer (Redis away): the request is refused, calls go on."""


class SharedStateUnavailable(RuntimeError):
    """The shared state could not be reached at start-up: the relay does not start."""


def worker_index() -> int:
    """This worker's number under a parent (RELAY_WORKER_INDEX), 1 for a lone process."""
    try:
        return max(1, int(os.environ.get("RELAY_WORKER_INDEX", "1")))
    except ValueError:
        return 1


def default_instance(port: int) -> str:
    """Host and port: unique per container (or per port on one host, as in the tests)."""
    return f"{socket.gethostname()}:{port}"


class TokenStore(Protocol):
    """One-time stream tokens: issued by /twiml, spent by the /call that carries them."""

    async def issue(self, call_sid: str) -> str: ...

    async def redeem(self, token: str, call_sid: str) -> bool:
        """True once, for the call the token was issued to, before it expires."""
        ...


class CallRegistry(Protocol):
    """Where every live call is, room for more, and the calls that ended lately."""

    async def has_room(self, limit: int) -> bool:
        """Fewer than `limit` live calls on this instance (/twiml's busy check)."""
        ...

    async def admit(self, call_sid: str, limit: int) -> str:
        """Claim a place for a starting call: "" if admitted, else "busy" or "duplicate"."""
        ...

    def started(self, info: dict[str, Any]) -> None:
        """The admitted call is live (its CallInfo); never waits."""

    def release(self, call_sid: str) -> None:
        """An admitted call that never started (its SIP accept failed); never waits."""

    def ended(self, call_sid: str, entry: dict[str, Any]) -> None:
        """The call is over (CallInfo + summary); never waits."""

    async def live(self) -> list[dict[str, Any]]:
        """CallInfo of every live call, of every process."""
        ...

    async def recent(self, n: int) -> list[dict[str, Any]]:
        """The last `n` ended calls, oldest first."""
        ...

    async def forward(self, call_sid: str, cmd: ConsoleCommand) -> dict[str, Any] | None:
        """Run a console command on the process holding `call_sid`; its command.ok fields.

        None: no process holds that call. Raises ValueError with the refusal."""
        ...


class FeedBus(Protocol):
    """Console events of this process's calls, to every other process's consoles."""

    def publish(self, data: bytes) -> None:
        """One encoded event; never waits (dropped, and counted, if the bus is away)."""

    def consoles_changed(self, count: int) -> None:
        """This process's console count: other processes' calls are watched while > 0."""


class DefaultsSync(Protocol):
    """Keeps the console's saved defaults the same on every process."""

    async def changed(self, session: dict[str, Any], greeting: str) -> None:
        """This process applied new defaults: the others apply them to their new calls."""


@dataclass
class Shared:
    """The implementations chosen at start-up, and their lifetime."""

    node: Node
    tokens: TokenStore
    registry: CallRegistry
    feed: FeedBus
    defaults: DefaultsSync

    async def start(self) -> None:
        """Connect and announce this process (nothing to do in memory)."""

    async def close(self) -> None:
        """Leave: after the drain, so the calls this process ended are written first."""

    def status(self) -> dict[str, Any]:
        return {"backend": "memory"}
