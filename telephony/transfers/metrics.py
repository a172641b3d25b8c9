"""The transfer metrics: how soon the agent's screen shows a transferred call, how long a prepared press takes
to become its ticket, and how many linked calls took the published route (no FastAGI) at the receiving site."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

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
        # From handling the dialplan's LinkagePress to its ticket stored (or the press given up): the sending
        # side's work on a prepared transfer, which the call does not wait for (the key press's FastAGI path is
        # linkage_agi_handling_seconds{script="onekey"}).
        self.press = Histogram("linkage_press_handling_seconds",
                               "Seconds from handling a prepared key press (UserEvent LinkagePress) until its ticket "
                               "is stored.", registry=registry, buckets=LATENCY_BUCKETS)
        # Linked calls that found their route published when they arrived (UserEvent LinkageArrived); the others
        # ask route_in (linkage_agi_requests_total{script="route_in"}).
        self.published_routes = Counter("linkage_published_routes_taken",
                                        "Linked calls routed from the route published at the push, without FastAGI.",
                                        registry=registry)
