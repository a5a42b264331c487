"""/metrics is scraped during simulated calls and its counters move."""

from __future__ import annotations

import asyncio

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from relay.harness import running_relay
from relay.media_socket import HOP_SAMPLE
from relay.sim.caller import (
    Hangup,
    barge_in,
    place_call,
)
from relay.sim.script import ModelScript, Reply

ENV = {
    "OPENAI_TURN_DETECTION_JSON": '{"type":"server_vad","silence_duration_ms":300}',
    "RELAY_PREWARM": "false",
}


async def scrape(base: str, headers: dict[str, str] | None = None) -> dict[str, float]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/metrics", headers=headers or {}) as resp:
            assert resp.status == 200
            text = await resp.text()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}"] = s.value
    return samples


async def test_metrics_move_during_calls() -> None:
    script = ModelScript(replies=[Reply("A long answer " * 8, audio_ms=3000), Reply("Ok.")])
    async with running_relay(ENV, script) as relay:
        before = await scrape(relay.base_url)
        steps = [*barge_in(heard_ms=500), Hangup()]
        call = asyncio.create_task(place_call(relay.base_url, steps=steps))
        session = await relay.sim.wait_for_session(1)
        await session.wait_for("input_audio_buffer.append")
        during = await scrape(relay.base_url)
        assert during["relay_live_calls{}"] == before["relay_live_calls{}"] + 1
        record = await call
        assert record.ok, record.summary()
        after = await scrape(relay.base_url)

    def moved(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert moved("relay_calls_ended_total{reason=caller_hung_up}") == 1
    assert moved("relay_barge_ins_total{}") == 1
    # The inbound hop is sampled (1 frame in HOP_SAMPLE) to keep the hot path lean.
    expected = record.frames_sent // HOP_SAMPLE - 2
    assert moved("relay_hop_latency_seconds_count{direction=inbound}") >= expected
    assert moved("relay_turn_latency_seconds_count{}") >= 1
    assert after["relay_live_calls{}"] == before["relay_live_calls{}"]


async def test_metrics_need_the_console_token_when_one_is_set() -> None:
    async with running_relay({**ENV, "RELAY_CONSOLE_TOKEN": "t0ken-for-metrics"}) as relay:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{relay.base_url}/metrics") as resp:
                assert resp.status == 401
        samples = await scrape(relay.base_url, {"Authorization": "Bearer t0ken-for-metrics"})
        assert "relay_live_calls{}" in samples
