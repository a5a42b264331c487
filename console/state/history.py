"""The History view (calls from the relay's store, filtered, page by page) and one call's
detail. The relay is asked from the backend (console/history.py); the page gets rows of
strings and signed export links. Fetches run as background events, so a slow relay never
holds up the live feed of the same browser."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import reflex as rx

from console import export, media
from console import settings as console_settings
from console.calls import END_REASONS
from console.history import END_REASON_CODES, CallFilter, HistoryError, history
from console.history_view import CallDetail, call_row, detail, zone
from console.recording import RECORDER
from console.state.auth import AuthState

MISSING_RETRIES_S = (0.5, 1.0, 1.5)  # before saying a call is not in the history
ANY = "any"  # "no filter" in a select (a select cannot hold "")
REASON_CHOICES = [ANY, *END_REASON_CODES]


def _filter_from_form(form: dict[str, Any]) -> CallFilter:
    return CallFilter.from_mapping({k: "" if v == ANY else str(v) for k, v in form.items()})


class HistoryState(AuthState):
    filters: dict[str, str] = {}  # the applied filter (CallFilter.as_dict())
    form_key: int = 0  # a new key remounts the filter form (Clear empties its fields)
    rows: list[dict[str, str]] = []
    next_cursor: str = ""
    loading: bool = False
    error: str = ""
    error_field: str = ""  # the filter field the error is about
    profile_names: list[str] = [ANY]
    csv_path: str = ""
    json_path: str = ""
    time_zone: str = ""
    loaded_once: bool = False

    @rx.var
    def reason_labels(self) -> dict[str, str]:
        return {ANY: "any end reason", **END_REASONS}

    @rx.var
    def form_values(self) -> dict[str, str]:
        """The filter form's fields as applied (selects show "any" for no filter)."""
        values = {name: "" for name in ("text", "number", "since", "until")}
        values.update(end_reason=ANY, profile=ANY)
        return {**values, **self.filters}

    @rx.var
    def filtered(self) -> bool:
        return bool(self.filters)

    def _links(self, where: CallFilter) -> None:
        password, now = console_settings.get().password, time.time()
        self.csv_path = export.calls_path(password, where, "csv", now)
        self.json_path = export.calls_path(password, where, "json", now)

    async def _fetch(self, cursor: str) -> None:
        """The first page (cursor "") or the next one; rows replace or extend the table."""
        async with self:
            if not self.authed():
                return
            where = CallFilter.from_mapping(self.filters)
            self.loading = True
        settings = console_settings.get()
        rows: list[dict[str, str]] = []
        names: list[str] | None = None
        error, field, next_cursor = "", "", ""
        try:
            async with history(settings) as relay:
                page = await relay.calls(where, cursor or None)
                rows = [call_row(c) for c in page.calls]
                next_cursor = page.next_cursor or ""
                if not cursor:  # the profile filter's choices, fresh with each search
                    book = await relay.profiles()
                    names = [str(p.get("name")) for p in book.profiles if p.get("name")]
        except HistoryError as exc:
            error, field = str(exc), exc.field
        async with self:
            self.loading, self.loaded_once = False, True
            self.error, self.error_field = error, field
            self.time_zone = zone()
            if error:
                return
            self.rows = [*self.rows, *rows] if cursor else rows
            self.next_cursor = next_cursor
            if names is not None:
                self.profile_names = [ANY, *names]
            self._links(where)

    @rx.event(background=True)
    async def load(self) -> None:
        await self._fetch("")

    @rx.event(background=True)
    async def search(self, form: dict[str, Any]) -> None:
        async with self:
            self.filters = _filter_from_form(form).as_dict()
        await self._fetch("")

    @rx.event(background=True)
    async def clear(self) -> None:
        async with self:
            self.filters = {}
            self.form_key += 1
        await self._fetch("")

    @rx.event(background=True)
    async def load_more(self) -> None:
        async with self:
            cursor = self.next_cursor
        if cursor:
            await self._fetch(cursor)


async def _fetch_call(sid: str) -> tuple[dict[str, Any] | None, str]:
    """The call's record, or (None, why not). A call that just ended may not be written
    yet (the relay queues its writes): a missing one is asked for again for a few seconds."""
    settings = console_settings.get()
    for wait in (*MISSING_RETRIES_S, None):
        try:
            async with history(settings) as relay:
                return await relay.call(sid), ""
        except HistoryError as exc:
            if exc.status != 404 or wait is None:
                return None, str(exc)
        await asyncio.sleep(wait)
    return None, ""  # not reached: the last try returns


class CallDetailState(AuthState):
    sid: str = ""
    loading: bool = False
    error: str = ""
    facts: list[dict[str, str]] = []
    end: str = ""
    lines: list[dict[str, str]] = []
    tools: list[dict[str, str]] = []
    latency: list[dict[str, str]] = []
    latency_p50: str = ""
    latency_p95: str = ""
    usage: list[dict[str, str]] = []
    cost: str = ""
    changes: list[dict[str, str]] = []
    recordings: list[dict[str, str]] = []
    csv_path: str = ""
    json_path: str = ""

    @rx.event(background=True)
    async def load(self) -> None:
        async with self:
            if not self.authed():
                return
            sid = str(self.router.page.params.get("call_sid") or "")
            # Another call's detail must not show while this one loads.
            self._show(None)
            self.sid, self.loading, self.error = sid, True, ""
        record, error = await _fetch_call(sid)
        async with self:
            if self.sid != sid:
                return  # the user moved on to another call meanwhile
            self.loading, self.error = False, error
            if record is not None:
                self._show(record)

    def _show(self, record: dict[str, Any] | None) -> None:
        d = detail(record) if record is not None else CallDetail()
        self.facts, self.end, self.lines, self.tools = d.facts, d.end, d.lines, d.tools
        self.latency, self.latency_p50, self.latency_p95 = d.latency, d.latency_p50, d.latency_p95
        self.usage, self.cost, self.changes = d.usage, d.cost, d.changes
        password, now = console_settings.get().password, time.time()
        sids = list(d.recording_sids)
        known = RECORDER.get(self.sid)  # one this console started, if the record lacks it
        if record is not None and known is not None and known.recording_sid not in ("", *sids):
            sids.append(known.recording_sid)
        self.recordings = [{"sid": s, "path": media.signed_path(password, s, now)} for s in sids]
        self.csv_path = export.call_path(password, self.sid, "csv", now) if record else ""
        self.json_path = export.call_path(password, self.sid, "json", now) if record else ""
