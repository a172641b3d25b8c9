"""The ticket metrics: tickets created, events by type and origin, and the push delivery lag, all counted by
one subscriber to ticket changes (`on_ticket_change`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from telephony.metrics import LATENCY_BUCKETS
from telephony.tickets.models import Event, Ticket, epoch_of

# A push that failed is retried with backoff: its lag is seconds, not milliseconds.
DELIVERY_BUCKETS = (*LATENCY_BUCKETS, 5.0, 10.0, 30.0, 60.0)


class TicketMetrics:
    def __init__(self, registry: CollectorRegistry, site: str) -> None:
        self.registry = registry
        self.site = site
        self.created = Counter("linkage_tickets_created_total",
                               "Tickets created here by a transfer key or the console.", ["target"],
                               registry=registry)
        self.events = Counter("linkage_ticket_events_total", "Ticket events recorded or applied here, by type and "
                              "origin.", ["type", "origin"], registry=registry)
        # The two times come from two sites' clocks (the sender's `created`, our `delivered`): they must be
        # synchronised (NTP) for this to mean anything at millisecond scale.
        self.push_delivery_lag = Histogram(
            "linkage_push_delivery_lag_seconds",
            "Seconds from a ticket's creation at the sender to its delivery here (pushed or fetched).",
            registry=registry, buckets=DELIVERY_BUCKETS)

    def on_ticket_change(self, ticket: Ticket, event: Event) -> None:
        origin = "local" if event.actor.get("site") == self.site else "remote"
        self.events.labels(type=event.type, origin=origin).inc()
        if origin != "local":
            return
        if event.type == "created":
            self.created.labels(target=ticket.target.site).inc()
        elif event.type == "delivered":
            lag = delivery_lag(ticket, event)
            if lag is not None:
                self.push_delivery_lag.observe(lag)


def delivery_lag(ticket: Ticket, delivered: Event) -> float | None:
    """Seconds from the ticket's `created` event to `delivered`, from their ISO times; None without a created
    event. Never below 0: a sender's clock a little ahead must not make a negative latency."""
    created = next((e for e in ticket.history if e.type == "created"), None)
    if created is None:
        return None
    return max(0.0, epoch_of(delivered.at) - epoch_of(created.at))

