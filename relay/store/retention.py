"""RELAY_HISTORY_DAYS: calls that started longer ago are deleted, at start-up and then
every `interval_s` (hourly by default). 0 keeps every call."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from .queries import delete_started_before

log = logging.getLogger(__name__)

DAY_S = 86400.0


async def delete_older_than(engine: AsyncEngine, days: int, now: float | None = None) -> int:
    """Delete calls that started more than `days` days before `now`; returns how many."""
    if days <= 0:
        return 0
    cutoff = (time.time() if now is None else now) - days * DAY_S
    async with engine.begin() as conn:
        deleted = await delete_started_before(conn, cutoff)
    if deleted:
        log.info("history: deleted %d calls older than %d days", deleted, days)
    return deleted


class Retention:
    """The periodic task; a failed run (database away) is logged and tried next time."""

    def __init__(self, run: Callable[[], Awaitable[int]], interval_s: float = 3600.0) -> None:
        self._job = run
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="store-retention")

    async def _run(self) -> None:
        while True:
            try:
                await self._job()
            except Exception as exc:
                log.warning("history: retention run failed (%s); next in %.0f s",
                            type(exc).__name__, self.interval_s)  # fmt: skip
            await asyncio.sleep(self.interval_s)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
