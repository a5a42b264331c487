"""History exports through the console backend: the page gets short-lived signed links
(made only for a logged-in session, keyed by the console password, as recordings are),
the backend fetches from the relay with the console token and streams the file.

    /_console/export/calls.csv?<filter>&e=<expires>&s=<sig>     the filtered list
    /_console/export/call/<CallSid>.json?e=&s=                  one call (.csv: its turns)
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import AsyncIterator

import httpx
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from console import settings as console_settings
from console.history import CallFilter, HistoryClient, HistoryError, export_query
from shared.secret import Secret

PREFIX = "/_console/export"
TTL_S = 12 * 3600  # as long as a login: the links sit on a page that may stay open
FORMATS = ("csv", "json")
MEDIA = {"csv": "text/csv; charset=utf-8", "json": "application/json"}
CALL_SID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _sig(password: Secret, what: str, expires: int) -> str:
    key = hmac.new(password.get().encode(), b"export-url", hashlib.sha256).digest()
    return hmac.new(key, f"{what}:{expires}".encode(), hashlib.sha256).hexdigest()


def _signed(password: Secret, path: str, query: str, now: float) -> str:
    expires = int(now) + TTL_S
    sig = _sig(password, f"{path}?{query}", expires)
    return f"{path}?{query + '&' if query else ''}e={expires}&s={sig}"


def calls_path(password: Secret, where: CallFilter, fmt: str, now: float) -> str:
    return _signed(password, f"{PREFIX}/calls.{fmt}", export_query(where), now)


def call_path(password: Secret, call_sid: str, fmt: str, now: float) -> str:
    return _signed(password, f"{PREFIX}/call/{call_sid}.{fmt}", "", now)


def verify(password: Secret, what: str, expires: str, sig: str, now: float) -> bool:
    if not password or not expires.isdigit():
        return False
    good = hmac.compare_digest(_sig(password, what, int(expires)), sig)
    return good and int(expires) > now


def _checked(request: Request, path: str, query: str) -> Response | None:
    """None if the link is genuine and current, else the refusal."""
    q = request.query_params
    password = console_settings.get().password
    if not verify(password, f"{path}?{query}", q.get("e", ""), q.get("s", ""), time.time()):
        return Response(
            "This export link is not valid or has expired: reload the console page and "
            "export again.",
            status_code=403,
            media_type="text/plain",
        )
    return None


def _refused(exc: HistoryError) -> Response:
    status = 400 if exc.field else exc.status if exc.status in (400, 404, 503) else 502
    return Response(str(exc), status_code=status, media_type="text/plain")


def _attachment(name: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"}


async def export_calls(request: Request) -> Response:
    fmt = request.path_params["fmt"]
    if fmt not in FORMATS:
        return Response("unknown format", status_code=404)
    where = CallFilter.from_mapping(request.query_params)
    refusal = _checked(request, f"{PREFIX}/calls.{fmt}", export_query(where))
    if refusal is not None:
        return refusal
    settings = console_settings.get()
    http = httpx.AsyncClient()
    client = HistoryClient(http, settings.relay_url, settings.console_token)
    try:
        pages = await client.export_calls(where, fmt)
    except HistoryError as exc:
        await http.aclose()
        return _refused(exc)

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in pages:
                yield chunk
        finally:
            await http.aclose()

    return StreamingResponse(
        body(),
        media_type=MEDIA[fmt],
        headers=_attachment(f"calls.{fmt}"),
    )


async def export_call(request: Request) -> Response:
    sid, fmt = request.path_params["sid"], request.path_params["fmt"]
    if fmt not in FORMATS or not CALL_SID.match(sid):
        return Response("not found", status_code=404)
    refusal = _checked(request, f"{PREFIX}/call/{sid}.{fmt}", "")
    if refusal is not None:
        return refusal
    settings = console_settings.get()
    async with httpx.AsyncClient() as http:
        client = HistoryClient(http, settings.relay_url, settings.console_token)
        try:
            content = await client.export_call(sid, fmt)
        except HistoryError as exc:
            return _refused(exc)
    return Response(content, media_type=MEDIA[fmt], headers=_attachment(f"{sid}.{fmt}"))


routes = [
    Route(PREFIX + "/calls.{fmt}", export_calls),
    Route(PREFIX + "/call/{sid}.{fmt}", export_call),
]
