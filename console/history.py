"""The relay's history API (docs/history-api.md), called from the console backend.

Calls (filtered, paged by cursor), one call's record, exports, agent profiles and the
number mapping. The console token goes into a header here: the browser never sees it.
Every failure is a `HistoryError` whose text says what happened in plain words and, for
input the relay refused, which field it was about.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from console.settings import ConsoleSettings
from shared.secret import Secret

PAGE_SIZE = 50
CSV_PAGE = 1000  # the relay's largest CSV page
JSON_PAGE = 200  # and JSON page
EXPORT_MAX = 10_000  # calls in one exported list; a bigger export should be narrowed
TIMEOUT_S = 10.0
# The relay's end reasons (docs/history-api.md), in the order the filter offers them.
END_REASON_CODES = (
    "caller_hung_up",
    "agent_ended",
    "transferred",
    "console_ended",
    "model_unavailable",
    "relay_shutdown",
    "error",
)

TOKEN_REFUSED = (
    "The relay refused the console token: set the same RELAY_CONSOLE_TOKEN for the relay "
    "and the console, then restart them."
)
LOOPBACK_ONLY = (
    "The relay serves its history only to a console on its own machine while "
    "RELAY_CONSOLE_TOKEN is unset: set the same RELAY_CONSOLE_TOKEN for the relay and the "
    "console."
)
STORE_DOWN = (
    "The relay's database is unavailable right now. Calls go on and are saved when it is "
    "back; try again in a moment."
)


class HistoryError(Exception):
    """A plain-words failure; `field` names the form field it is about ("" = none)."""

    def __init__(self, message: str, *, status: int = 0, field: str = "") -> None:
        self.status = status
        self.field = field
        super().__init__(message)


@dataclass(frozen=True)
class CallFilter:
    """What the History view searches for. Dates are days in the console's time zone
    (the zone the view shows times in), `until` included."""

    text: str = ""
    number: str = ""
    since: str = ""  # YYYY-MM-DD: calls from the start of this day
    until: str = ""  # YYYY-MM-DD: calls up to the end of this day
    end_reason: str = ""  # one of END_REASON_CODES, or "" for any
    profile: str = ""

    @classmethod
    def from_mapping(cls, values: Mapping[str, str]) -> CallFilter:
        """From a form or a query string; unknown keys are ignored, values trimmed."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: str(v).strip() for k, v in values.items() if k in names})

    def as_dict(self) -> dict[str, str]:
        """The non-empty criteria by name (the export link's query)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name)}

    def params(self) -> dict[str, str]:
        """The relay's query parameters; raises HistoryError (with the field) on bad input."""
        out: dict[str, str] = {}
        if self.text:
            out["q"] = self.text
        if self.number:
            out["number"] = self.number
        since = _day_start("since", "From", self.since) if self.since else None
        until = _day_start("until", "To", self.until, plus_days=1) if self.until else None
        if since is not None:
            out["since"] = f"{since:.0f}"
        if until is not None:
            out["until"] = f"{until:.0f}"
        if since is not None and until is not None and until <= since:
            raise HistoryError("To: the last day is before the first one.", field="until")
        if self.end_reason:
            if self.end_reason not in END_REASON_CODES:
                raise HistoryError("End reason: pick one from the list.", field="end_reason")
            out["end_reason"] = self.end_reason
        if self.profile:
            out["profile"] = self.profile
        return out


def _day_start(field: str, label: str, day: str, plus_days: int = 0) -> float:
    """Local midnight of `day` (+ days) as unix seconds."""
    try:
        d = date.fromisoformat(day) + timedelta(days=plus_days)
    except ValueError:
        raise HistoryError(
            f"{label}: expected a date like 2025-01-31, not {day!r}.", field=field
        ) from None
    return datetime(d.year, d.month, d.day).timestamp()


@dataclass(frozen=True)
class CallPage:
    calls: list[dict[str, Any]]
    next_cursor: str | None  # None: the last page


