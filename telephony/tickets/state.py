"""The ticket state machine: one table, one function that applies an event.

States of the call-side life so far: created → delivered → offered → signed_for (签收), or abandoned when the
caller hangs up before anyone signs for it. Informational events (transferred, amended) keep the state.
An event that is not allowed from the current state is still kept in the history (it happened) but never moves
the ticket backwards; a duplicate event id is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

from telephony.tickets.models import Event, Ticket

TRANSITIONS: dict[str, dict[str, str]] = {
    "created": {"delivered": "delivered", "offered": "offered", "signed_for": "signed_for",
                "abandoned": "abandoned"},
    "delivered": {"offered": "offered", "signed_for": "signed_for", "abandoned": "abandoned"},
    "offered": {"offered": "offered", "signed_for": "signed_for", "abandoned": "abandoned"},
    "signed_for": {},
    "abandoned": {},
}
KEEP_STATE = {"created", "transferred", "amended", "delivered"}


@dataclass(frozen=True)
class Applied:
    duplicate: bool
    old: str
    new: str


def apply_event(ticket: Ticket, event: Event) -> Applied:
    """Apply in place. Returns what happened so the caller can log `old → event → new` and persist."""
    old = ticket.status
    if event.id in ticket.event_ids():
        return Applied(True, old, old)
    new = TRANSITIONS.get(old, {}).get(event.type)
    if new is None and event.type not in KEEP_STATE:
        new = old  # late or out-of-place: recorded, never a step backwards
    ticket.status = new or old
    ticket.version += 1
    event.version = ticket.version
    ticket.history.append(event)
    ticket.updated_at = event.at
    if event.type == "offered" and event.actor.get("agent"):
        ticket.offered_to = event.actor["agent"]
    if event.type == "signed_for" and event.actor.get("agent"):
        ticket.signed_for_by = event.actor["agent"]
    return Applied(False, old, ticket.status)
