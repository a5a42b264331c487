"""Hanging up a simulated call from the console is a normal end, not a failure.

The console's "Hang up" sends `call.end`; the relay closes the media stream normally
(1000), which is how it ends a call. The simulated caller placed by the relay's
"Simulated call" button must take that as the end of the call, not report
`simulated_call_failed`, and the call's end reason must say the console ended it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from relay.harness import next_event, running_relay, wait_until


async def test_a_console_hang_up_of_a_simulated_call_is_a_normal_end() -> None:
    async with running_relay() as relay:
        published: list[dict[str, Any]] = []
        publish = relay.ctx.hub.publish

        def spy(event: dict[str, Any] | bytes) -> None:
            if isinstance(event, dict):
                published.append(event)
            publish(event)

        relay.ctx.hub.publish = spy  # type: ignore[method-assign]
        async with aiohttp.ClientSession() as http, http.ws_connect(f"{relay.ws_url}/logs") as ws:
            await next_event(ws, "relay.hello")
            await ws.send_json({"type": "sim.call", "seconds": 60})
            sid = (await next_event(ws, "call.started"))["call_sid"]
            await next_event(ws, "turn.latency", timeout=15)  # the call is under way
            await ws.send_json({"type": "call.end", "call_sid": sid})
            ended = await next_event(ws, "call.ended")
        # The simulated caller has finished: anything it had to report is published.
        await wait_until(lambda: not relay.ctx.sim_tasks, timeout=5)
    errors = [e for e in published if e.get("type") == "error"]
    assert not errors, errors
    assert ended["summary"]["end_reason"] == "console_ended", ended


async def test_the_simulated_caller_still_reports_a_real_failure() -> None:
    async with running_relay() as relay:
        relay.ctx.draining = True  # it turns calls away, as during a deploy
        published: list[dict[str, Any]] = []
        publish = relay.ctx.hub.publish

        def spy(event: dict[str, Any] | bytes) -> None:
            if isinstance(event, dict):
                published.append(event)
            publish(event)

        relay.ctx.hub.publish = spy  # type: ignore[method-assign]
        async with aiohttp.ClientSession() as http, http.ws_connect(f"{relay.ws_url}/logs") as ws:
            await next_event(ws, "relay.hello")
            await ws.send_json({"type": "sim.call", "seconds": 10})
            error = await next_event(ws, "error", timeout=15)
        await asyncio.wait_for(asyncio.gather(*relay.ctx.sim_tasks), 5)
    assert error["code"] == "simulated_call_failed" and error["message"]
