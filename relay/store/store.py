"""The relay's store: call history, saved settings, agent profiles and the post-call
webhook, behind one object the relay opens at start-up and closes at shutdown.

    store = await Store.open(store_settings.from_env(env))   # migrates; never fails on an
                                                             # unreachable database
    profile = await store.profiles.resolve(to_number)        # on /twiml; None = defaults
    saved = await store.saved.load()                         # console's saved defaults
    store.submit(record)                                     # when a call ends; never waits
    history_api.add_routes(app, store, settings.console_token)
    await store.close()                                      # on shutdown, after the drain

If the database is away at start-up the relay still starts: records queue in memory, the
writer retries, and the schema is created when the database answers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import aiohttp
import msgspec
from sqlalchemy.ext.asyncio import AsyncEngine

from . import metrics
from .db import create_engine, migrate
from .profiles import Profiles
from .queries import CallFilter, Page, get_call, list_calls, upsert_calls
from .records import CallRecord, strip_nul
from .redact import redact_record
from .retention import Retention, delete_older_than
from .settings import StoreSettings
from .settings_store import SavedSettings
from .webhook import WebhookSender
from .writer import WriteBehind

log = logging.getLogger(__name__)

# Start-up waits at most this long for the first migration; past it, the writer retries.
STARTUP_TIMEOUT_S = 15.0


class StoreUnavailable(ConnectionError):
    """The schema could not be brought up to date: nothing can be written yet (the writer
    keeps the records and retries, as for any unreachable database)."""


class Store:
    def __init__(
        self,
        settings: StoreSettings,
        engine: AsyncEngine,
        *,
        http: aiohttp.ClientSession | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.profiles = Profiles(engine, resolve_timeout_s=settings.resolve_timeout_s)
        self.saved = SavedSettings(engine)
        self.writer = WriteBehind(
            self._write_batch,
            max_pending=settings.queue_max,
            batch_size=settings.batch_size,
            retry_initial_s=settings.retry_initial_s,
            retry_max_s=settings.retry_max_s,
        )
        self._retention = Retention(self.apply_retention, settings.retention_interval_s)
        self.webhook = (
            WebhookSender(
                settings.webhook_url,
                settings.webhook_secret.get(),
                attempts=settings.webhook_attempts,
                backoff_s=settings.webhook_backoff_s,
                timeout_s=settings.webhook_timeout_s,
                http=http,
            )
            if settings.webhook_url
            else None
        )
        self._schema_ready = False
        self._schema_lock = asyncio.Lock()

    @classmethod
    async def open(
        cls, settings: StoreSettings, *, http: aiohttp.ClientSession | None = None
    ) -> Store:
        """Connect, migrate and start the writer and retention tasks.

        Raises SettingsError only for what never heals by waiting (a SQLite folder that
        cannot be created); an unreachable database is logged and retried."""
        store = cls(settings, create_engine(settings.database_url.get()), http=http)
        await store.start()
        return store

    async def start(self, timeout: float = STARTUP_TIMEOUT_S) -> None:
        """Migrate (waiting at most `timeout`) and start the writer and retention."""
        settings = self.settings
        try:
            await asyncio.wait_for(self.ensure_schema(), timeout)
        except Exception as exc:
            log.error(
                "history store %s unavailable at start-up (%s: %s); calls go on, their "
                "records are queued and written when it answers",
                settings.display_url,
                type(exc).__name__,
                str(exc).splitlines()[0][:200] if str(exc) else "",
            )
        else:
            log.info("history store: %s", settings.display_url)
        self.writer.start()
        if settings.history_days > 0:
            self._retention.start()

    @property
    def ready(self) -> bool:
        """Migrated, and the last write (if any) reached the database."""
        return self._schema_ready and not self.writer.failing

    async def ensure_schema(self) -> None:
        if self._schema_ready:
            return
        async with self._schema_lock:
            if not self._schema_ready:
                await migrate(self.engine)
                self._schema_ready = True

    def prepare(self, record: CallRecord) -> CallRecord:
        """What is stored and sent: numbers redacted if asked, the cost estimated, NUL
        characters removed (PostgreSQL refuses them in text and JSON)."""
        record = strip_nul(record)
        if self.settings.redact_numbers:
            record = redact_record(record)
        if record.cost_usd is None:
            cost = self.settings.prices.estimate(record.model, record.usage)
            if cost is not None:
                record = msgspec.structs.replace(record, cost_usd=cost)
        return record

    def submit(self, record: CallRecord) -> None:
        """Store a call's record (upserted by CallSid) and, if it has ended, send the
        post-call webhook. Never awaits, never raises: the writer does the I/O."""
        try:
            record = self.prepare(record)
        except Exception:  # never store what may be unredacted
            log.exception("history: the record of %s was dropped", record.call_sid)
            metrics.dropped.labels("rejected").inc()
            return
        self.writer.submit(record)
        if self.webhook is not None and record.ended_at is not None:
            self.webhook.send(record)

    async def _write_batch(self, records: Sequence[CallRecord]) -> None:
        try:
            await self.ensure_schema()
        except Exception as exc:
            raise StoreUnavailable(f"migrations did not run: {type(exc).__name__}: {exc}") from exc
        async with self.engine.begin() as conn:
            await upsert_calls(conn, records)

    async def get_call(self, call_sid: str) -> CallRecord | None:
        await self.ensure_schema()
        async with self.engine.connect() as conn:
            return await get_call(conn, call_sid)

    async def list_calls(
        self, where: CallFilter | None = None, *, limit: int = 50, cursor: str | None = None
    ) -> Page:
        await self.ensure_schema()
        async with self.engine.connect() as conn:
            return await list_calls(
                conn,
                where or CallFilter(),
                limit=limit,
                cursor=cursor,
                redacted=self.settings.redact_numbers,
            )

    async def apply_retention(self, now: float | None = None) -> int:
        """Delete calls older than RELAY_HISTORY_DAYS (run hourly by open())."""
        await self.ensure_schema()
        return await delete_older_than(self.engine, self.settings.history_days, now)

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until every submitted record is written; False on timeout."""
        return await self.writer.flush(timeout)

    def status(self) -> dict[str, Any]:
        """For /health: is the database reachable, how much is waiting."""
        return {
            "backend": self.settings.backend,
            "ready": self.ready,
            "queued": self.writer.depth,
            "dropped": self.writer.stats.dropped,
            "webhooks_pending": self.webhook.in_flight if self.webhook else 0,
        }

    async def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (up to `timeout`), finish webhooks, release the database."""
        started = time.monotonic()
        await self._retention.close()
        lost = await self.writer.close(timeout)
        if lost:
            log.warning("history: %d records not written before shutdown", lost)
        if self.webhook is not None:
            await self.webhook.close(max(0.5, timeout - (time.monotonic() - started)))
        await self.engine.dispose()
