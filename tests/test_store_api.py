"""The history API on a real store (SQLite and PostgreSQL), through aiohttp's test client:
the console token, the call list with its cursor, filters and CSV, one call, profiles and
number mappings, the default profile, and the console's saved defaults."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import AsyncIterator
from unittest import mock

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from relay.history_api import add_routes
from relay.store import CallRecord, EndReason, Store, ToolCall, Turn, from_env
from shared.secret import Secret

TOKEN = "console-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NOW = float(int(time.time()) - 3600)


@pytest.fixture
async def store(store_env: dict[str, str]) -> AsyncIterator[Store]:
    s = await Store.open(from_env(store_env))
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def client(store: Store) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = web.Application()
    add_routes(app, store, Secret(TOKEN))
    async with TestClient(TestServer(app)) as c:
        yield c


async def seed(store: Store, n: int = 12) -> list[CallRecord]:
    records = [
        CallRecord(
            call_sid=f"CA{i:02d}",
            started_at=NOW + i * 60,
            ended_at=NOW + i * 60 + 30,
            from_=f"+1555000{i:04d}",
            to="+15559990000",
            end_reason=EndReason.ERROR if i % 4 == 0 else EndReason.CALLER_HUNG_UP,
            profile="sales" if i % 2 else None,
            turns=[
                Turn(role="user", text=f"question number {i}", at=NOW + i * 60 + 1),
                Turn(
                    role="assistant",
                    text="=HYPERLINK(evil)" if i == 3 else "answer",
                    at=NOW + i * 60 + 3,
                ),
            ],
            tool_calls=[
                ToolCall(
                    call_id="c1", name="lookup", arguments="{}", output="ok", at=NOW + i * 60 + 2
                )
            ],
        )
        for i in range(n)
    ]
    for r in records:
        store.submit(r)
    assert await store.flush(10)
    return records


async def test_every_route_needs_the_console_token(
    client: TestClient[web.Request, web.Application],
) -> None:
    for path in ("/api/calls", "/api/calls/CA1", "/api/profiles", "/api/settings/defaults"):
        assert (await client.get(path)).status == 401
        resp = await client.get(path, headers={"Authorization": "Bearer wrong"})
        assert resp.status == 401 and "console token" in (await resp.json())["error"]
    assert (await client.put("/api/profiles/x", json={})).status == 401
    assert (await client.get("/api/calls", headers=AUTH)).status == 200


async def test_without_a_token_only_loopback_is_served(store: Store) -> None:
    app = web.Application()
    add_routes(app, store, Secret(""))
    async with TestClient(TestServer(app)) as c:  # the test client is on 127.0.0.1
        assert (await c.get("/api/calls")).status == 200
    handler = next(
        r for r in app.router.routes() if r.resource and r.resource.canonical == "/api/calls"
    )
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda key, default=None: (
        ("203.0.113.9", 40000) if key == "peername" else default
    )
    request = make_mocked_request("GET", "/api/calls", app=app, transport=transport)
    resp = await handler.handler(request)
    assert resp.status == 403


async def test_the_call_list_pages_filters_and_exports(
    store: Store, client: TestClient[web.Request, web.Application]
) -> None:
    records = await seed(store)
    newest_first = [r.call_sid for r in reversed(records)]

    seen: list[str] = []
    url = "/api/calls?limit=5"
    while True:
        resp = await client.get(url, headers=AUTH)
        assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
        page = await resp.json()
        seen += [c["call_sid"] for c in page["calls"]]
        if page["next_cursor"] is None:
            break
        url = f"/api/calls?limit=5&cursor={page['next_cursor']}"
    assert seen == newest_first

    first = (await (await client.get("/api/calls?limit=1", headers=AUTH)).json())["calls"][0]
    assert set(first) == {
        "call_sid", "started_at", "direction", "from", "to", "answered_at", "ended_at",
        "duration_s", "end_reason", "end_reason_text", "profile", "model", "voice", "turns",
        "tool_calls", "total_tokens", "cost_usd",
    }  # fmt: skip
    assert first["turns"] == 2 and first["duration_s"] == 30

    async def sids(query: str) -> list[str]:
        resp = await client.get(f"/api/calls?{query}", headers=AUTH)
        assert resp.status == 200, await resp.text()
        return sorted(c["call_sid"] for c in (await resp.json())["calls"])

    assert await sids("q=NUMBER%2011") == ["CA11"]
    assert await sids("number=%2B1%20555%20000%200007") == ["CA07"]
    assert await sids("end_reason=error") == ["CA00", "CA04", "CA08"]
    assert await sids("end_reason=error&profile=sales") == []
    assert await sids(f"since={NOW + 600}&until={NOW + 720}") == ["CA10", "CA11"]
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW + 600))
    assert await sids(f"since={iso}") == ["CA10", "CA11"]

    resp = await client.get("/api/calls?format=csv&profile=sales", headers=AUTH)
    assert resp.status == 200 and resp.content_type == "text/csv"
    assert "attachment" in resp.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(await resp.text())))
    assert [r["call_sid"] for r in rows] == ["CA11", "CA09", "CA07", "CA05", "CA03", "CA01"]
    assert rows[0]["from"] == "+15550000011"  # a number keeps its +
    resp = await client.get("/api/calls?format=csv&limit=2", headers=AUTH)
    assert resp.headers["X-Next-Cursor"]


async def test_bad_list_parameters_are_refused_with_a_reason(
    client: TestClient[web.Request, web.Application],
) -> None:
    for query, words in (
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=ten", "limit"),
        ("since=yesterday", "since"),
        ("end_reason=bored", "caller_hung_up"),
        ("cursor=garbage", "cursor"),
        ("format=xml", "format"),
        ("q=" + "x" * 201, "q"),
    ):
        resp = await client.get(f"/api/calls?{query}", headers=AUTH)
        assert resp.status == 400, query
        assert words in (await resp.json())["error"], query


async def test_one_call_in_json_and_csv(
    store: Store, client: TestClient[web.Request, web.Application]
) -> None:
    await seed(store, 4)
    resp = await client.get("/api/calls/CA03", headers=AUTH)
    assert resp.status == 200
    call = await resp.json()
    assert call["call_sid"] == "CA03" and call["from"] == "+15550000003"
    assert [t["text"] for t in call["turns"]] == ["question number 3", "=HYPERLINK(evil)"]
    assert call["tool_calls"][0]["name"] == "lookup"

    resp = await client.get("/api/calls/CA03?format=csv", headers=AUTH)
    rows = list(csv.DictReader(io.StringIO(await resp.text())))
    assert [(r["kind"], r["role"] or r["tool"]) for r in rows] == [
        ("turn", "user"),
        ("tool", "lookup"),
        ("turn", "assistant"),
    ]
    assert rows[2]["text"] == "'=HYPERLINK(evil)"  # a spreadsheet shows it, never runs it

    resp = await client.get("/api/calls/CA-nope", headers=AUTH)
    assert resp.status == 404 and "CA-nope" in (await resp.json())["error"]


async def test_profiles_numbers_and_the_default(
    store: Store, client: TestClient[web.Request, web.Application]
) -> None:
    sales = {
        "instructions": "You sell things.",
        "voice": "cedar",
        "model": "gpt-realtime",
        "greeting": "Say hello and offer help with an order.",
        "tools": [{"name": "check_stock", "parameters": {"type": "object"}}],
        "turn_detection": {"type": "server_vad", "silence_duration_ms": 400},
    }
    resp = await client.put("/api/profiles/sales", json=sales, headers=AUTH)
    assert resp.status == 200, await resp.text()
    saved = await resp.json()
    assert saved["name"] == "sales" and saved["tools"][0]["type"] == "function"
    assert (
        await client.put("/api/profiles/support", json={"voice": "sage"}, headers=AUTH)
    ).status == 200

    for name, body, words in (
        ("bad", {"voice": "robot"}, "voice"),
        ("bad", {"turn_detection": {"type": "psychic"}}, "turn_detection"),
        ("bad", {"colour": "red"}, "colour"),
        ("bad", {"name": "other"}, "name"),
        ("-bad", {}, "name"),
    ):
        resp = await client.put(f"/api/profiles/{name}", json=body, headers=AUTH)
        assert resp.status == 400, body
        assert words in (await resp.json())["error"], body
    resp = await client.put("/api/profiles/x", data=b"{not json", headers=AUTH)
    assert resp.status == 400 and "JSON" in (await resp.json())["error"]

    resp = await client.put(
        "/api/numbers/+1 (555) 999-0000", json={"profile": "sales"}, headers=AUTH
    )
    assert resp.status == 200 and (await resp.json())["number"] == "+15559990000"
    resp = await client.put("/api/numbers/+15559990001", json={"profile": "ghost"}, headers=AUTH)
    assert resp.status == 404
    resp = await client.put("/api/numbers/hello", json={"profile": "sales"}, headers=AUTH)
    assert resp.status == 400 and "E.164" in (await resp.json())["error"]
    resp = await client.put("/api/default-profile", json={"profile": "support"}, headers=AUTH)
    assert resp.status == 200

    listing = await (await client.get("/api/profiles", headers=AUTH)).json()
    assert [p["name"] for p in listing["profiles"]] == ["sales", "support"]
    assert listing["default"] == "support"
    assert listing["numbers"] == {"+15559990000": "sales"}

    # A new call uses its number's profile, else the default.
    resolved = await store.profiles.resolve("+15559990000")
    assert resolved is not None and resolved.name == "sales"
    layer = resolved.session_layer()
    assert layer["audio"]["output"]["voice"] == "cedar"
    assert layer["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 400
    other = await store.profiles.resolve("+15550000000")
    assert other is not None and other.name == "support"

    # Deleting a profile removes its mappings; deleting the default unsets it.
    assert (await client.delete("/api/profiles/sales", headers=AUTH)).status == 204
    assert (await client.get("/api/numbers", headers=AUTH)).status == 200
    assert (await (await client.get("/api/numbers", headers=AUTH)).json())["numbers"] == {}
    fallback = await store.profiles.resolve("+15559990000")
    assert fallback is not None and fallback.name == "support"
    assert (await client.delete("/api/profiles/support", headers=AUTH)).status == 204
    assert (await (await client.get("/api/default-profile", headers=AUTH)).json()) == {
        "profile": None
    }
    assert await store.profiles.resolve("+15559990000") is None
    assert (await client.delete("/api/profiles/support", headers=AUTH)).status == 404
    assert (await client.get("/api/profiles/support", headers=AUTH)).status == 404


async def test_saved_defaults_are_versioned_and_survive_a_restart(
    store_env: dict[str, str], client: TestClient[web.Request, web.Application]
) -> None:
    assert (await client.get("/api/settings/defaults", headers=AUTH)).status == 404
    beta = {
        "session": {
            "voice": "ash",
            "turn_detection": {"type": "server_vad"},
            "instructions": "Be brief.",
        },
        "greeting": "Greet the caller.",
        "tools": [
            {"name": "lookup", "description": "Find an order", "parameters": {"type": "object"}}
        ],
        "version": 0,
    }
    resp = await client.put("/api/settings/defaults", json=beta, headers=AUTH)
    assert resp.status == 200, await resp.text()
    saved = await resp.json()
    assert saved["version"] == 1
    assert saved["session"]["audio"]["output"]["voice"] == "ash"  # stored in the GA shape
    assert saved["tools"][0]["type"] == "function"

    stale = {**beta, "greeting": "Someone else's edit", "version": 0}
    resp = await client.put("/api/settings/defaults", json=stale, headers=AUTH)
    assert resp.status == 409 and "version 1" in (await resp.json())["error"]
    resp = await client.put("/api/settings/defaults", json={**beta, "version": 1}, headers=AUTH)
    assert resp.status == 200 and (await resp.json())["version"] == 2
    resp = await client.put(
        "/api/settings/defaults", json={"session": {"voice": "robot"}}, headers=AUTH
    )
    assert resp.status == 400 and "voice" in (await resp.json())["error"]
    resp = await client.put("/api/settings/defaults", json={"sesion": {}}, headers=AUTH)
    assert resp.status == 400 and "sesion" in (await resp.json())["error"]

    # A restart: a new store on the same database has them.
    again = await Store.open(from_env(store_env))
    try:
        loaded = await again.saved.load()
        assert loaded is not None and loaded.version == 2
        assert loaded.greeting == "Greet the caller."
        assert loaded.session["instructions"] == "Be brief."
    finally:
        await again.close()

    assert (await client.delete("/api/settings/defaults", headers=AUTH)).status == 204
    assert (await client.get("/api/settings/defaults", headers=AUTH)).status == 404
    assert (await client.delete("/api/settings/defaults", headers=AUTH)).status == 404


async def test_a_huge_body_is_refused(client: TestClient[web.Request, web.Application]) -> None:
    resp = await client.put(
        "/api/settings/defaults", data=b'{"greeting":"' + b"x" * 300_000 + b'"}', headers=AUTH
    )
    assert resp.status == 413
