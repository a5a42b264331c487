"""The database: DATABASE_URL -> an async SQLAlchemy engine, and migrations at start-up.

Empty DATABASE_URL = a SQLite file in RELAY_DATA_DIR (aiosqlite: nothing to install or run).
`postgresql://`, `postgres://` (Heroku, Railway) and `postgresql+asyncpg://` all mean
PostgreSQL through asyncpg; `?sslmode=` is translated to asyncpg's `?ssl=`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shared.envparse import SettingsError

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
# pg_advisory_xact_lock key: two relays starting at once migrate one after the other.
_MIGRATION_LOCK = 0x7265_6C61_7900  # "relay\0"
_EXAMPLES = "postgresql://user:password@host:5432/dbname or sqlite:///path/to/relay.db"


def database_url(raw: str, data_dir: Path, name: str = "DATABASE_URL") -> str:
    """The SQLAlchemy URL (async driver) for DATABASE_URL; errors never echo a password."""
    if not raw:
        return URL.create("sqlite+aiosqlite", database=str(data_dir / "relay.db")).render_as_string(
            hide_password=False
        )
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError):
        raise SettingsError(name, f"not a database URL; expected {_EXAMPLES}") from None
    backend, _, driver = url.drivername.partition("+")
    if backend in ("postgres", "postgresql"):
        if driver not in ("", "asyncpg"):
            raise SettingsError(
                name,
                f"the relay talks to PostgreSQL with asyncpg: use postgresql:// (not +{driver})",
            )
        if not url.database:
            raise SettingsError(name, "name the database: postgresql://user:password@host/dbname")
        query = dict(url.query)
        if "sslmode" in query:  # libpq's spelling; asyncpg calls it ssl
            query["ssl"] = query.pop("sslmode")
        url = url.set(drivername="postgresql+asyncpg", query=query)
    elif backend == "sqlite":
        if driver not in ("", "aiosqlite"):
            raise SettingsError(
                name, f"SQLite goes through aiosqlite: use sqlite:/// (not +{driver})"
            )
        if not url.database or url.database == ":memory:":
            raise SettingsError(name, "give SQLite a file, e.g. sqlite:///data/relay.db")
        url = url.set(drivername="sqlite+aiosqlite")
    else:
        raise SettingsError(
            name,
            f"unsupported database {backend!r}: expected {_EXAMPLES}, "
            "or leave it empty for a SQLite file in RELAY_DATA_DIR",
        )
    return url.render_as_string(hide_password=False)


def display_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def create_engine(url: str) -> AsyncEngine:
    """An engine for a URL from database_url(); a SQLite file's folder is created."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        folder = Path(parsed.database or ".").parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SettingsError(
                "RELAY_DATA_DIR", f"cannot create {folder}: {exc.strerror}"
            ) from None
        engine = create_async_engine(url, connect_args={"timeout": 15})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        url,
        pool_pre_ping=True,  # a server restart leaves dead pooled sockets; replace them
        pool_size=5,
        max_overflow=5,
        # Fail fast when the server is away: the writer retries, a request answers 503.
        connect_args={"timeout": 5, "command_timeout": 30},
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers (the history API) never wait for the writer, nor it for them.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's config without an ini file; env.py uses `connection` when given."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision (alembic upgrade head), from async code."""
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        await conn.run_sync(_upgrade)


def _upgrade(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())
