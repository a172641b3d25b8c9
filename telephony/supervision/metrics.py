"""The supervision metrics: overdue alerts by the state the ticket stayed in."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class SupervisionMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.overdue = Counter("linkage_tickets_overdue_total",
                               "Supervision alerts: tickets that stayed in a state past its deadline.", ["state"],
                               registry=registry)
