"""The console's history client and export route against the relay's real history API
(relay/history_api.py on a SQLite store in a temporary folder, on a loopback port), and
the relay's refusals in plain words (respx)."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from typing import Any

import httpx
import pytest
import respx
from aiohttp import web
from aiohttp.test_utils import TestServer
from starlette.applications import Starlette

from console import export, history
from console import settings as console_settings
from console.history import CallFilter, HistoryClient, HistoryError
from console.settings import ConsoleSettings
from relay.history_api import add_routes
from relay.store import CallRecord, EndReason, Store, ToolCall, Turn, from_env
from shared.secret import Secret

TOKEN = Secret("console-token-for-tests")
PW = Secret("console-password")
# Yesterday noon, local time: the filter's days are local days.
_yesterday = date.today() - timedelta(days=1)
NOON = datetime(_yesterday.year, _yesterday.month, _yesterday.day, 12).timestamp()


def record(i: int, **extra: Any) -> CallRecord:
    fields: dict[str, Any] = {
        "call_sid": f"CA{i:032x}",
        "started_at": NOON + i * 60,
        "answered_at": NOON + i * 60 + 1,
        "ended_at": NOON + i * 60 + 31,
        "from_": f"+1555000{i:04d}",
        "to": "+15559990000",
        "end_reason": EndReason.ERROR if i % 4 == 0 else EndReason.CALLER_HUNG_UP,
        "profile": "sales" if i % 2 else None,
        "model": "gpt-realtime",
        "turns": [
            Turn(role="user", text=f"question number {i}", at=NOON + i * 60 + 2),
            Turn(role="assistant", text="answer", at=NOON + i * 60 + 4),
        ],
        "tool_calls": [
            ToolCall(call_id="c1", name="lookup", arguments="{}", output="ok", at=NOON + i * 60 + 3)
        ],
    }
    fields.update(extra)
    return CallRecord(**fields)


@pytest.fixture
async def relay(tmp_path: Any) -> AsyncIterator[tuple[Store, str]]:
    store = await Store.open(from_env({"RELAY_DATA_DIR": str(tmp_path)}))
    app = web.Application()
    add_routes(app, store, TOKEN)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield store, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()
        await store.close()


@pytest.fixture
async def client(relay: tuple[Store, str]) -> AsyncIterator[HistoryClient]:
    async with httpx.AsyncClient() as http:
        yield HistoryClient(http, relay[1], TOKEN)


async def seed(store: Store, n: int) -> list[CallRecord]:
    records = [record(i) for i in range(n)]
    for r in records:
        store.submit(r)
    assert await store.flush(10)
    return records


def test_the_filter_in_the_relays_words() -> None:
    f = CallFilter.from_mapping(
        {"text": " refund ", "number": "+1 555", "since": "2025-01-30", "until": "2025-01-31"}
    )
    params = f.params()
    assert params["q"] == "refund" and params["number"] == "+1 555"
    # The days are local; "until" includes its whole day.
    assert float(params["since"]) == datetime(2025, 1, 30).timestamp()
    assert float(params["until"]) == datetime(2025, 2, 1).timestamp()
    assert CallFilter.from_mapping({"bogus": "x"}) == CallFilter()
    assert CallFilter(end_reason="agent_ended", profile="sales").params() == {
        "end_reason": "agent_ended",
        "profile": "sales",
    }
    for bad, field in (
        (CallFilter(since="yesterday"), "since"),
        (CallFilter(since="2025-02-02", until="2025-02-01"), "until"),
        (CallFilter(end_reason="bored"), "end_reason"),
    ):
        with pytest.raises(HistoryError) as err:
            bad.params()
        assert err.value.field == field
    with pytest.raises(HistoryError, match="expected a date like 2025-01-31"):
        CallFilter(since="1/31").params()


async def test_pages_newest_first_with_a_cursor(
    relay: tuple[Store, str], client: HistoryClient
) -> None:
    records = await seed(relay[0], 7)
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = await client.calls(CallFilter(), cursor, limit=3)
        seen += [c["call_sid"] for c in page.calls]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [r.call_sid for r in reversed(records)]


async def test_filters_reach_the_relay(relay: tuple[Store, str], client: HistoryClient) -> None:
    records = await seed(relay[0], 8)

    async def sids(**kw: str) -> list[str]:
        return sorted(c["call_sid"] for c in (await client.calls(CallFilter(**kw))).calls)

    assert await sids(text="NUMBER 5") == [records[5].call_sid]
    assert await sids(number="+1 (555) 000-0003") == [records[3].call_sid]
    assert await sids(end_reason="error") == [records[0].call_sid, records[4].call_sid]
    assert await sids(profile="sales", end_reason="error") == []
    assert len(await sids(profile="sales")) == 4
    day = _yesterday.isoformat()
    assert len(await sids(since=day, until=day)) == 8
    assert await sids(since=(_yesterday + timedelta(days=1)).isoformat()) == []
    assert await sids(until=(_yesterday - timedelta(days=1)).isoformat()) == []


async def test_one_call_and_a_missing_one(relay: tuple[Store, str], client: HistoryClient) -> None:
    records = await seed(relay[0], 2)
    call = await client.call(records[1].call_sid)
    assert call["turns"][0]["text"] == "question number 1"
    with pytest.raises(HistoryError) as err:
        await client.call("CA-not-there")
    assert err.value.status == 404
    assert "No call CA-not-there in the history" in str(err.value)
    assert "saved when they end" in str(err.value)


async def test_profiles_numbers_and_the_default(client: HistoryClient) -> None:
    saved = await client.save_profile("sales desk", {"voice": "cedar", "greeting": ""})
    assert saved["name"] == "sales desk" and saved["voice"] == "cedar"

    for body, field, words in (
        ({"voice": "robot"}, "voice", "Voice:"),
        ({"turn_detection": {"type": "psychic"}}, "turn_detection", "Turn detection"),
        ({"tools": "lookup"}, "tools", "Tools: expected a list"),
        ({"greeting": "x" * 4001}, "greeting", "Greeting: at most 4000"),
    ):
        with pytest.raises(HistoryError) as err:
            await client.save_profile("bad", body)
        assert err.value.status == 400, body
        assert err.value.field == field, (body, str(err.value))
        assert str(err.value).startswith(words), str(err.value)
        assert "`" not in str(err.value) and "$." not in str(err.value)

    number = await client.map_number("+1 (555) 999-0000", "sales desk")
    assert number == "+15559990000"
    with pytest.raises(HistoryError) as err:
        await client.map_number("hello", "sales desk")
    assert err.value.field == "number" and "E.164" in str(err.value)
    with pytest.raises(HistoryError) as err:
        await client.map_number("+15559990001", "ghost")
    assert err.value.field == "profile" and "no profile named 'ghost'" in str(err.value)

    await client.set_default("sales desk")
    book = await client.profiles()
    assert [p["name"] for p in book.profiles] == ["sales desk"]
    assert book.default == "sales desk"
    assert book.numbers == {"+15559990000": "sales desk"}
    with pytest.raises(HistoryError) as err:
        await client.set_default("ghost")
    assert err.value.field == "default"

    await client.unmap_number("+15559990000")
    await client.unmap_number("+15559990000")  # already gone: fine
    await client.delete_profile("sales desk")
    book = await client.profiles()
    assert book.profiles == [] and book.default is None and book.numbers == {}
    with pytest.raises(HistoryError) as err:
        await client.delete_profile("sales desk")
    assert err.value.status == 404


async def test_a_wrong_token_says_what_to_set(relay: tuple[Store, str]) -> None:
    async with httpx.AsyncClient() as http:
        client = HistoryClient(http, relay[1], Secret("wrong"))
        with pytest.raises(HistoryError) as err:
            await client.calls(CallFilter())
    assert err.value.status == 401
    assert "RELAY_CONSOLE_TOKEN" in str(err.value) and "wrong" not in str(err.value)


@respx.mock
async def test_refusals_in_plain_words() -> None:
    base = "http://relay.test"
    route = respx.get(f"{base}/api/calls")
    async with httpx.AsyncClient() as http:
        client = HistoryClient(http, base, TOKEN)

        async def refusal(resp: httpx.Response | Exception) -> HistoryError:
            if isinstance(resp, Exception):
                route.mock(side_effect=resp)
            else:
                route.mock(return_value=resp)
            with pytest.raises(HistoryError) as err:
                await client.calls(CallFilter())
            return err.value

        down = await refusal(httpx.Response(503, json={"error": "the history store is ..."}))
        assert str(down) == history.STORE_DOWN
        assert "database is unavailable right now" in str(down)
        assert "loopback" not in str(await refusal(httpx.Response(403, json={"error": "x"})))
        assert "RELAY_CONSOLE_TOKEN is unset" in str(
            await refusal(httpx.Response(403, json={"error": "x"}))
        )
        old = await refusal(httpx.Response(404, text="404: Not Found"))
        assert "has no history API" in str(old)
        assert "see the relay's log" in str(await refusal(httpx.Response(500, text="boom")))
        page = await refusal(httpx.Response(200, text="<html>ngrok</html>"))
        assert "not the relay's JSON" in str(page)
        gone = await refusal(httpx.ConnectError("refused"))
        assert "Cannot reach the relay at http://relay.test" in str(gone)
        slow = await refusal(httpx.ReadTimeout("slow"))
        assert "did not answer in time" in str(slow)
    assert route.calls.last.request.headers["Authorization"] == f"Bearer {TOKEN.get()}"


def test_field_errors_name_the_form_field() -> None:
    assert history.field_error("voice: 'robot' is not one of alloy, ash") == (
        "voice",
        "Voice: 'robot' is not one of alloy, ash.",
    )
    assert history.field_error("Expected `array`, got `str` - at `$.tools`") == (
        "tools",
        "Tools: expected a list, got text.",
    )
    assert history.field_error("tools[0].name: a function tool needs a name") == (
        "tools",
        "Tools (tool 1, name): a function tool needs a name.",
    )
    assert history.field_error("Object contains unknown field `colour`") == (
        "",
        "Object contains unknown field `colour`.",
    )


# --- the export route ------------------------------------------------------------------


@pytest.fixture
def console_env(relay: tuple[Store, str], monkeypatch: pytest.MonkeyPatch) -> None:
    settings = ConsoleSettings(relay_url=relay[1], console_token=TOKEN, password=PW)
    monkeypatch.setattr(console_settings, "_cached", settings)


@pytest.fixture
async def console(console_env: None) -> AsyncIterator[httpx.AsyncClient]:
    app = Starlette(routes=export.routes)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://console"
    ) as c:
        yield c


async def test_list_export_pages_through_the_relay_as_one_file(
    relay: tuple[Store, str], console: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = await seed(relay[0], 7)
    monkeypatch.setattr(history, "CSV_PAGE", 3)  # three pages from the relay, one file
    monkeypatch.setattr(history, "JSON_PAGE", 2)
    where = CallFilter(profile="sales")
    resp = await console.get(export.calls_path(PW, where, "csv", time.time()))
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-disposition"] == 'attachment; filename="calls.csv"'
    assert TOKEN.get() not in resp.text
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    assert [r["call_sid"] for r in rows] == [records[i].call_sid for i in (5, 3, 1)]

    resp = await console.get(export.calls_path(PW, CallFilter(), "csv", time.time()))
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    assert [r["call_sid"] for r in rows] == [r.call_sid for r in reversed(records)]
    assert resp.text.count("call_sid") == 1  # one header line

    resp = await console.get(export.calls_path(PW, CallFilter(), "json", time.time()))
    data = json.loads(resp.text)
    assert [c["call_sid"] for c in data["calls"]] == [r.call_sid for r in reversed(records)]
    assert data["truncated"] is False


async def test_one_call_export_and_forged_or_old_links(
    relay: tuple[Store, str], console: httpx.AsyncClient
) -> None:
    records = await seed(relay[0], 1)
    sid = records[0].call_sid
    resp = await console.get(export.call_path(PW, sid, "json", time.time()))
    assert resp.status_code == 200 and json.loads(resp.text)["call_sid"] == sid
    resp = await console.get(export.call_path(PW, sid, "csv", time.time()))
    assert resp.headers["content-disposition"] == f'attachment; filename="{sid}.csv"'
    assert [r["kind"] for r in csv.DictReader(io.StringIO(resp.text))] == ["turn", "tool", "turn"]

    missing = await console.get(export.call_path(PW, "CA-gone", "csv", time.time()))
    assert missing.status_code == 404 and "No call CA-gone" in missing.text

    # A link is bound to its filter, its signer and its time.
    path = export.calls_path(PW, CallFilter(profile="sales"), "csv", time.time())
    for forged in (
        path.replace("profile=sales", "profile=support"),
        export.calls_path(Secret("other"), CallFilter(), "csv", time.time()),
        export.calls_path(PW, CallFilter(), "csv", time.time() - export.TTL_S - 1),
        export.call_path(PW, sid, "json", time.time()).replace(".json", ".csv"),
        f"{export.PREFIX}/calls.csv",
    ):
        resp = await console.get(forged)
        assert resp.status_code == 403, forged
        assert "export again" in resp.text


async def test_an_export_refused_by_the_relay_says_why(
    console: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        console_settings,
        "_cached",
        ConsoleSettings(relay_url="http://127.0.0.1:9", console_token=TOKEN, password=PW),
    )
    resp = await console.get(export.calls_path(PW, CallFilter(), "csv", time.time()))
    assert resp.status_code == 502 and "Cannot reach the relay" in resp.text
