"""Saved settings: small JSON documents by key, each with a version that every save bumps.

The console's saved defaults (session config, greeting, tools) are one such document, so
they survive a restart. A save may name the version it was based on: if someone saved in
between, it is refused (VersionConflict) instead of silently overwriting their change.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.session import SessionConfigError, check_update

from .models import DocumentRow

DEFAULTS_KEY = "console.defaults"


class VersionConflict(Exception):
    def __init__(self, key: str, current: int) -> None:
        self.current = current
        super().__init__(f"{key} was saved meanwhile (now version {current}); reload and retry")


class Document(msgspec.Struct, kw_only=True):
    key: str
    version: int
    value: dict[str, Any]
    updated_at: float


async def get_document(conn: AsyncConnection, key: str) -> Document | None:
    query = select(DocumentRow.version, DocumentRow.value, DocumentRow.updated_at).where(
        DocumentRow.key == key
    )
    row = (await conn.execute(query)).first()
    if row is None:
        return None
    return Document(key=key, version=row.version, value=row.value, updated_at=row.updated_at)


async def put_document(
    conn: AsyncConnection, key: str, value: dict[str, Any], expected_version: int | None = None
) -> Document:
    """Save `value` under `key`. expected_version: None = whatever is there; 0 = only if
    nothing is saved yet; n = only if version n is the current one."""
    now = time.time()
    current = await get_document(conn, key)
    if expected_version is not None and (current.version if current else 0) != expected_version:
        raise VersionConflict(key, current.version if current else 0)
    if current is None:
        try:
            async with conn.begin_nested():
                await conn.execute(
                    insert(DocumentRow).values(key=key, version=1, value=value, updated_at=now)
                )
        except IntegrityError:  # saved by someone else between our read and insert
            raise VersionConflict(key, -1) from None
        return Document(key=key, version=1, value=value, updated_at=now)
    result = await conn.execute(
        update(DocumentRow)
        .where(DocumentRow.key == key, DocumentRow.version == current.version)
        .values(version=current.version + 1, value=value, updated_at=now)
    )
    if getattr(result, "rowcount", 1) == 0:
        raise VersionConflict(key, -1)
    return Document(key=key, version=current.version + 1, value=value, updated_at=now)


async def delete_document(conn: AsyncConnection, key: str) -> bool:
    result = await conn.execute(delete(DocumentRow).where(DocumentRow.key == key))
    return bool(getattr(result, "rowcount", 0))


class SavedDefaults(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What new calls start with unless a profile says otherwise."""

    session: dict[str, Any] = {}  # a GA session (partial: merged over the env defaults)
    greeting: str = ""  # what the agent says first; "" = wait for the caller
    tools: list[dict[str, Any]] = []  # function schemas the console answers
    version: int = 0  # set by the store: 1 on the first save, +1 on each save
    updated_at: float = 0.0


def check_defaults(defaults: SavedDefaults) -> SavedDefaults:
    """Normalise (beta -> GA) and validate; SessionConfigError names the field."""
    session = check_update(defaults.session) if defaults.session else {}
    tools = defaults.tools
    if tools:
        typed = [{"type": "function", **t} if "type" not in t else t for t in tools]
        tools = check_update({"tools": typed})["tools"]
    if len(defaults.greeting) > 4000:
        raise SessionConfigError("greeting", "at most 4000 characters")
    return msgspec.structs.replace(defaults, session=session, tools=tools)


class SavedSettings:
    """The console's saved defaults, in the documents table."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def load(self) -> SavedDefaults | None:
        async with self._engine.connect() as conn:
            doc = await get_document(conn, DEFAULTS_KEY)
        if doc is None:
            return None
        saved = msgspec.convert(doc.value, SavedDefaults)
        return msgspec.structs.replace(saved, version=doc.version, updated_at=doc.updated_at)

    async def save(
        self, defaults: SavedDefaults, *, expected_version: int | None = None
    ) -> SavedDefaults:
        value = msgspec.to_builtins(defaults)
        value.pop("version", None)
        value.pop("updated_at", None)
        async with self._engine.begin() as conn:
            doc = await put_document(conn, DEFAULTS_KEY, value, expected_version)
        return msgspec.structs.replace(defaults, version=doc.version, updated_at=doc.updated_at)

    async def clear(self) -> bool:
        """Forget the saved defaults: new calls use the env configuration again."""
        async with self._engine.begin() as conn:
            return await delete_document(conn, DEFAULTS_KEY)
