"""The delivery metrics: messages sent to peers, retried, parked as dead letters, and sent in batches."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class DeliveryMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.sent = Counter("linkage_delivery_sent_total", "Messages delivered to a peer.", ["peer"],
                            registry=registry)
        self.retries = Counter("linkage_delivery_retries_total", "Failed delivery attempts that will be retried.",
                               ["peer"], registry=registry)
        self.dead = Counter("linkage_delivery_dead_total", "Messages parked in the dead-letter list.", ["peer"],
                            registry=registry)
        self.batches = Counter("linkage_delivery_batches_total", "Batches a peer answered (POST /v1/batch), by peer.",
                               ["peer"], registry=registry)
        self.batched_messages = Counter(
            "linkage_delivery_batched_messages_total",
            "Messages sent in those batches (divided by batches: the batch size).", ["peer"], registry=registry)
        # Set when /metrics is scraped: the CLI replays and drops dead letters without the controller.
        self.dead_letters = Gauge("linkage_delivery_dead_letters", "Messages in the dead-letter list, by peer.",
                                  ["peer"], registry=registry)
        # Also set at scrape time, from the outbox itself: what waits for each peer, and for how long the
        # oldest message has waited (0 when nothing waits) — the delivery lag alert's input.
        self.queued = Gauge("linkage_delivery_queued", "Messages waiting in a peer's outbox.", ["peer"],
                            registry=registry)
        self.oldest_age = Gauge("linkage_delivery_oldest_age_seconds",
                                "Seconds the oldest message in a peer's outbox has waited (0: none waits).",
                                ["peer"], registry=registry)
        self.redis_up = Gauge("linkage_redis_up", "1 when the last scrape could read Redis.", registry=registry)
