"""Write-behind: call records are queued in memory and written in batches by one task, so
a slow or absent database never holds up a call.

    writer = WriteBehind(write_batch)      # write_batch(records) -> awaitable, may raise
    writer.start()
    writer.submit(record)                  # never awaits, never raises
    await writer.close(timeout=10)         # flush what it can, count the rest as dropped

Queue: at most `max_pending` records, keyed by CallSid: a record submitted again (a newer
snapshot of the same call) replaces the queued one in place. When full, the OLDEST record
is dropped for the new one: after a long outage the most recent calls are the ones an
operator looks for. Every drop is logged with its CallSid and counted
(relay_history_dropped_total{reason}).

Failures: an error that says the database is unreachable (connection refused, timeout,
server gone) keeps the batch and retries it with exponential backoff, forever; when the
database is back, the backlog is written. Any other error (the database refused the data)
is retried record by record, and a record refused on its own is dropped as `rejected`, so
one bad record cannot hold up the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import exc as sa_exc

from . import metrics
from .records import CallRecord

log = logging.getLogger(__name__)

WriteBatch = Callable[[Sequence[CallRecord]], Awaitable[None]]
# While the database stays away, one warning per this many seconds (each retry is DEBUG).
WARN_EVERY_S = 60.0


# SQLSTATE classes that mean "not now" rather than "not this data": connection exception,
# transaction rollback (serialization, deadlock), insufficient resources (too many
# connections, disk full), operator intervention (shutting down, starting up), system error.
TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "57", "58"})


def is_transient(exc: BaseException) -> bool:
    """True when the database could not be reached, as opposed to refusing the data."""
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated or isinstance(
            exc, (sa_exc.OperationalError, sa_exc.InterfaceError)
        ):
            return True
        return _transient_sqlstate(exc.orig)
    if isinstance(exc, (OSError, TimeoutError, sa_exc.TimeoutError)):
        return True
    return _transient_sqlstate(exc)


def _transient_sqlstate(exc: object) -> bool:
    sqlstate = getattr(exc, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate[:2] in TRANSIENT_SQLSTATE_CLASSES


@dataclass
class WriterStats:
    written: int = 0
    retries: int = 0  # failed batch attempts that were retried
    dropped: int = 0


class WriteBehind:
    def __init__(
        self,
        write: WriteBatch,
        *,
        max_pending: int = 1000,
        batch_size: int = 100,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 30.0,
        transient: Callable[[BaseException], bool] = is_transient,
    ) -> None:
        self._write = write
        self.max_pending = max_pending
        self.batch_size = batch_size
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self._transient = transient
        self._pending: OrderedDict[str, CallRecord] = OrderedDict()
        self._inflight: list[CallRecord] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._closing_event = asyncio.Event()  # cuts a backoff short
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self._failing_since: float | None = None
        self._last_warning = 0.0
        self.stats = WriterStats()

    @property
    def depth(self) -> int:
        """Records not yet written (queued or being written)."""
        return len(self._pending) + len(self._inflight)

    @property
    def failing(self) -> bool:
        """The last write attempt could not reach the database."""
        return self._failing_since is not None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="store-writer")

    def submit(self, record: CallRecord) -> None:
        """Queue a record for writing. O(1); never awaits, never raises."""
        try:
            if self._closed:
                self._drop(record, "shutdown")
                return
            sid = record.call_sid
            if sid not in self._pending and len(self._pending) >= self.max_pending:
                _, oldest = self._pending.popitem(last=False)
                self._drop(oldest, "queue_full")
            self._pending[sid] = record
            self._idle.clear()
            self._wake.set()
            metrics.queue_depth.set(self.depth)
        except Exception:  # a call must never fail because of its history
            log.exception("history: could not queue the record of %s", record.call_sid)

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted so far is written (or dropped); False on timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self, timeout: float = 10.0) -> int:
        """Write what can be written within `timeout`; returns how many records were lost."""
        self._closing = True
        self._closing_event.set()
        self._wake.set()
        if self._task is not None:
            done, _ = await asyncio.wait({self._task}, timeout=timeout)
            if not done:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        self._closed = True
        lost = list(self._pending.values()) + self._inflight
        self._pending.clear()
        self._inflight = []
        for record in lost:
            self._drop(record, "shutdown")
        metrics.queue_depth.set(0)
        self._idle.set()
        return len(lost)

    async def _run(self) -> None:
        delay = self.retry_initial_s
        while True:
            if not self._pending:
                self._idle.set()
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = self._take()
            if await self._attempt(batch):
                delay = self.retry_initial_s
                continue
            await self._pause(delay)
            delay = min(self.retry_max_s, delay * 2)

    def _take(self) -> list[CallRecord]:
        n = min(self.batch_size, len(self._pending))
        self._inflight = [self._pending.popitem(last=False)[1] for _ in range(n)]
        return self._inflight

    async def _attempt(self, batch: list[CallRecord]) -> bool:
        """Write a batch; False (batch put back) if the database could not be reached."""
        try:
            await self._write(batch)
        except Exception as exc:
            if self._transient(exc):
                self._failed(batch, exc)
                return False
            log.warning("history: a batch of %d was refused (%s); writing one by one",
                        len(batch), _short(exc))  # fmt: skip
            for i, record in enumerate(batch):
                self._inflight = batch[i:]  # what a cancelled close() would lose
                try:
                    await self._write([record])
                except Exception as one_exc:
                    if self._transient(one_exc):
                        self._failed(batch[i:], one_exc)
                        return False
                    self._drop(record, "rejected", one_exc)
                else:
                    self._written(1)
            self._inflight = []
            return True
        self._inflight = []
        self._written(len(batch))
        return True

    def _written(self, n: int) -> None:
        self.stats.written += n
        metrics.writes.inc(n)
        if self._failing_since is not None:
            log.info(
                "history: database reachable again after %.0f s; writing the backlog (%d left)",
                time.monotonic() - self._failing_since,
                len(self._pending),
            )
            self._failing_since = None
        metrics.queue_depth.set(self.depth)

    def _failed(self, batch: Sequence[CallRecord], exc: BaseException) -> None:
        """Put an unwritten batch back at the front (unless a newer snapshot is queued)."""
        self.stats.retries += 1
        metrics.write_retries.inc()
        for record in reversed(batch):
            if record.call_sid not in self._pending:
                self._pending[record.call_sid] = record
                self._pending.move_to_end(record.call_sid, last=False)
        self._inflight = []
        while len(self._pending) > self.max_pending:
            _, oldest = self._pending.popitem(last=False)
            self._drop(oldest, "queue_full")
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        if now - self._last_warning >= WARN_EVERY_S:
            self._last_warning = now
            log.warning(
                "history: database unreachable (%s); %d records queued, retrying",
                _short(exc),
                len(self._pending),
            )
        else:
            log.debug("history: write failed again (%s)", _short(exc))

    async def _pause(self, delay: float) -> None:
        """Back off before a retry; once closing, retry every 0.2 s until close() gives up."""
        if self._closing:
            await asyncio.sleep(0.2)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing_event.wait(), delay * random.uniform(0.8, 1.2))

    def _drop(self, record: CallRecord, reason: str, exc: BaseException | None = None) -> None:
        self.stats.dropped += 1
        metrics.dropped.labels(reason).inc()
        log.warning(
            "history: the record of %s was dropped (%s%s)",
            record.call_sid,
            reason,
            f": {_short(exc)}" if exc else "",
            extra={"call_sid": record.call_sid},
        )


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__
