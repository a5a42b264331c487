"""The relay's Prometheus metrics: names, format, helpers, and their own registry."""

from __future__ import annotations

import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

from relay import metrics
from relay.actions import EndReason

FAMILIES = {
    "relay_live_calls": "gauge",
    "relay_calls_ended": "counter",
    "relay_calls_refused": "counter",
    "relay_prewarm": "counter",
    "relay_model_reconnects": "counter",
    "relay_barge_ins": "counter",
    "relay_tool_calls": "counter",
    "relay_turn_latency_seconds": "histogram",
    "relay_hop_latency_seconds": "histogram",
    "relay_console_clients": "gauge",
    "relay_consoles_dropped": "counter",
}


def scrape() -> dict[str, float]:
    """Every sample of a rendered scrape, keyed like `name{label="v",...}`."""
    body, _ = metrics.render()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def test_render_is_prometheus_text_with_every_family() -> None:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain; version=")
    families = {f.name: f.type for f in text_string_to_metric_families(body.decode())}
    for name, kind in FAMILIES.items():
        assert families.get(name) == kind, name
    text = body.decode()
    assert "# TYPE relay_calls_ended_total counter" in text
    assert "_created" not in text  # no creation-time series doubling the scrape


def test_metrics_live_in_their_own_registry() -> None:
    global_names = {f.name for f in prometheus_client.REGISTRY.collect()}
    assert not any(name.startswith("relay_") for name in global_names)
    assert metrics.REGISTRY is not prometheus_client.REGISTRY


def test_a_call_moves_live_calls_and_the_end_reason_counter() -> None:
    live = metrics.value("relay_live_calls")
    done = metrics.value("relay_calls_ended_total", reason="agent_ended")
    metrics.call_started()
    assert metrics.value("relay_live_calls") == live + 1
    metrics.call_ended("agent_ended")
    assert metrics.value("relay_live_calls") == live
    assert metrics.value("relay_calls_ended_total", reason="agent_ended") == done + 1
    before = metrics.value("relay_calls_refused_total", reason="busy")
    metrics.call_rejected("busy")
    assert metrics.value("relay_calls_refused_total", reason="busy") == before + 1
    assert metrics.value("relay_live_calls") == live
    assert scrape()['relay_calls_refused_total{reason="busy"}'] == before + 1


def test_counters_and_gauges_for_the_operator() -> None:
    cases = [
        ("relay_model_reconnects_total", metrics.MODEL_RECONNECTS.inc),
        ("relay_barge_ins_total", metrics.BARGE_INS.inc),
        ("relay_consoles_dropped_total", metrics.CONSOLES_DROPPED.inc),
        ("relay_console_clients", metrics.CONSOLE_CLIENTS.inc),
    ]
    for name, bump in cases:
        before = metrics.value(name)
        bump()
        assert metrics.value(name) == before + 1, name
    metrics.CONSOLE_CLIENTS.dec()


def test_tool_calls_by_name_and_outcome() -> None:
    before = metrics.value("relay_tool_calls_total", name="get_weather", outcome="ok")
    metrics.tool_call("get_weather", "ok")
    metrics.tool_call("get_weather", "timeout")
    assert metrics.value("relay_tool_calls_total", name="get_weather", outcome="ok") == before + 1
    assert scrape()['relay_tool_calls_total{name="get_weather",outcome="timeout"}'] >= 1


def test_unbounded_tool_names_fold_into_other(monkeypatch: pytest.MonkeyPatch) -> None:
    full = {f"tool{i}" for i in range(metrics.MAX_TOOL_NAMES)}
    monkeypatch.setattr(metrics, "_tool_names", full)
    before = metrics.value("relay_tool_calls_total", name="other", outcome="ok")
    metrics.tool_call("one_too_many", "ok")
    assert metrics.value("relay_tool_calls_total", name="other", outcome="ok") == before + 1
    assert metrics.value("relay_tool_calls_total", name="one_too_many", outcome="ok") == 0
    metrics.tool_call("tool3", "ok")  # a known name still counts as itself
    assert metrics.value("relay_tool_calls_total", name="tool3", outcome="ok") >= 1


def test_turn_latency_histogram_suits_0_2_to_3_seconds() -> None:
    buckets = metrics.TURN_BUCKETS
    assert buckets[0] <= 0.2 and buckets[-1] >= 3.0
    assert sum(1 for b in buckets if 0.2 <= b <= 3.0) >= 8  # resolution where it matters
    count = metrics.value("relay_turn_latency_seconds_count")
    metrics.TURN_LATENCY.observe(0.45)
    assert metrics.value("relay_turn_latency_seconds_count") == count + 1
    assert metrics.value("relay_turn_latency_seconds_bucket", le="0.5") >= 1


def test_hop_latency_has_prebound_inbound_and_outbound_children() -> None:
    assert metrics.HOP_INBOUND is metrics.hop_latency.labels("inbound")
    assert metrics.HOP_OUTBOUND is metrics.hop_latency.labels("outbound")
    assert metrics.HOP_BUCKETS[0] == 0.0001 and metrics.HOP_BUCKETS[-1] == 0.05
    counts = {
        d: metrics.value("relay_hop_latency_seconds_count", direction=d)
        for d in ("inbound", "outbound")
    }
    metrics.HOP_INBOUND.observe(0.0003)
    metrics.HOP_OUTBOUND.observe(0.002)
    metrics.HOP_OUTBOUND.observe(0.004)
    assert metrics.value("relay_hop_latency_seconds_count", direction="inbound") == (
        counts["inbound"] + 1
    )
    assert metrics.value("relay_hop_latency_seconds_count", direction="outbound") == (
        counts["outbound"] + 2
    )
    sample = scrape()
    assert 'relay_hop_latency_seconds_bucket{direction="inbound",le="0.0005"}' in sample


def test_every_end_reason_and_refusal_is_scraped_from_the_start() -> None:
    sample = scrape()
    for reason in EndReason:
        assert f'relay_calls_ended_total{{reason="{reason.value}"}}' in sample
    for refusal in metrics.REFUSALS:
        assert f'relay_calls_refused_total{{reason="{refusal}"}}' in sample
    for outcome in metrics.PREWARM_OUTCOMES:
        assert f'relay_prewarm_total{{outcome="{outcome}"}}' in sample


def test_value_of_an_absent_sample_is_zero() -> None:
    assert metrics.value("relay_calls_ended_total", reason="never-seen") == 0.0
