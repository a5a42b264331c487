"""RELAY_WORKERS=2 as deployed: `python -m relay` with two worker processes on one port,
a real Redis, and the simulated model in this process (so every frame can be counted).

One worker is killed with SIGKILL in the middle of live calls: the other worker's calls
carry on with no frame lost, the console (on the surviving worker) keeps its feed and shows
the dead worker's calls ended with a reason, and the parent starts a new worker.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from relay.harness import free_port, wait_healthy
from relay.sim.caller import (
    SimCaller,
    Speak,
    Step,
    WaitForAssistant,
    new_sid,
    one_turn,
    parse_twiml,
)
from relay.sim.model import SimModel
from relay.sim.script import ModelScript, Reply

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parent.parent
QUICK_VAD = '{"type":"server_vad","silence_duration_ms":300,"create_response":true}'
CALLS = 20  # live calls at the kill (more if the kernel handed them all to one worker)


@asynccontextmanager
async def two_workers(redis_url: str, model_url: str) -> AsyncIterator[str]:
    port = free_port()
    data = tempfile.TemporaryDirectory(prefix="relay-data-")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "RELAY_"))},
        "PYTHONPATH": str(ROOT),
        "PORT": str(port),
        "RELAY_HOST": "127.0.0.1",
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        "RELAY_WORKERS": "2",
        "REDIS_URL": redis_url,
        "OPENAI_REALTIME_URL": model_url,
        "OPENAI_TURN_DETECTION_JSON": QUICK_VAD,
        "RELAY_PREWARM": "false",  # one model session per call: every frame is accounted for
        "RELAY_DATA_DIR": data.name,
        "RELAY_DRAIN_SECONDS": "3",
        "LOG_LEVEL": "WARNING",
    }
    log = tempfile.TemporaryFile()  # noqa: SIM115 -- closed below
    proc = subprocess.Popen(  # noqa: ASYNC220 -- returns at once; its health is awaited
        [sys.executable, "-m", "relay"], env=env, cwd=data.name, stdout=log, stderr=log
    )
    base = f"http://127.0.0.1:{port}"

    def alive() -> None:
        if proc.poll() is not None:
            log.seek(0)
            raise AssertionError(f"relay exited: {log.read().decode()[-3000:]}")

    try:
        await wait_healthy(base, timeout=30, alive=alive)
        yield base
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.seek(0)
        print(log.read().decode()[-5000:])
        log.close()
        data.cleanup()


async def until(check: Callable[[], Any], timeout: float) -> Any:
    """Await `check()` (a coroutine function) until it returns something truthy."""
    async with asyncio.timeout(timeout):
        while not (result := await check()):
            await asyncio.sleep(0.05)
    return result


async def place(base: str, http: aiohttp.ClientSession) -> SimCaller:
    sid = new_sid("CA")
    async with http.post(f"{base}/twiml", data={"CallSid": sid}) as resp:
        signed, params = parse_twiml(await resp.text())
    caller = SimCaller(
        base.replace("http", "ws") + "/call",
        signed_url=signed,
        custom_parameters=params,
        call_sid=sid,
    )
    await caller.connect()
    return caller


async def test_a_worker_killed_mid_call_takes_only_its_own_calls(redis_url: str) -> None:
    script = ModelScript(replies=[Reply("An answer.", audio_ms=300)])
    r = aioredis.from_url(redis_url)
    sim = SimModel(script)
    model_url = await sim.start("127.0.0.1", 0)
    try:
        async with two_workers(redis_url, model_url) as base, aiohttp.ClientSession() as http:
            feed = await http.ws_connect(f"{base}/logs")
            assert json.loads((await feed.receive()).data)["type"] == "relay.hello"
            events: list[dict[str, Any]] = []
            reader = asyncio.create_task(_read(feed, events))

            async def procs() -> dict[str, dict[str, Any]]:
                raw = await r.hgetall("relay:procs")
                return {k.decode(): json.loads(v) for k, v in raw.items()}

            async def console_host() -> str | None:
                hosts = [p for p, info in (await procs()).items() if info["consoles"]]
                return hosts[0] if len(hosts) == 1 else None

            watcher = await until(console_host, 10)
            # Calls until both workers hold some (the kernel hands each to either).
            callers: list[SimCaller] = []

            async def owners() -> dict[str, str]:
                raw = await r.hgetall("relay:calls")
                return {k.decode(): json.loads(v)["owner"] for k, v in raw.items()}

            while True:
                for _ in range(CALLS):
                    callers.append(await place(base, http))
                by_owner = await until(
                    lambda: _all_registered(owners, {c.record.call_sid for c in callers}), 10
                )
                if len(set(by_owner.values())) == 2 or len(callers) >= 2 * CALLS:
                    break
            assert len(set(by_owner.values())) == 2, "every call went to one worker"
            victim = next(p for p in set(by_owner.values()) if p != watcher)
            doomed = {sid for sid, owner in by_owner.items() if owner == victim}
            survivors = [c for c in callers if c.record.call_sid not in doomed]
            # Every call is live and answered before the kill.
            await asyncio.gather(*(_steps(c, one_turn()) for c in callers))
            pid = (await procs())[victim]["pid"]
            os.kill(pid, signal.SIGKILL)

            # The console (on the other worker) sees each of the dead worker's calls end.
            def ended() -> dict[str, dict[str, Any]]:
                return {e["call_sid"]: e["summary"] for e in events if e["type"] == "call.ended"}

            async def all_ended() -> bool:
                return set(ended()) == doomed

            await until(all_ended, 15)
            for summary in ended().values():
                assert summary["end_reason"] == "error"
                assert summary["reason"].startswith("relay worker ")
                assert f"died (pid {pid} " in summary["reason"]
            # The other worker's calls carry on: another answer each, then a normal hang-up.
            again = [Speak(ms=600), WaitForAssistant(timeout=8)]
            await asyncio.gather(*(_steps(c, again) for c in survivors))
            records = [await c.hangup() for c in callers]
            for record in records:
                if record.call_sid not in doomed:
                    assert record.ok, record.summary()
                    assert len(record.heard_ms) >= 2
            # No frame lost on the surviving calls: every frame their callers sent reached
            # the model (the dead worker's sessions were cut: they are the ones not closed
            # normally).
            await until(_all_closed(sim), 10)
            kept = [s for s in sim.sessions if s.close_code == 1000]
            assert len(kept) == len(survivors)
            received = sum(
                1 for s in kept for e in s.received if e["type"] == "input_audio_buffer.append"
            )
            assert received == sum(c.record.frames_sent for c in survivors)
            # A scrape on the shared port answers for the instance, and names who answered.
            async with http.get(f"{base}/metrics") as resp:
                text = await resp.text()
            assert "relay_workers_lost_total 1.0" in text
            assert "relay_worker_info{" in text and "process_cpu" not in text
            # The parent started a new worker; it takes calls.
            await until(lambda: _count_alive(r, procs, victim), 20)
            fresh = await place(base, http)
            for step in one_turn():
                assert await fresh.do(step), fresh.record.summary()
            assert (await fresh.hangup()).ok
            assert not reader.done()  # the console kept its feed throughout
            reader.cancel()
            await feed.close()
    finally:
        await sim.stop()
        await r.aclose()


async def _steps(caller: SimCaller, steps: list[Step]) -> None:
    for step in steps:
        assert await caller.do(step), caller.record.summary()


async def _read(feed: aiohttp.ClientWebSocketResponse, events: list[dict[str, Any]]) -> None:
    async for msg in feed:
        if msg.type is aiohttp.WSMsgType.TEXT:
            events.append(json.loads(msg.data))


async def _all_registered(owners: Callable[[], Any], sids: set[str]) -> dict[str, str] | None:
    found: dict[str, str] = await owners()
    return found if sids <= set(found) else None


def _all_closed(sim: SimModel) -> Callable[[], Any]:
    async def check() -> bool:
        return all(s.closed.is_set() for s in sim.sessions)

    return check


async def _count_alive(r: Any, procs: Callable[[], Any], victim: str) -> bool:
    live = [p for p in await procs() if p != victim and await r.exists(f"relay:alive:{p}")]
    return len(live) == 2
