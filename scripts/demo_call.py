"""Place a simulated demo call against a relay: `make run`'s demo and `make call`.

    scripts/demo_call.py --wait-for-console   the `demo` process of `make run`: once the
        relay is up, wait until someone logs in to the console, then place one demo call,
        so the first screen shows a call happening. Then idle, so honcho keeps the others.
    scripts/demo_call.py [URL] [--seconds S]   `make call`: place one demo call now.
    scripts/demo_call.py [URL] --mode sip       `make call MODE=sip`: the same as a SIP call
        (OpenAI carrying the audio): the relay's built-in simulator rings it, asked over
        the console feed with RELAY_CONSOLE_TOKEN.

The call hears any greeting, talks over the first answer (a barge-in), asks about the
weather (a tool the relay runs) and an order (`lookup_order`, answered from the console's
Function calls panel), and hangs up after about S seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import aiohttp
from dotenv import dotenv_values

from relay.harness import wait_healthy
from relay.sim.caller import conversation, place_call

POLL_S = 0.5


def _env() -> dict[str, str]:
    """The environment over the .env files, as the relay and console read them."""
    merged: dict[str, str] = {}
    for path in (".env", "relay/.env", "console/.env"):
        merged.update({k: v for k, v in dotenv_values(path).items() if v is not None})
    merged.update(os.environ)
    if not merged.get("RELAY_CONSOLE_TOKEN"):  # the one `make run` generated (scripts/run.py)
        saved = Path(merged.get("RELAY_DATA_DIR") or "data") / "make-run-console-token"
        with contextlib.suppress(OSError):
            merged["RELAY_CONSOLE_TOKEN"] = saved.read_text().strip()
    return merged


async def consoles_watching(http: aiohttp.ClientSession, base: str, token: str) -> int | None:
    """How many consoles follow the relay's feed (its /metrics), or None if it will not say.

    A console opens the feed only for a logged-in page, so 1 means someone is watching.
    """
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with http.get(f"{base}/metrics", headers=headers) as resp:
            if resp.status != 200:
                return None
            text = await resp.text()
    except aiohttp.ClientError:
        return 0  # the relay is restarting: keep waiting
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == "relay_console_clients":
            return int(float(value))
    return None


async def wait_for_console(base: str, token: str, console_url: str) -> None:
    print(
        f"demo: log in to the console at {console_url} (password above): "
        "a demo call starts as soon as you do",
        flush=True,
    )
    async with aiohttp.ClientSession() as http:
        while True:
            watching = await consoles_watching(http, base, token)
            if watching is None:
                print("demo: the relay does not say whether a console is watching; calling now")
                return
            if watching > 0:
                return
            await asyncio.sleep(POLL_S)  # a gauge to poll: the relay has no event for it


async def demo_call(base: str, seconds: float, auth_token: str | None) -> bool:
    print(f"demo: placing a simulated call of about {seconds:.0f} s...", flush=True)
    record = await place_call(base, steps=conversation(seconds), auth_token=auth_token)
    print("demo: " + record.summary().replace("\n", "\ndemo: "), flush=True)
    return record.ok


async def sip_call(base: str, seconds: float, token: str) -> bool:
    """Ask the relay (simulator mode) to ring itself with a simulated SIP call; follow it."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    logs = base.replace("http", "ws", 1) + "/logs"
    print(f"demo: placing a simulated SIP call of about {seconds:.0f} s...", flush=True)
    async with aiohttp.ClientSession() as http:
        try:
            ws = await http.ws_connect(logs, headers=headers)
        except aiohttp.WSServerHandshakeError as exc:
            print(
                f"demo: the relay refused its console feed ({exc.status}): a SIP call is "
                "placed through it, so set RELAY_CONSOLE_TOKEN to the relay's"
            )
            return False
        except aiohttp.ClientError as exc:
            print(f"demo: cannot reach the relay at {base}: {exc}")
            return False
        async with ws:
            return await _follow_sip_call(ws, seconds)


async def _follow_sip_call(ws: aiohttp.ClientWebSocketResponse, seconds: float) -> bool:
    """Place the SIP call through the feed and print how it ended."""
    await ws.send_json({"type": "sim.call", "seconds": seconds, "mode": "sip", "id": "sip"})
    call_sid = ""
    async with asyncio.timeout(seconds + 60):
        async for msg in ws:
            event = msg.json() if msg.type is aiohttp.WSMsgType.TEXT else {}
            kind = event.get("type")
            if kind == "command.error" and event.get("id") == "sip":
                print(f"demo: the relay refused: {event.get('message')}")
                return False
            if kind == "command.ok" and event.get("id") == "sip":
                call_sid = event.get("call_sid", "")
            elif kind == "call.ended" and event.get("call_sid") == call_sid:
                summary = event.get("summary", {})
                print(
                    f"demo: SIP call {call_sid} ended ({summary.get('reason')}): "
                    f"{summary.get('duration_s')} s, {summary.get('turns')} turns, "
                    f"latency {summary.get('latency_ms')} ms"
                )
                return summary.get("end_reason") == "caller_hung_up"
            elif kind == "error" and event.get("call_sid") == call_sid:
                print(f"demo: {event.get('code')}: {event.get('message')}")
    return False


async def main(argv: Sequence[str] | None = None) -> int:
    env = _env()
    p = argparse.ArgumentParser(prog="scripts/demo_call.py", description=__doc__)
    # Not $PORT: honcho gives every process its own PORT (5000, 5100, ...).
    p.add_argument("url", nargs="?", default=env.get("RELAY_URL", "http://127.0.0.1:8081"))
    p.add_argument("--seconds", type=float, default=60.0, help="length of the call")
    p.add_argument("--wait-for-console", action="store_true", help="make run's demo process")
    p.add_argument("--mode", choices=["twilio", "sip"], default="twilio", help="how it calls")
    args = p.parse_args(argv)
    base = args.url.rstrip("/")
    auth = env.get("TWILIO_AUTH_TOKEN") or None
    if args.mode == "sip":
        return 0 if await sip_call(base, args.seconds, env.get("RELAY_CONSOLE_TOKEN", "")) else 1
    if not args.wait_for_console:
        return 0 if await demo_call(base, args.seconds, auth) else 1

    try:
        health: dict[str, object] | None = await wait_healthy(base, timeout=60)
    except TimeoutError:
        health = None
    if health is None:
        print("demo: the relay did not come up; see the relay's log above")
    elif not health.get("simulator"):
        print("demo: the relay uses the real OpenAI API: call your Twilio number to talk to it")
    else:
        console = f"http://localhost:{env.get('CONSOLE_PORT', '3000')}"
        await wait_for_console(base, env.get("RELAY_CONSOLE_TOKEN", ""), console)
        await demo_call(base, args.seconds, auth)
        print("demo: place another with `make call` (SECONDS=120 for a longer one)")
    await asyncio.get_running_loop().create_future()  # idle until honcho stops us
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    try:
        sys.exit(asyncio.run(main()))
    except KeyboardInterrupt:
        pass