@dataclass(frozen=True)
class ProfileBook:
    profiles: list[dict[str, Any]]
    default: str | None
    numbers: dict[str, str]  # E.164 number -> profile name


# --- errors in plain words ---------------------------------------------------------------

PROFILE_LABELS = {
    "name": "Name",
    "instructions": "Instructions",
    "voice": "Voice",
    "model": "Model",
    "tools": "Tools",
    "greeting": "Greeting",
    "turn_detection": "Turn detection",
    "profile": "Profile",
    "number": "Number",
}
_MSGSPEC_AT = re.compile(r"^(?P<msg>.*?) - at `\$\.?(?P<path>[^`]*)`$")
_TYPES = {
    "str": "text",
    "int": "a whole number",
    "float": "a number",
    "object": "an object",
    "array": "a list",
    "bool": "true or false",
    "null": "empty",
}
_CODE = re.compile(r"`([^`]*)`")


def _type_words(match: re.Match[str]) -> str:
    """msgspec's `array | null` -> 'a list' (leaving a field out is always possible)."""
    kinds = [k.strip() for k in match[1].split("|")]
    if not all(k in _TYPES for k in kinds):
        return match[1]
    return " or ".join(_TYPES[k] for k in kinds if k != "null" or len(kinds) == 1)


def field_error(message: str) -> tuple[str, str]:
    """The relay's refusal of a profile or mapping ("voice: ...", msgspec's "... - at `$.x`")
    as (form field, one plain sentence naming it as the form does)."""
    path, text = "", message
    if match := _MSGSPEC_AT.match(message):
        path, text = match["path"], match["msg"]
    else:
        head, sep, rest = message.partition(": ")
        if sep and head and " " not in head:
            path, text = head, rest
    field = re.split(r"[.\[]", path, maxsplit=1)[0]
    if field not in PROFILE_LABELS:
        return "", _sentence(message)
    text = _CODE.sub(_type_words, text)
    label = PROFILE_LABELS[field]
    where = _where(path[len(field) :])
    return field, _sentence(f"{label}{where}: {text[:1].lower()}{text[1:]}")


def _where(rest: str) -> str:
    """'[0].name' -> ' (tool 1, name)'; '.eagerness' -> ' (eagerness)'."""
    parts = []
    for part in re.findall(r"\[\d+\]|[^.\[\]]+", rest):
        parts.append(f"tool {int(part[1:-1]) + 1}" if part.startswith("[") else part)
    return f" ({', '.join(parts)})" if parts else ""


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "?", "!")) else text + "."


def _relay_message(resp: httpx.Response) -> str | None:
    """The relay's own {"error": ...}, or None if the answer is not the relay's JSON."""
    try:
        body = resp.json()
    except ValueError:
        return None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    return None


def plain_error(resp: httpx.Response, base_url: str, what: str) -> HistoryError:
    """A refusal from the relay in words a console user can act on."""
    status = resp.status_code
    message = _relay_message(resp)
    if status == 401:
        return HistoryError(TOKEN_REFUSED, status=status)
    if status == 403:
        return HistoryError(LOOPBACK_ONLY, status=status)
    if status == 503:
        return HistoryError(STORE_DOWN, status=status)
    if message is None:
        if status == 404:
            return HistoryError(
                f"The relay at {base_url} has no history API (an older version?): update it.",
                status=status,
            )
        return HistoryError(
            f"The relay answered {what} with HTTP {status}: see the relay's log.", status=status
        )
    if status == 413:
        return HistoryError(
            "Too large for the relay (over 256 KiB): shorten the instructions or the tools.",
            status=status,
        )
    if status in (400, 404):
        field, text = field_error(message)
        return HistoryError(text, status=status, field=field)
    return HistoryError(f"The relay could not {what}: {_sentence(message)}", status=status)


