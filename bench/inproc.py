"""Benchmarks that need the full simulator, not raw speed: first answer and barge-in.

Both run a real relay in-process (`relay.harness.running_relay`: Hypercorn + SimModel on
loopback) and the Twilio-like `SimCaller`, which plays audio in real time and records
exactly what the caller heard (the ground truth for barge-in).
"""

from __future__ import annotations

import asyncio
import statistics
from typing import Any

import aiohttp

from relay.harness import running_relay
from relay.sim.caller import (
    Hangup,
    SimCaller,
    Step,
    one_turn,
    parse_twiml,
    place_call,
)
from relay.sim.caller import (
    barge_in as barge_in_steps,
)
from relay.sim.script import ModelScript, Reply

QUICK_VAD = '{"type":"server_vad","silence_duration_ms":300,"create_response":true}'

# A realistic upstream: TLS + WebSocket upgrade to the Realtime API, then session.update.
CONNECT_DELAY_S = 0.35
CONFIGURE_DELAY_S = 0.15
RING_S = 1.0  # /twiml webhook -> Twilio opens the media stream


async def _first_answer_once(relay: Any, index: int, hook: Any = None) -> dict[str, float]:
    """`hook`: the relay process the webhook reaches (default: the same as the stream's)."""
    hook = hook or relay
    loop = asyncio.get_running_loop()
    sim = relay.sim
    marks: dict[str, float] = {}

    async def watch() -> None:
        session = await sim.wait_for_session(index + 1, timeout=10)
        marks["opened"] = loop.time()
        await session.wait_sent("session.updated", timeout=10)
        marks["configured"] = loop.time()

    async def first_append() -> None:
        session = await sim.wait_for_session(index + 1, timeout=10)
        await session.wait_for("input_audio_buffer.append", timeout=10)
        marks["first_append"] = loop.time()

    watchers = [asyncio.ensure_future(watch()), asyncio.ensure_future(first_append())]
    call_sid = f"CA{index:032x}"
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{hook.base_url}/twiml", data={"CallSid": call_sid}) as r:
            stream_url, params = parse_twiml(await r.text())
        await asyncio.sleep(RING_S)
        caller = SimCaller(
            relay.ws_url + "/call",
            signed_url=stream_url,
            custom_parameters=params,
            call_sid=call_sid,
            http=http,
        )
        await caller.connect()
        t_start = loop.time() - caller.now()  # when `connected` + `start` went out
        await asyncio.wait_for(asyncio.gather(*watchers), 10)
        await caller.hangup()
    ready = max(marks["configured"], marks["first_append"])
    return {
        "ready_ms": 1000 * (ready - t_start),
        "configured_ms": 1000 * (marks["configured"] - t_start),
        "first_append_ms": 1000 * (marks["first_append"] - t_start),
    }


async def first_answer(runs: int) -> dict[str, Any]:
    """Twilio `start` -> the model session is configured and has the caller's first audio."""
    script = ModelScript(connect_delay_s=CONNECT_DELAY_S, configure_delay_s=CONFIGURE_DELAY_S)
    out: dict[str, Any] = {
        "connect_delay_ms": 1000 * CONNECT_DELAY_S,
        "configure_delay_ms": 1000 * CONFIGURE_DELAY_S,
        "ring_ms": 1000 * RING_S,
    }
    for prewarm in (False, True):
        env = {"OPENAI_TURN_DETECTION_JSON": QUICK_VAD, "RELAY_PREWARM": str(prewarm).lower()}
        samples = []
        async with running_relay(env, script) as relay:
            for i in range(runs):
                samples.append(await _first_answer_once(relay, i))
        out["prewarm" if prewarm else "cold"] = _ready(runs, samples)
    out["prewarm_miss"] = await _first_answer_miss(runs, script)
    return out


def _ready(runs: int, samples: list[dict[str, float]]) -> dict[str, Any]:
    return {
        "runs": runs,
        "ready_ms_median": statistics.median(s["ready_ms"] for s in samples),
        "ready_ms_max": max(s["ready_ms"] for s in samples),
        "samples": samples,
    }


async def _first_answer_miss(runs: int, script: ModelScript) -> dict[str, Any]:
    """Pre-warm on, two relay processes sharing a Redis: the webhook reaches one and the
    stream the other, which has no pre-warmed session and opens one at once."""
    from relay.cluster.testing import RedisServer

    redis = RedisServer.start()
    env = {"OPENAI_TURN_DETECTION_JSON": QUICK_VAD, "RELAY_PREWARM": "true"}
    env["REDIS_URL"] = redis.url
    samples = []
    try:
        async with running_relay(env, script) as hook, running_relay(env, script) as stream:
            for i in range(runs):
                samples.append(await _first_answer_once(stream, i, hook))
    finally:
        redis.stop()
    return _ready(runs, samples)


BARGE_IN: list[Step] = [*barge_in_steps(), Hangup()]
AFTER_FINISHED: list[Step] = [*one_turn(wait_s=5), *one_turn(wait_s=5), Hangup()]


async def _barge_pacing(pacing: str, runs: int, env: dict[str, str]) -> dict[str, Any]:
    script = ModelScript(
        pacing=pacing,  # type: ignore[arg-type]
        replies=[Reply("A long answer " * 10, audio_ms=4000), Reply("Short.", audio_ms=300)],
    )
    errors: list[float] = []
    problems: list[str] = []
    async with running_relay(env, script) as relay:
        records = [await place_call(relay.base_url, steps=BARGE_IN) for _ in range(runs)]
        by_item = {t["item_id"]: t for s in relay.sim.sessions for t in s.truncations}
        for rec in records:
            if not rec.ok or len(rec.clears) != 1:
                problems.append(rec.summary())
                continue
            clear = rec.clears[0]
            trunc = by_item.get(clear.item_id)
            if trunc is None:
                problems.append(f"no truncate for {clear.item_id}")
                continue
            errors.append(abs(trunc["audio_end_ms"] - clear.played_ms))
    return {
        "runs": runs,
        "errors_ms": errors,
        "max_error_ms": max(errors) if errors else None,
        "problems": problems,
    }


async def _after_finished(runs: int, env: dict[str, str]) -> dict[str, Any]:
    script = ModelScript(replies=[Reply("Short.", audio_ms=400)])
    async with running_relay(env, script) as relay:
        records = await asyncio.gather(
            *(place_call(relay.base_url, steps=AFTER_FINISHED) for _ in range(runs))
        )
        truncates = sum(
            1
            for s in relay.sim.sessions
            for e in s.received
            if e["type"] == "conversation.item.truncate"
        )
    clears = sum(len(r.clears) for r in records)
    return {
        "runs": runs,
        "truncates": truncates,
        "clears": clears,
        "ok": truncates == 0 and clears == 0 and all(r.ok for r in records),
        "problems": [r.summary() for r in records if not r.ok],
    }


async def barge_in(runs: int) -> dict[str, Any]:
    """Truncation point sent to the model vs what the caller really heard, per pacing.

    Each mode gets its own relay; calls run one at a time.
    """
    env = {"OPENAI_TURN_DETECTION_JSON": QUICK_VAD, "RELAY_PREWARM": "false"}
    modes = ("burst", "realtime", "slow")
    out: dict[str, Any] = {}
    for m in modes:  # one at a time: a busy event loop would delay the clear and skew the error
        out[m] = await _barge_pacing(m, runs, env)
    out["after_finished"] = await _after_finished(runs, env)
    return out
