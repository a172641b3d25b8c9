"""What every context's metrics share: the histogram buckets, and reading one sample back (from a registry or
a scraped page).

Each context declares its own metrics next to its code (`agi/metrics.py`, `ami/metrics.py`,
`delivery/metrics.py`, …) on a `prometheus_client.CollectorRegistry` that the composition root creates, one per
controller: no default registry, so several controllers (and tests) live side by side in one process.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

# Seconds. The paths measured take about a millisecond when all is well; the upper buckets catch a wait for
# a pushed ticket, a slow Redis or a backlog.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """The value of one exposed sample (e.g. `linkage_delivery_sent_total`, peer="110"); 0 when not exposed."""
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def scraped_sample(page: str, name: str, **labels: str) -> float:
    """The same from a scraped /metrics page (e.g. `linkage_agi_handling_seconds_count`, script="onekey")."""
    for family in text_string_to_metric_families(page):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return 0.0
