"""The transfer metrics: how soon the agent's screen shows a transferred call."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram

from telephony.metrics import LATENCY_BUCKETS


class TransferMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        # From the DialBegin to the agent reaching the handler until `offered` is recorded; the stream publishes
        # it inside that record (listeners run synchronously). The wait before the handler is in
        # linkage_ami_event_lag_seconds.
        self.screen_pop = Histogram("linkage_screen_pop_seconds",
                                    "Seconds from handling the DialBegin to an agent until the screen pop is "
                                    "published on the stream.", registry=registry, buckets=LATENCY_BUCKETS)
