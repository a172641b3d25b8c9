"""The FastAGI metrics: requests by script, and how long each script's handling takes."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from telephony.metrics import LATENCY_BUCKETS


class AgiMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter("linkage_agi_requests_total", "FastAGI requests by script.", ["script"],
                                registry=registry)
        # From the connection accepted to the handler's return: what the dialplan waits for (onekey: the key
        # press until the transfer is dialled; route_in: the call arriving until it knows where to ring).
        self.handling = Histogram("linkage_agi_handling_seconds", "FastAGI handling time by script.", ["script"],
                                  registry=registry, buckets=LATENCY_BUCKETS)
