"""Prometheus metrics for operators, in the relay's own registry (never the global one).

Pure definitions plus a few helpers. The hot path (media frames) uses the pre-bound children
below, so observing a frame is one method call with no label lookup:

    t0 = time.perf_counter()
    ...                                   # Twilio frame in -> model append out
    metrics.HOP_INBOUND.observe(time.perf_counter() - t0)

Names as scraped (counters gain `_total`, histograms `_bucket`/`_sum`/`_count`):

    relay_live_calls                      gauge
    relay_calls_ended_total{reason}       counter (relay.actions.EndReason)
    relay_calls_refused_total{reason}     counter (busy, forged, bad_token, unavailable)
    relay_prewarm_total{outcome}          counter
    relay_model_reconnects_total          counter
    relay_barge_ins_total                 counter
    relay_tool_calls_total{name,outcome}  counter
    relay_turn_latency_seconds            histogram (caller stops -> first model audio)
    relay_hop_latency_seconds{direction}  histogram (direction = inbound | outbound)
    relay_console_clients                 gauge
    relay_consoles_dropped_total          counter
    relay_worker_info{worker,pid,instance} the process that answered this scrape (value 1)
    relay_redis_errors_total{op}          counter (shared state: Redis did not answer)
    relay_feed_dropped_total              counter (console events not sent to other processes)
    relay_workers_lost_total              counter (dead processes whose calls were ended here)
    process_*                             the relay process (CPU, memory, open fds)

Several workers (RELAY_WORKERS > 1) share one port, so a scrape reaches any of them: the
parent then sets PROMETHEUS_MULTIPROC_DIR and every scrape answers with the sum over the
instance's workers (prometheus_client's multiprocess mode; gauges sum the live workers),
without process_* (they would describe only the worker that answered).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from .actions import EndReason

# No `*_created` series: they double the scrape for nothing an operator reads.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Set (by the workers' parent) before this module is imported: values live in files there.
MULTIPROC: Final = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

REGISTRY: Final = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)

# Per-turn latency: the product lives between 0.2 s and 3 s.
TURN_BUCKETS: Final = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 5.0)
# One hop through the relay: 100 us to 50 ms.
HOP_BUCKETS: Final = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05)

# More distinct tool names than this are counted as "other" (tools come from configuration
# the console can change; a label per arbitrary name would grow without bound).
MAX_TOOL_NAMES: Final = 64

live_calls = Gauge(
    "relay_live_calls", "Calls in progress.", registry=REGISTRY, multiprocess_mode="livesum"
)
calls_ended = Counter(
    "relay_calls_ended", "Calls ended, by end reason.", ["reason"], registry=REGISTRY
)
calls_refused = Counter(
    "relay_calls_refused",
    "Calls refused before they started: busy (full or draining), forged (bad Twilio "
    "signature), bad_token (no valid stream token), unavailable (shared state away).",
    ["reason"],
    registry=REGISTRY,
)
model_reconnects = Counter(
    "relay_model_reconnects", "Reconnections of a call's model socket.", registry=REGISTRY
)
barge_ins = Counter(
    "relay_barge_ins", "Caller interruptions of assistant audio.", registry=REGISTRY
)
tool_calls = Counter(
    "relay_tool_calls",
    "Function tool calls, by tool and outcome.",
    ["name", "outcome"],
    registry=REGISTRY,
)
turn_latency = Histogram(
    "relay_turn_latency_seconds",
    "From the end of the caller's speech to the first assistant audio sent to Twilio.",
    buckets=TURN_BUCKETS,
    registry=REGISTRY,
)
hop_latency = Histogram(
    "relay_hop_latency_seconds",
    "Time inside the relay: inbound = Twilio frame in -> model append out, "
    "outbound = model audio delta in -> Twilio media out.",
    ["direction"],
    buckets=HOP_BUCKETS,
    registry=REGISTRY,
)
prewarms = Counter(
    "relay_prewarm",
    "Model sessions pre-warmed on the webhook, by outcome: hit (used by its call), miss (the "
    "call had none), stale (config changed), failed, expired (never picked up), capped "
    "(RELAY_PREWARM_MAX reached).",
    ["outcome"],
    registry=REGISTRY,
)
console_clients = Gauge(
    "relay_console_clients",
    "Consoles connected to /logs.",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
consoles_dropped = Counter(
    "relay_consoles_dropped", "Consoles dropped for falling behind.", registry=REGISTRY
)
redis_errors = Counter(
    "relay_redis_errors",
    "Shared-state operations Redis did not answer, by operation.",
    ["op"],
    registry=REGISTRY,
)
feed_dropped = Counter(
    "relay_feed_dropped",
    "Console events not sent to the other processes (Redis away or backed up).",
    registry=REGISTRY,
)
workers_lost = Counter(
    "relay_workers_lost",
    "Relay processes found dead (no heartbeat) and cleaned up here: their calls ended.",
    registry=REGISTRY,
)

# Pre-bound children for the hot path and the frequent events.
LIVE_CALLS: Final = live_calls
MODEL_RECONNECTS: Final = model_reconnects
BARGE_INS: Final = barge_ins
TURN_LATENCY: Final = turn_latency
HOP_INBOUND: Final = hop_latency.labels("inbound")
HOP_OUTBOUND: Final = hop_latency.labels("outbound")
CONSOLE_CLIENTS: Final = console_clients
CONSOLES_DROPPED: Final = consoles_dropped
FEED_DROPPED: Final = feed_dropped
WORKERS_LOST: Final = workers_lost

# Outcomes the relay reports today, shown at 0 from the start so rate() works from the first
# scrape; any other short word is counted too.
END_REASONS: Final = tuple(reason.value for reason in EndReason)
REFUSALS: Final = ("busy", "forged", "bad_token", "unavailable")
for _reason in END_REASONS:
    calls_ended.labels(_reason)
for _reason in REFUSALS:
    calls_refused.labels(_reason)
PREWARM_OUTCOMES: Final = ("hit", "miss", "stale", "failed", "expired", "capped")
for _outcome in PREWARM_OUTCOMES:
    prewarms.labels(_outcome)

_tool_names: set[str] = set()


def call_started() -> None:
    """A call began (its media socket is accepted)."""
    live_calls.inc()


def call_ended(reason: str) -> None:
    """A call ended; `reason` is its end reason (relay.actions.EndReason)."""
    live_calls.dec()
    calls_ended.labels(reason).inc()


def prewarm(outcome: str) -> None:
    prewarms.labels(outcome).inc()


def call_rejected(reason: str) -> None:
    """A call refused before it started (bad signature, at capacity, draining)."""
    calls_refused.labels(reason).inc()


def tool_call(name: str, outcome: str) -> None:
    """A tool call finished; outcome e.g. ok, error, timeout, unknown."""
    if name not in _tool_names:
        if len(_tool_names) >= MAX_TOOL_NAMES:
            name = "other"
        else:
            _tool_names.add(name)
    tool_calls.labels(name, outcome).inc()


def redis_error(op: str) -> None:
    redis_errors.labels(op).inc()


class _Worker:
    """relay_worker_info: which process answered (the labels), set once at start-up."""

    labels: dict[str, str] = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if self.labels:
            family = GaugeMetricFamily(
                "relay_worker_info",
                "The relay process that answered this scrape.",
                labels=list(self.labels),
            )
            family.add_metric(list(self.labels.values()), 1.0)
            yield family


_WORKER = _Worker()
REGISTRY.register(_WORKER)  # type: ignore[arg-type]


def set_worker(worker: int, pid: int, instance: str) -> None:
    _WORKER.labels = {"worker": str(worker), "pid": str(pid), "instance": instance}


def _registry() -> CollectorRegistry:
    if not MULTIPROC:
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    registry.register(_WORKER)  # type: ignore[arg-type]
    return registry


def render() -> tuple[bytes, str]:
    """The body and content type of a `/metrics` response."""
    return generate_latest(_registry()), CONTENT_TYPE_LATEST


def value(metric: str, /, **labels: str) -> float:
    """One sample's current value (0.0 when absent), e.g. value("relay_calls_ended_total",
    reason="caller_hung_up"); for tests and status views, not the hot path."""
    sample = _registry().get_sample_value(metric, labels)
    return 0.0 if sample is None else float(sample)
