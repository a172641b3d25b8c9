"""The AMI metrics: events received, and how long an event waited before the services handled it."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from telephony.metrics import LATENCY_BUCKETS


class AmiMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.events = Counter("linkage_ami_events_total", "AMI events received from this site's PBX.",
                              registry=registry)
        # Asterisk's `Timestamp` header (manager.conf: timestampevents = yes) until the event's handlers start:
        # the AMI socket, the parse and the queue. AMI listens on loopback, so both clocks are the same host's.
        self.event_lag = Histogram("linkage_ami_event_lag_seconds",
                                   "Seconds from Asterisk stamping an AMI event to the controller handling it.",
                                   registry=registry, buckets=LATENCY_BUCKETS)
        # 1 while logged in to the PBX (the readiness route's AMI half; alert rules watch it)
        self.connected = Gauge("linkage_ami_connected", "1 while the controller is logged in to its PBX's AMI.",
                               registry=registry)
