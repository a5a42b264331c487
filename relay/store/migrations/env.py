"""Alembic's environment: on the connection relay.store.db.migrate() passes, or (the alembic
CLI) on an engine from DATABASE_URL / RELAY_DATA_DIR."""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy import Connection

from relay.store.models import Base


def run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies the table
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_from_env() -> None:
    from relay.store.db import create_engine
    from relay.store.settings import from_env

    engine = create_engine(from_env(os.environ).database_url.get())
    try:
        async with engine.begin() as conn:
            await conn.run_sync(run_on)
    finally:
        await engine.dispose()


_connection = context.config.attributes.get("connection")
if isinstance(_connection, Connection):
    run_on(_connection)
else:
    asyncio.run(run_from_env())
