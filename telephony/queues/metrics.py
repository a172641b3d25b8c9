"""The queue's Prometheus metrics: who waits, the agents by state, surge."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class QueueMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.waiting = Gauge("linkage_queue_waiting", "Callers waiting in the site's queue", registry=registry)
        self.oldest = Gauge("linkage_queue_oldest_wait_seconds", "How long the oldest waiting caller has waited",
                            registry=registry)
        self.members = Gauge("linkage_queue_members", "Agents in the queue by state", ["state"], registry=registry)
        self.surge = Gauge("linkage_surge_active", "1 while new calls overflow to the county seats", registry=registry)
        self.surged = Counter("linkage_surge_calls", "Calls sent to a county seat in surge", ["to"],
                              registry=registry)