def unreachable(exc: httpx.HTTPError, base_url: str) -> HistoryError:
    if isinstance(exc, httpx.TimeoutException):
        return HistoryError(f"The relay at {base_url} did not answer in time; try again.")
    return HistoryError(
        f"Cannot reach the relay at {base_url} ({exc.__class__.__name__}): is it running?"
    )


# --- the client ------------------------------------------------------------------------


class HistoryClient:
    def __init__(self, http: httpx.AsyncClient, base_url: str, token: Secret) -> None:
        self._http = http
        self.base_url = base_url.rstrip("/")
        self._token = token

    def _headers(self) -> dict[str, str]:
        headers = {"ngrok-skip-browser-warning": "1"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token.get()}"
        return headers

    async def _request(
        self,
        method: str,
        path: str,
        what: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> httpx.Response:
        try:
            resp = await self._http.request(
                method,
                self.base_url + path,
                params=params,
                json=body,
                headers=self._headers(),
                timeout=TIMEOUT_S,
            )
        except httpx.HTTPError as exc:
            raise unreachable(exc, self.base_url) from None
        if resp.status_code >= 400:
            raise plain_error(resp, self.base_url, what)
        return resp

    async def _json(
        self,
        method: str,
        path: str,
        what: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> dict[str, Any]:
        resp = await self._request(method, path, what, params=params, body=body)
        try:
            data = resp.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise HistoryError(
                f"{self.base_url} answered {what} with something that is not the relay's JSON "
                "(is RELAY_URL the relay?)."
            )
        return data

    # --- calls ---------------------------------------------------------------------------

    async def calls(
        self, where: CallFilter, cursor: str | None = None, limit: int = PAGE_SIZE
    ) -> CallPage:
        params = {**where.params(), "limit": str(limit)}
        if cursor:
            params["cursor"] = cursor
        data = await self._json("GET", "/api/calls", "the call list", params=params)
        calls = [c for c in data.get("calls") or [] if isinstance(c, dict)]
        next_cursor = data.get("next_cursor")
        return CallPage(calls, str(next_cursor) if next_cursor else None)

    async def call(self, call_sid: str) -> dict[str, Any]:
        try:
            return await self._json("GET", f"/api/calls/{_seg(call_sid)}", "the call")
        except HistoryError as exc:
            raise _missing(exc, call_sid) from None

    async def note_recording(self, call_sid: str, recording_sid: str) -> None:
        """Tell the relay a recording of this call started, so its record keeps the SID."""
        await self._request(
            "POST",
            f"/api/calls/{_seg(call_sid)}/recordings",
            "the recording",
            body={"recording_sid": recording_sid},
        )

    async def export_call(self, call_sid: str, fmt: str) -> bytes:
        """One call: its record (JSON) or its transcript and tool calls (CSV)."""
        params = {"format": "csv"} if fmt == "csv" else None
        try:
            resp = await self._request(
                "GET", f"/api/calls/{_seg(call_sid)}", "the export", params=params
            )
        except HistoryError as exc:
            raise _missing(exc, call_sid) from None
        return resp.content

    async def export_calls(self, where: CallFilter, fmt: str) -> ExportPages:
        """A list export with its first page fetched (so a refusal is known before anything
        is sent); iterate the result for the whole file, bytes as they come."""
        pages = ExportPages(self, where, fmt)
        await pages.start()
        return pages

    # --- profiles ------------------------------------------------------------------------

    async def profiles(self) -> ProfileBook:
        data = await self._json("GET", "/api/profiles", "the profiles")
        numbers = data.get("numbers") or {}
        return ProfileBook(
            profiles=[p for p in data.get("profiles") or [] if isinstance(p, dict)],
            default=str(data["default"]) if data.get("default") else None,
            numbers={str(k): str(v) for k, v in numbers.items()},
        )

    async def save_profile(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._json("PUT", f"/api/profiles/{_seg(name)}", "save the profile", body=body)

    async def delete_profile(self, name: str) -> None:
        await self._request("DELETE", f"/api/profiles/{_seg(name)}", "delete the profile")

    async def map_number(self, number: str, profile: str) -> str:
        try:
            data = await self._json(
                "PUT", f"/api/numbers/{_seg(number)}", "map the number", body={"profile": profile}
            )
        except HistoryError as exc:
            if exc.status == 404:  # the only 404 here: the profile went away meanwhile
                raise HistoryError(
                    f"There is no profile named {profile!r} (deleted meanwhile?).",
                    status=404,
                    field="profile",
                ) from None
            raise HistoryError(str(exc), status=exc.status, field="number") from None
        return str(data.get("number") or number)

    async def unmap_number(self, number: str) -> None:
        try:
            await self._request("DELETE", f"/api/numbers/{_seg(number)}", "remove the number")
        except HistoryError as exc:
            if exc.status != 404:  # already gone: what was asked for
                raise

    async def set_default(self, profile: str | None) -> None:
        try:
            await self._json(
                "PUT", "/api/default-profile", "set the default", body={"profile": profile}
            )
        except HistoryError as exc:
            if exc.status == 404:
                raise HistoryError(
                    f"There is no profile named {profile!r} (deleted meanwhile?).",
                    status=404,
                    field="default",
                ) from None
            raise


def _missing(exc: HistoryError, call_sid: str) -> HistoryError:
    if exc.status != 404:
        return exc
    return HistoryError(
        f"No call {call_sid} in the history: calls are saved when they end, and those "
        "older than RELAY_HISTORY_DAYS are deleted.",
        status=404,
    )


def _seg(value: str) -> str:
    """One URL path segment (a profile name may hold spaces; a number its '+')."""
    return quote(value, safe="+")


class ExportPages:
    """A list export, page by page, as one file: CSV rows under one header, or
    {"calls": [...]} for JSON. Stops at EXPORT_MAX calls."""

    def __init__(self, client: HistoryClient, where: CallFilter, fmt: str) -> None:
        self._client = client
        self._params = where.params()
        self.fmt = fmt
        self._first: httpx.Response | None = None

    async def _page(self, cursor: str | None) -> httpx.Response:
        limit = CSV_PAGE if self.fmt == "csv" else JSON_PAGE
        params = {**self._params, "limit": str(limit)}
        if self.fmt == "csv":
            params["format"] = "csv"
        if cursor:
            params["cursor"] = cursor
        return await self._client._request("GET", "/api/calls", "the export", params=params)

    async def start(self) -> None:
        self._first = await self._page(None)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        resp = self._first or await self._page(None)
        sent = 0
        if self.fmt == "json":
            yield b'{"calls": ['
        while True:
            if self.fmt == "csv":
                text = resp.text
                if sent:  # later pages repeat the header line
                    text = text.partition("\r\n")[2]
                rows = text.count("\r\n") - (0 if sent else 1)  # an estimate, for the cap
                yield text.encode()
                cursor = resp.headers.get("X-Next-Cursor")
            else:
                data = resp.json()
                calls = data.get("calls") or []
                for c in calls:
                    yield (b"," if sent else b"") + _dumps(c)
                    sent += 1
                rows = 0
                cursor = data.get("next_cursor")
            sent += rows
            if not cursor or sent >= EXPORT_MAX:
                break
            resp = await self._page(str(cursor))
        if self.fmt == "json":
            more = b"true" if cursor and sent >= EXPORT_MAX else b"false"
            yield b'], "truncated": ' + more + b"}"


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


@asynccontextmanager
async def history(settings: ConsoleSettings) -> AsyncIterator[HistoryClient]:
    """A client for one action (the console backend holds no connection between them)."""
    async with httpx.AsyncClient() as http:
        yield HistoryClient(http, settings.relay_url, settings.console_token)


def export_query(where: CallFilter) -> str:
    """The filter as a canonical query string (sorted), for signed export links."""
    return urlencode(sorted(where.as_dict().items()))
