"""Agent profiles: a named set of instructions, voice, model, tools, greeting and turn
detection; each called number (the call's To) can use one, and a default covers the rest.

    profile = await profiles.resolve(to_number)     # never raises; None = the defaults
    session = build_session(env=..., override=merge(saved.session, profile.session_layer()))

A field left None inherits the relay's defaults (env, then the console's saved defaults);
`turn_detection: {"type": "none"}` turns detection off, `tools: []` removes all tools,
`greeting: ""` makes the agent wait for the caller.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any

import msgspec
from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.session import SessionConfigError, check_update, normalize

from .models import NumberRow, ProfileRow
from .settings_store import delete_document, get_document, put_document

log = logging.getLogger(__name__)

DEFAULT_KEY = "profiles.default"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$")
E164 = re.compile(r"^\+[1-9]\d{1,14}$")
_CACHE_MAX = 1000


class ProfileError(ValueError):
    """Input the store refuses: the message names the field."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class Profile(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    instructions: str | None = None
    voice: str | None = None
    model: str | None = None
    tools: list[dict[str, Any]] | None = None
    greeting: str | None = None
    turn_detection: dict[str, Any] | None = None
    updated_at: float = 0.0  # set by the store

    def session_layer(self) -> dict[str, Any]:
        """The GA session fields this profile sets, to merge over the defaults."""
        layer: dict[str, Any] = {}
        if self.model is not None:
            layer["model"] = self.model
        if self.instructions is not None:
            layer["instructions"] = self.instructions
        if self.tools is not None:
            layer["tools"] = self.tools
        audio: dict[str, Any] = {}
        if self.voice is not None:
            audio["output"] = {"voice": self.voice}
        if self.turn_detection is not None:
            audio["input"] = {"turn_detection": self.turn_detection}
        if audio:
            layer["audio"] = audio
        out: dict[str, Any] = normalize(layer)
        out.pop("type", None)
        return out


def normalize_number(raw: str) -> str | None:
    """'+1 (555) 123-4567' -> '+15551234567'; None if it is not an E.164 number."""
    number = re.sub(r"[\s().-]", "", raw)
    return number if E164.match(number) else None


def check_profile(profile: Profile) -> Profile:
    """Validate a profile (as the session would be) and normalise it (beta -> GA)."""
    if not NAME.match(profile.name):
        raise ProfileError(
            "name", "1-64 letters, digits, spaces, '_', '.' or '-', starting with a letter or digit"
        )
    tools = profile.tools
    if tools is not None:
        tools = [{"type": "function", **t} if "type" not in t else t for t in tools]
    turn_detection = profile.turn_detection
    if profile.greeting is not None and len(profile.greeting) > 4000:
        raise ProfileError("greeting", "at most 4000 characters")
    if profile.model is not None and not profile.model.strip():
        raise ProfileError("model", "empty; leave it out to use the default model")
    checked = msgspec.structs.replace(profile, tools=tools)
    try:
        ga = check_update(checked.session_layer())
    except SessionConfigError as exc:
        raise ProfileError(_profile_field(exc.field), str(exc).partition(": ")[2]) from None
    if turn_detection is not None:
        td = ga.get("audio", {}).get("input", {}).get("turn_detection")
        turn_detection = td if isinstance(td, dict) else {"type": "none"}
    return msgspec.structs.replace(
        checked, tools=ga.get("tools", tools), turn_detection=turn_detection
    )


def _profile_field(session_field: str) -> str:
    for prefix, name in (
        ("audio.output.voice", "voice"),
        ("audio.input.turn_detection", "turn_detection"),
        ("tools", "tools"),
        ("instructions", "instructions"),
        ("model", "model"),
    ):
        if session_field.startswith(prefix):
            return name + session_field[len(prefix) :]
    return session_field


def _config(profile: Profile) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.to_builtins(profile)
    data.pop("name", None)
    data.pop("updated_at", None)
    return data


def _from_row(name: str, config: dict[str, Any], updated_at: float) -> Profile:
    return msgspec.convert({**config, "name": name, "updated_at": updated_at}, Profile)


