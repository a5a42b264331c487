"""The store's HTTP API on the relay, for the console (docs/history-api.md).

    add_routes(app, store, settings.console_token)

Every route needs the console token as `Authorization: Bearer <RELAY_CONSOLE_TOKEN>`
(constant-time compare); with no token configured, loopback clients only (as /logs).
JSON in and out; errors are {"error": "..."} with a 4xx naming what was wrong, or 503 when
the database cannot be reached.

    GET    /api/calls                  newest first; ?q ?number ?since ?until ?end_reason
                                       ?profile ?limit ?cursor ?format=json|csv
    GET    /api/calls/{call_sid}       the whole record; ?format=csv for its transcript
    GET    /api/profiles               profiles, number mappings and the default
    GET    /api/profiles/{name}
    PUT    /api/profiles/{name}        create or replace
    DELETE /api/profiles/{name}        (and its number mappings)
    GET    /api/numbers
    PUT    /api/numbers/{number}       {"profile": name}
    DELETE /api/numbers/{number}
    GET    /api/default-profile
    PUT    /api/default-profile        {"profile": name | null}
    GET    /api/settings/defaults      the console's saved defaults
    PUT    /api/settings/defaults      {session, greeting, tools, version?}
    DELETE /api/settings/defaults
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from relay.security import console_allowed
from relay.store import Profile, ProfileError, SavedDefaults, Store, VersionConflict
from relay.store.export import call_csv, summaries_csv
from relay.store.queries import CallFilter, CursorError
from relay.store.records import EndReason
from relay.store.settings_store import check_defaults
from relay.store.writer import is_transient
from shared.secret import Secret
from shared.session import SessionConfigError

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
T = TypeVar("T")

MAX_BODY_BYTES = 256 * 1024
PAGE_DEFAULT = 50
PAGE_MAX = 200  # JSON pages
EXPORT_MAX = 1000  # CSV pages
MAX_QUERY_CHARS = 200

_encoder = msgspec.json.Encoder()


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        self.status = status
        super().__init__(message)


class SavedDefaultsIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    session: dict[str, Any] = {}
    greeting: str = ""
    tools: list[dict[str, Any]] = []
    version: int | None = None  # the version this edit started from; None = overwrite


class DefaultProfileIn(msgspec.Struct, forbid_unknown_fields=True):
    profile: str | None


class NumberIn(msgspec.Struct, forbid_unknown_fields=True):
    profile: str


def add_routes(app: web.Application, store: Store, console_token: Secret) -> None:
    """Mount the API on `app`, each route behind the console token."""
    api = _Api(store)
    routes: list[tuple[str, str, Handler]] = [
        ("GET", "/api/calls", api.list_calls),
        ("GET", "/api/calls/{call_sid}", api.get_call),
        ("GET", "/api/profiles", api.list_profiles),
        ("GET", "/api/profiles/{name}", api.get_profile),
        ("PUT", "/api/profiles/{name}", api.put_profile),
        ("DELETE", "/api/profiles/{name}", api.delete_profile),
        ("GET", "/api/numbers", api.list_numbers),
        ("PUT", "/api/numbers/{number}", api.put_number),
        ("DELETE", "/api/numbers/{number}", api.delete_number),
        ("GET", "/api/default-profile", api.get_default_profile),
        ("PUT", "/api/default-profile", api.put_default_profile),
        ("GET", "/api/settings/defaults", api.get_defaults),
        ("PUT", "/api/settings/defaults", api.put_defaults),
        ("DELETE", "/api/settings/defaults", api.delete_defaults),
    ]
    for method, path, handler in routes:
        app.router.add_route(method, path, _guarded(console_token, handler))


def _guarded(token: Secret, handler: Handler) -> Handler:
    async def guarded(request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        presented = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        if not console_allowed(token, presented, request.remote):
            if token:
                return _error(401, "needs the console token (Authorization: Bearer ...)")
            return _error(403, "served to loopback only while RELAY_CONSOLE_TOKEN is unset")
        try:
            return await handler(request)
        except BadRequest as exc:
            return _error(exc.status, str(exc))
        except Exception as exc:
            if is_transient(exc):
                log.warning("history API: database unreachable (%s)", type(exc).__name__)
                return _error(503, "the history store is unreachable; try again shortly")
            raise

    return guarded


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=_encoder.encode(value),
        status=status,
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


def _csv(text: str, filename: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        text=text,
        content_type="text/csv",
        charset="utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
            **(headers or {}),
        },
    )


async def _body(request: web.Request, kind: type[T]) -> T:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise BadRequest(f"body is larger than {MAX_BODY_BYTES} bytes", 413)
    raw = await request.content.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise BadRequest(f"body is larger than {MAX_BODY_BYTES} bytes", 413)
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        raise BadRequest(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"not valid JSON: {exc}") from None


def _format(request: web.Request) -> str:
    fmt = request.query.get("format", "json")
    if fmt not in ("json", "csv"):
        raise BadRequest(f"format: expected json or csv, not {fmt!r}")
    return fmt


def _time(name: str, raw: str) -> float:
    """Unix seconds, an ISO 8601 date (midnight UTC) or date-time (UTC unless it says)."""
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        if len(raw) == 10:
            d = date.fromisoformat(raw)
            return datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()
        dt = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(
            f"{name}: expected unix seconds or ISO 8601 (2025-01-31 or 2025-01-31T09:00:00Z)"
        ) from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def _filter(request: web.Request) -> CallFilter:
    q = request.query
    for name in ("q", "number", "profile"):
        if len(q.get(name, "")) > MAX_QUERY_CHARS:
            raise BadRequest(f"{name}: at most {MAX_QUERY_CHARS} characters")
    reasons: list[EndReason] = []
    for value in filter(None, q.get("end_reason", "").split(",")):
        try:
            reasons.append(EndReason(value.strip()))
        except ValueError:
            allowed = ", ".join(r.value for r in EndReason)
            raise BadRequest(f"end_reason: {value!r} is not one of {allowed}") from None
    return CallFilter(
        text=q.get("q", "").strip(),
        number=q.get("number", "").strip(),
        since=_time("since", q["since"]) if q.get("since") else None,
        until=_time("until", q["until"]) if q.get("until") else None,
        end_reasons=tuple(reasons),
        profile=q.get("profile") or None,
    )


def _limit(request: web.Request, most: int) -> int:
    raw = request.query.get("limit", "")
    if not raw:
        return PAGE_DEFAULT
    try:
        limit = int(raw)
    except ValueError:
        raise BadRequest(f"limit: expected an integer, not {raw!r}") from None
    if not 1 <= limit <= most:
        raise BadRequest(f"limit: between 1 and {most}")
    return limit


class _Api:
    def __init__(self, store: Store) -> None:
        self.store = store

    # --- calls ------------------------------------------------------------------------

    async def list_calls(self, request: web.Request) -> web.StreamResponse:
        fmt = _format(request)
        where = _filter(request)
        limit = _limit(request, EXPORT_MAX if fmt == "csv" else PAGE_MAX)
        try:
            page = await self.store.list_calls(
                where, limit=limit, cursor=request.query.get("cursor") or None
            )
        except CursorError as exc:
            raise BadRequest(str(exc)) from None
        if fmt == "csv":
            more = {"X-Next-Cursor": page.next_cursor} if page.next_cursor else {}
            return _csv(summaries_csv(page.calls), "calls.csv", more)
        return _json({"calls": page.calls, "next_cursor": page.next_cursor})

    async def get_call(self, request: web.Request) -> web.StreamResponse:
        fmt = _format(request)
        sid = request.match_info["call_sid"]
        record = await self.store.get_call(sid)
        if record is None:
            return _error(404, f"no call {sid!r} in the history")
        if fmt == "csv":
            return _csv(call_csv(record), f"{sid}.csv")
        return _json(record)

    # --- profiles ---------------------------------------------------------------------

    async def list_profiles(self, request: web.Request) -> web.StreamResponse:
        profiles = self.store.profiles
        return _json(
            {
                "profiles": await profiles.list(),
                "default": await profiles.default(),
                "numbers": await profiles.numbers(),
            }
        )

    async def get_profile(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        profile = await self.store.profiles.get(name)
        return _json(profile) if profile else _error(404, f"no profile named {name!r}")

    async def put_profile(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        body = await _body(request, dict[str, Any])
        if body.get("name", name) != name:
            raise BadRequest("name: differs from the name in the path")
        body.pop("updated_at", None)
        try:
            profile = msgspec.convert({**body, "name": name}, Profile)
            return _json(await self.store.profiles.put(profile))
        except (msgspec.ValidationError, ProfileError) as exc:
            raise BadRequest(str(exc)) from None

    async def delete_profile(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if not await self.store.profiles.delete(name):
            return _error(404, f"no profile named {name!r}")
        return web.Response(status=204)

    # --- numbers and the default ------------------------------------------------------

    async def list_numbers(self, request: web.Request) -> web.StreamResponse:
        return _json({"numbers": await self.store.profiles.numbers()})

    async def put_number(self, request: web.Request) -> web.StreamResponse:
        body = await _body(request, NumberIn)
        try:
            number = await self.store.profiles.map_number(
                request.match_info["number"], body.profile
            )
        except ProfileError as exc:
            raise BadRequest(str(exc), 404 if exc.field == "profile" else 400) from None
        return _json({"number": number, "profile": body.profile})

    async def delete_number(self, request: web.Request) -> web.StreamResponse:
        number = request.match_info["number"]
        if not await self.store.profiles.unmap_number(number):
            return _error(404, f"{number!r} has no profile")
        return web.Response(status=204)

    async def get_default_profile(self, request: web.Request) -> web.StreamResponse:
        return _json({"profile": await self.store.profiles.default()})

    async def put_default_profile(self, request: web.Request) -> web.StreamResponse:
        body = await _body(request, DefaultProfileIn)
        try:
            await self.store.profiles.set_default(body.profile)
        except ProfileError as exc:
            raise BadRequest(str(exc), 404) from None
        return _json({"profile": body.profile})

    # --- saved defaults ---------------------------------------------------------------

    async def get_defaults(self, request: web.Request) -> web.StreamResponse:
        saved = await self.store.saved.load()
        return _json(saved) if saved else _error(404, "no saved defaults")

    async def put_defaults(self, request: web.Request) -> web.StreamResponse:
        body = await _body(request, SavedDefaultsIn)
        try:
            defaults = check_defaults(
                SavedDefaults(session=body.session, greeting=body.greeting, tools=body.tools)
            )
            return _json(await self.store.saved.save(defaults, expected_version=body.version))
        except SessionConfigError as exc:
            raise BadRequest(str(exc)) from None
        except VersionConflict as exc:
            raise BadRequest(str(exc), 409) from None

    async def delete_defaults(self, request: web.Request) -> web.StreamResponse:
        if not await self.store.saved.clear():
            return _error(404, "no saved defaults")
        return web.Response(status=204)
