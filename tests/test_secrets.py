"""The three secrets never show (issue 5): not in logs, /health, errors or console events.

A relay runs with real-looking values for OPENAI_API_KEY, TWILIO_AUTH_TOKEN and
RELAY_CONSOLE_TOKEN (so: not in simulator mode, Twilio signatures enforced, Twilio REST on),
takes a call with errors along the way (a model error, a failing tool, a hang-up through a
Twilio REST API that is down), and everything an operator or attacker could see is grepped
for each secret -- whole, base64-encoded, URL-encoded, and its first and last 12 characters.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from twilio.request_validator import RequestValidator

from relay.harness import RunningRelay, free_port, next_event, running_relay
from relay.sim.caller import (
    Silence,
    Speak,
    Step,
    WaitForAssistant,
    WaitForAssistantDone,
    place_call,
)
from relay.sim.script import ModelScript, Reply, ToolCall
from relay.tools import Tool

OPENAI_KEY = "sk-proj-" + "Zq8rT2vLk9XwPb4Nc7MdYs3FhJu6GeKa1Vo5iRtW"  # 8 + 40 characters
AUTH_TOKEN = "9f3c2a7b5e8d1f04a6c9b2e7d3f8a1c5"  # 32 hex
CONSOLE_TOKEN = "ctk_Hy7Qm2Pz9Lr4Xv8Bn3Jd6Wf1Ks5Tg0Ue"
ACCOUNT_SID = "AC" + "5e" * 16
SECRETS = {
    "OPENAI_API_KEY": OPENAI_KEY,
    "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
    "RELAY_CONSOLE_TOKEN": CONSOLE_TOKEN,
}

QUICK_VAD = '{"type":"server_vad","silence_duration_ms":300,"create_response":true}'


def forms(secret: str) -> list[str]:
    """Every way a secret could leak that we look for."""
    out = {secret, secret[:12], secret[-12:], quote(secret, safe="")}
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        out.add(encode(secret.encode()).decode().rstrip("="))
        # Basic auth as Twilio's REST client sends it.
        out.add(encode(f"{ACCOUNT_SID}:{secret}".encode()).decode().rstrip("="))
    return sorted(out)


def assert_clean(where: str, text: str) -> None:
    for name, secret in SECRETS.items():
        for form in forms(secret):
            assert form not in text, f"{name} ({form[:4]}...) leaked in {where}"


def _failing_tool() -> Tool:
    async def handler(args: dict[str, Any], ctx: Any) -> Any:
        raise RuntimeError("inventory service is down")

    return Tool(
        name="lookup_order",
        description="Look up an order",
        parameters={"type": "object", "properties": {"order_id": {"type": "string"}}},
        handler=handler,
    )


async def _get(http: aiohttp.ClientSession, url: str, **kwargs: Any) -> str:
    async with http.get(url, **kwargs) as resp:
        return f"{resp.status} {dict(resp.headers)} {await resp.text()}"


async def _post(http: aiohttp.ClientSession, url: str, **kwargs: Any) -> str:
    async with http.post(url, **kwargs) as resp:
        return f"{resp.status} {dict(resp.headers)} {await resp.text()}"


async def _refused_ws(http: aiohttp.ClientSession, url: str, **kwargs: Any) -> str:
    try:
        ws = await http.ws_connect(url, **kwargs)
    except aiohttp.WSServerHandshakeError as exc:
        return f"{exc.status} {exc.message} {exc.headers}"
    msg = await ws.receive()
    await ws.close()
    return f"{msg} {ws.close_code}"


async def _collect(ws: aiohttp.ClientWebSocketResponse, seen: list[str], stop: str) -> None:
    async for msg in ws:
        if msg.type is not aiohttp.WSMsgType.TEXT:
            break
        seen.append(msg.data)
        if json.loads(msg.data).get("type") == stop:
            return


async def _everything_visible(
    relay: RunningRelay, caplog: pytest.LogCaptureFixture
) -> list[tuple[str, str]]:
    visible: list[tuple[str, str]] = []
    base, ws_base = relay.base_url, relay.ws_url
    bearer = {"Authorization": f"Bearer {CONSOLE_TOKEN}"}
    async with aiohttp.ClientSession() as http:
        # Refusals: forged and missing signatures, wrong console tokens.
        forged = RequestValidator("0" * 32).compute_signature(f"{base}/twiml", {"CallSid": "CA1"})
        for headers in ({}, {"X-Twilio-Signature": forged}):
            visible.append(
                (
                    "403 /twiml",
                    await _post(http, f"{base}/twiml", data={"CallSid": "CA1"}, headers=headers),
                )
            )
            visible.append(
                ("403 /call", await _refused_ws(http, f"{ws_base}/call", headers=headers))
            )
        for kwargs in ({}, {"headers": {"Authorization": "Bearer wrong"}}):
            visible.append(("403 /logs", await _refused_ws(http, f"{ws_base}/logs", **kwargs)))
        visible.append(("401 /metrics", await _get(http, f"{base}/metrics")))
        # A console watches the whole call (token in the header; a second one in the query).
        events: list[str] = []
        query_events: list[str] = []
        async with (
            http.ws_connect(f"{ws_base}/logs", headers=bearer) as console,
            http.ws_connect(f"{ws_base}/logs?token={CONSOLE_TOKEN}") as query_console,
        ):
            query_watcher = asyncio.create_task(_collect(query_console, query_events, "call.ended"))
            steps: list[Step] = [
                Speak(ms=500),
                Silence(ms=400),
                WaitForAssistant(timeout=8),
                WaitForAssistantDone(timeout=8),
                Silence(ms=8000),  # ended from the console before this is over
            ]
            call = asyncio.create_task(place_call(base, steps=steps, auth_token=AUTH_TOKEN))
            started = await next_event(console, seen=events, kind="call.started")
            visible.append(("/calls", await _get(http, f"{base}/calls")))
            await next_event(console, seen=events, kind="tool.finished")  # the failing tool
            await next_event(console, seen=events, kind="audio.progress")  # the answer after it
            session = relay.sim.sessions[-1]
            await session.send_error("rate_limit_error", "rate_limit_exceeded", "Slow down.")
            await next_event(console, seen=events, kind="error")
            for cmd in (
                {"type": "call.end", "call_sid": "CA-none"},
                {"type": "sim.call"},
                {"type": "bogus"},
                {"type": "ping", "id": "p"},
                # Hang up: through Twilio's REST API (down), then by closing the stream.
                {"type": "call.end", "call_sid": started["call_sid"]},
            ):
                await console.send_json(cmd)
            await next_event(console, seen=events, kind="call.ended")
            record = await call
            async with asyncio.timeout(10):
                await query_watcher
        visible.append(("call record", record.summary() + record.twiml))
        visible += [("console event", e) for e in events]
        visible += [("console event (query token)", e) for e in query_events]
        for path in ("/health", "/calls", "/tools", "/public-url"):
            visible.append((path, await _get(http, f"{base}{path}")))
        visible.append(("/metrics", await _get(http, f"{base}/metrics", headers=bearer)))
    visible.append(("repr(settings)", repr(relay.settings)))
    visible.append(("str(settings)", str(relay.settings)))
    visible.append(("repr(ctx)", repr(relay.ctx)))
    for record_ in caplog.records:
        visible.append((f"log {record_.name}", record_.getMessage()))
        visible.append((f"log {record_.name} (formatted)", caplog.handler.format(record_)))
        visible.append((f"log {record_.name} (vars)", repr(vars(record_))))
    visible.append(("caplog.text", caplog.text))
    return visible


async def test_no_secret_leaks_anywhere(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # the root logger: every library's debug lines too
    env = {
        **SECRETS,
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_API_BASE": f"http://127.0.0.1:{free_port()}",  # Twilio REST is down
        "OPENAI_TURN_DETECTION_JSON": QUICK_VAD,
        "RELAY_PREWARM": "false",
    }
    script = ModelScript(
        replies=[
            ToolCall("lookup_order", {"order_id": "A1"}),
            Reply("Sorry, I cannot look that up right now.", audio_ms=300),
        ]
    )
    async with running_relay(env, script) as relay:
        assert not relay.settings.simulator
        assert relay.ctx.signatures is not None and relay.ctx.signatures.enabled
        relay.ctx.tools.add(_failing_tool())
        relay.ctx.default_session["tools"] = relay.ctx.tools.schemas()
        visible = await _everything_visible(relay, caplog)
    # The scenario really went through the error paths.
    text = "\n".join(v for _, v in visible)
    assert "inventory service is down" in text  # the failing tool
    assert "rate_limit_exceeded" in text  # the injected model error
    assert "invalid Twilio signature" in text  # a 403
    assert "Twilio REST failed" in text  # the hang-up through Twilio's REST API
    assert '"type":"call.ended"' in text.replace(" ", "")
    for where, value in visible:
        assert_clean(where, value)


def test_the_secret_forms_are_found_when_present() -> None:
    """The grep itself works: each form is caught."""
    for secret in SECRETS.values():
        for form in forms(secret):
            with pytest.raises(AssertionError):
                assert_clean("here", f"prefix {form} suffix")
