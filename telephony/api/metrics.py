"""The HTTP metrics and the /metrics page: requests refused by status, and the whole registry rendered in
Prometheus's text format."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from telephony.delivery.metrics import DeliveryMetrics


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry, delivery: DeliveryMetrics | None = None) -> None:
        self.registry = registry
        # The page sets delivery's dead-letter gauge before rendering (read from Redis at scrape time).
        self.delivery = delivery or DeliveryMetrics(registry)
        self.refused = Counter("linkage_http_refused_total", "HTTP requests refused, by status.", ["status"],
                               registry=registry)

    def render(self) -> tuple[bytes, str]:
        """The page's body and content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
