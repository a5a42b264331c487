"""The store's Prometheus metrics, in the relay's registry (served on /metrics).

relay_history_writes_total              counter  call records written
relay_history_write_retries_total       counter  batch writes that failed and will be retried
relay_history_dropped_total{reason}     counter  records never written:
                                                 queue_full | rejected | shutdown
relay_history_queue_depth               gauge    records waiting to be written
relay_history_webhooks_total{outcome}   counter  post-call webhook deliveries:
                                                 delivered | retried | failed | dropped
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge

from relay.metrics import REGISTRY

DROP_REASONS: Final = ("queue_full", "rejected", "shutdown")
WEBHOOK_OUTCOMES: Final = ("delivered", "retried", "failed", "dropped")

writes = Counter("relay_history_writes", "Call records written to the store.", registry=REGISTRY)
write_retries = Counter(
    "relay_history_write_retries",
    "Batch writes that failed (database unreachable) and will be retried.",
    registry=REGISTRY,
)
dropped = Counter(
    "relay_history_dropped",
    "Call records never written, by reason: queue_full, rejected (by the database), shutdown.",
    ["reason"],
    registry=REGISTRY,
)
queue_depth = Gauge(
    "relay_history_queue_depth", "Call records waiting to be written.", registry=REGISTRY
)
webhooks = Counter(
    "relay_history_webhooks",
    "Post-call webhook deliveries, by outcome: delivered, retried, failed, dropped.",
    ["outcome"],
    registry=REGISTRY,
)
for _reason in DROP_REASONS:
    dropped.labels(_reason)
for _outcome in WEBHOOK_OUTCOMES:
    webhooks.labels(_outcome)


def webhook(outcome: str) -> None:
    webhooks.labels(outcome).inc()
