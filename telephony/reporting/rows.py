"""A ticket as reporting rows: one `tickets` row (the snapshot of its copy) and one `ticket_events` row per event
of its history. Pure: the ticket was validated when it was stored; a payload item of an unexpected shape is
kept as text, cut to the column's length, never trusted to be a string."""

from __future__ import annotations

from typing import Any

import msgspec

from telephony.tickets.models import Event, Ticket, epoch_of

TICKET_COLUMNS = ("site", "id", "direction", "source_platform", "source_site", "target_platform", "target_site",
                  "mode", "channel", "urgency", "division", "category", "status", "caller_number", "agent_id",
                  "parent", "return_reason", "decision_keeper", "decision_rule", "decision_by", "satisfaction",
                  "advice_followed", "advice_platform", "overdue", "caller_abandoned", "created_at", "created_ts",
                  "updated_at", "version")
EVENT_COLUMNS = ("site", "id", "ticket_id", "type", "at", "at_ts", "actor_platform", "actor_site", "actor_agent",
                 "seq", "reason", "detail", "payload")
REASON_LENGTH = 1000

# which payload items an event type's `reason` and `detail` columns hold (the figures group by them)
_REASON = {"returned": "reason", "transfer_failed": "reason", "abandoned": "reason", "overdue": "state",
           "decided": "rule", "routed": "reason", "followed_up": "satisfaction", "transferred": "result"}
_DETAIL = {"returned": "with_caller", "abandoned": "dial_status", "overdue": "deadline", "decided": "keeper",
           "routed": "site", "delivered": "via", "transferred": "mode"}


def ticket_row(site: str, ticket: Ticket) -> tuple[Any, ...]:
    decision = ticket.decision
    followed = None if ticket.advice is None else int(bool(ticket.advice.followed))
    advised = "" if ticket.advice is None else ticket.advice.platform
    return (site, ticket.id, ticket.direction, ticket.source.platform, ticket.source.site, ticket.target.platform,
            ticket.target.site, ticket.mode, ticket.channel, ticket.urgency, ticket.division, ticket.category,
            ticket.status, ticket.caller_number, ticket.agent_id, ticket.parent, ticket.return_reason,
            str(decision.get("keeper", "")), str(decision.get("rule", "")), str(decision.get("by", "")),
            ticket.satisfaction, followed, advised, int("overdue" in ticket.flags),
            int("caller_abandoned" in ticket.flags),
            ticket.created_at, epoch_of(ticket.created_at), ticket.updated_at or ticket.created_at, ticket.version)


def event_row(site: str, event: Event) -> tuple[Any, ...]:
    payload = event.payload or {}
    return (site, event.id, event.ticket_id, event.type, event.at, epoch_of(event.at),
            str(event.actor.get("platform", "")), str(event.actor.get("site", "")),
            str(event.actor.get("agent", "")), event.seq, _item(payload, _REASON.get(event.type)),
            _item(payload, _DETAIL.get(event.type)), msgspec.json.encode(payload).decode())


def _item(payload: dict[str, Any], key: str | None) -> str:
    if key is None or key not in payload or payload[key] is None:
        return ""
    value = payload[key]
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)[:REASON_LENGTH]
