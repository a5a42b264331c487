"""A redeploy (SIGTERM) lets live calls finish and turns new ones away politely."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp

from relay.harness import free_port, wait_healthy
from relay.sim.caller import Hangup, one_turn, place_call
from relay.sim.model import SimModel
from relay.sim.script import ModelScript, Reply


async def test_sigterm_drains_live_calls_then_exits_cleanly(tmp_path: Path) -> None:
    sim = SimModel(ModelScript(replies=[Reply("A two second answer.", audio_ms=2000)]))
    model_url = await sim.start()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "PORT": str(port),
        "RELAY_HOST": "127.0.0.1",
        "RELAY_DATA_DIR": str(tmp_path),
        "PUBLIC_URL": base,
        "OPENAI_REALTIME_URL": model_url,
        "OPENAI_TURN_DETECTION_JSON": '{"type":"server_vad","silence_duration_ms":300}',
        "RELAY_DRAIN_SECONDS": "20",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "relay", env=env, stderr=asyncio.subprocess.PIPE
    )
    try:

        def alive() -> None:
            if proc.returncode is not None:
                raise AssertionError(f"relay exited early with {proc.returncode}")

        health = await wait_healthy(base, timeout=15, alive=alive)
        assert health["status"] == "ok"
        steps = [*one_turn(), Hangup()]
        call = asyncio.create_task(place_call(base, steps=steps))
        session = await sim.wait_for_session(1)
        await session.wait_sent("response.output_audio.delta", timeout=10)
        proc.send_signal(signal.SIGTERM)
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                async with http.get(f"{base}/health") as resp:
                    if resp.status == 503:
                        assert (await resp.json())["status"] == "draining"
                        break
                await asyncio.sleep(0.02)
            else:
                raise AssertionError("/health never reported draining")
            async with http.post(f"{base}/twiml", data={"CallSid": "CA" + "9" * 32}) as resp:
                busy = await resp.text()
            assert "<Say>" in busy and "<Connect>" not in busy
        record = await call
        assert record.ok, record.summary()
        assert record.total_heard_ms >= 1990  # the live call finished its answer
        code = await asyncio.wait_for(proc.wait(), 10)
        assert code == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await sim.stop()


async def test_with_no_calls_sigterm_exits_at_once_and_quietly(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "PORT": str(port),
        "RELAY_HOST": "127.0.0.1",
        "PUBLIC_URL": base,
        "RELAY_DATA_DIR": str(tmp_path),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "relay",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        await wait_healthy(base, timeout=15)
        async with aiohttp.ClientSession() as http, http.ws_connect(f"{base}/logs"):
            # A console is watching: it must not hold the shutdown up either.
            started = asyncio.get_running_loop().time()
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), 10)
            took = asyncio.get_running_loop().time() - started
        assert proc.stdout is not None
        output = (await proc.stdout.read()).decode()
        assert code == 0
        assert took < 1.0, f"took {took:.2f} s"
        assert "Traceback" not in output and "CancelledError" not in output, output
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