class Profiles:
    def __init__(self, engine: AsyncEngine, *, resolve_timeout_s: float = 2.0) -> None:
        self._engine = engine
        self.resolve_timeout_s = resolve_timeout_s
        # The last answer per number, served while the database is away.
        self._cache: dict[str, Profile | None] = {}

    async def list(self) -> list[Profile]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(ProfileRow.name, ProfileRow.config, ProfileRow.updated_at).order_by(
                    ProfileRow.name
                )
            )
            return [_from_row(*row) for row in rows]

    async def get(self, name: str) -> Profile | None:
        async with self._engine.connect() as conn:
            return await self._get(conn, name)

    async def _get(self, conn: AsyncConnection, name: str) -> Profile | None:
        row = (
            await conn.execute(
                select(ProfileRow.name, ProfileRow.config, ProfileRow.updated_at).where(
                    ProfileRow.name == name
                )
            )
        ).first()
        return None if row is None else _from_row(*row)

    async def put(self, profile: Profile) -> Profile:
        """Create or replace a profile (validated first: ProfileError names the field)."""
        profile = msgspec.structs.replace(check_profile(profile), updated_at=time.time())
        async with self._engine.begin() as conn:
            insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
            stmt = insert(ProfileRow).values(
                name=profile.name, config=_config(profile), updated_at=profile.updated_at
            )
            stmt = stmt.on_conflict_do_update(
                index_elements=[ProfileRow.name],
                set_={"config": stmt.excluded.config, "updated_at": stmt.excluded.updated_at},
            )
            await conn.execute(stmt)
        self._cache.clear()
        return profile

    async def delete(self, name: str) -> bool:
        """Delete a profile, its numbers' mappings and, if it was the default, the default."""
        async with self._engine.begin() as conn:
            await conn.execute(delete(NumberRow).where(NumberRow.profile == name))
            result = await conn.execute(delete(ProfileRow).where(ProfileRow.name == name))
            if await self._default_name(conn) == name:
                await delete_document(conn, DEFAULT_KEY)
        self._cache.clear()
        return bool(getattr(result, "rowcount", 0))

    async def numbers(self) -> dict[str, str]:
        """Called number -> profile name."""
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(NumberRow.number, NumberRow.profile).order_by(NumberRow.number)
            )
            return {number: profile for number, profile in rows}

    async def map_number(self, number: str, profile: str) -> str:
        """Calls to `number` use `profile`; returns the number as stored (E.164)."""
        e164 = normalize_number(number)
        if e164 is None:
            raise ProfileError("number", f"{number!r} is not an E.164 number such as +15551234567")
        async with self._engine.begin() as conn:
            if await self._get(conn, profile) is None:
                raise ProfileError("profile", f"no profile named {profile!r}")
            insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
            stmt = insert(NumberRow).values(number=e164, profile=profile)
            stmt = stmt.on_conflict_do_update(
                index_elements=[NumberRow.number], set_={"profile": stmt.excluded.profile}
            )
            await conn.execute(stmt)
        self._cache.clear()
        return e164

    async def unmap_number(self, number: str) -> bool:
        e164 = normalize_number(number) or number
        async with self._engine.begin() as conn:
            result = await conn.execute(delete(NumberRow).where(NumberRow.number == e164))
        self._cache.clear()
        return bool(getattr(result, "rowcount", 0))

    async def default(self) -> str | None:
        """The name of the profile for numbers with none of their own (None: no profile)."""
        async with self._engine.connect() as conn:
            return await self._default_name(conn)

    async def set_default(self, name: str | None) -> None:
        async with self._engine.begin() as conn:
            if name is None:
                await delete_document(conn, DEFAULT_KEY)
            elif await self._get(conn, name) is None:
                raise ProfileError("profile", f"no profile named {name!r}")
            else:
                await put_document(conn, DEFAULT_KEY, {"profile": name})
        self._cache.clear()

    async def _default_name(self, conn: AsyncConnection) -> str | None:
        doc = await get_document(conn, DEFAULT_KEY)
        name = doc.value.get("profile") if doc else None
        return name if isinstance(name, str) else None

    async def resolve(self, to_number: str) -> Profile | None:
        """The profile a call to `to_number` uses: its own, else the default, else None.

        Never raises and never waits longer than resolve_timeout_s: if the database is
        away, the last answer for that number is used (or None)."""
        number = normalize_number(to_number) or ""
        try:
            profile = await asyncio.wait_for(self._resolve(number), self.resolve_timeout_s)
        except Exception as exc:
            log.warning(
                "profile for %s not looked up (%s); using %s",
                to_number or "(no number)",
                type(exc).__name__,
                "the last known one" if number in self._cache else "the defaults",
            )
            return self._cache.get(number)
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[number] = profile
        return profile

    async def _resolve(self, number: str) -> Profile | None:
        async with self._engine.connect() as conn:
            if number:
                row = (
                    await conn.execute(
                        select(ProfileRow.name, ProfileRow.config, ProfileRow.updated_at)
                        .join(NumberRow, NumberRow.profile == ProfileRow.name)
                        .where(NumberRow.number == number)
                    )
                ).first()
                if row is not None:
                    return _from_row(*row)
            name = await self._default_name(conn)
            return None if name is None else await self._get(conn, name)
