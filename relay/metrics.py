"""Prometheus metrics for operators, in the relay's own registry (never the global one).

Pure definitions plus a few helpers. The hot path (media frames) uses the pre-bound children
below, so observing a frame is one method call with no label lookup:

    t0 = time.perf_counter()
    ...                                   # Twilio frame in -> model append out
    metrics.HOP_INBOUND.observe(time.perf_counter() - t0)

Names as scraped (counters gain `_total`, histograms `_bucket`/`_sum`/`_count`):

    relay_live_calls                      gauge
    relay_calls_ended_total{reason}       counter (relay.actions.EndReason)
    relay_calls_refused_total{reason}     counter (busy, forged, bad_token)
    relay_prewarm_total{outcome}          counter
    relay_model_reconnects_total          counter
    relay_barge_ins_total                 counter
    relay_tool_calls_total{name,outcome}  counter
    relay_turn_latency_seconds            histogram (caller stops -> first model audio)
    relay_hop_latency_seconds{direction}  histogram (direction = inbound | outbound)
    relay_console_clients                 gauge
    relay_consoles_dropped_total          counter
    process_*                             the relay process (CPU, memory, open fds)
"""

from __future__ import annotations

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

from .actions import EndReason

# No `*_created` series: they double the scrape for nothing an operator reads.
disable_created_metrics()  # type: ignore[no-untyped-call]

REGISTRY: Final = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)

# Per-turn latency: the product lives between 0.2 s and 3 s.
TURN_BUCKETS: Final = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 5.0)
# One hop through the relay: 100 us to 50 ms.
HOP_BUCKETS: Final = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05)

# More distinct tool names than this are counted as "other" (tools come from configuration
# the console can change; a label per arbitrary name would grow without bound).
MAX_TOOL_NAMES: Final = 64

live_calls = Gauge("relay_live_calls", "Calls in progress.", registry=REGISTRY)
calls_ended = Counter(
    "relay_calls_ended", "Calls ended, by end reason.", ["reason"], registry=REGISTRY
)
calls_refused = Counter(
    "relay_calls_refused",
    "Calls refused before they started: busy (full or draining), forged (bad Twilio "
    "signature), bad_token (no valid stream token).",
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
console_clients = Gauge("relay_console_clients", "Consoles connected to /logs.", registry=REGISTRY)
consoles_dropped = Counter(
    "relay_consoles_dropped", "Consoles dropped for falling behind.", registry=REGISTRY
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

# Outcomes the relay reports today, shown at 0 from the start so rate() works from the first
# scrape; any other short word is counted too.
END_REASONS: Final = tuple(reason.value for reason in EndReason)
REFUSALS: Final = ("busy", "forged", "bad_token")
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


def render() -> tuple[bytes, str]:
    """The body and content type of a `/metrics` response."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def value(metric: str, /, **labels: str) -> float:
    """One sample's current value (0.0 when absent), e.g. value("relay_calls_ended_total",
    reason="caller_hung_up"); for tests and status views, not the hot path."""
    sample = REGISTRY.get_sample_value(metric, labels)
    return 0.0 if sample is None else float(sample)
