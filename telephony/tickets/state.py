"""The ticket state machine (受理反馈闭环): one table, one check, one function that applies an event.

    created → delivered → signed_for (签收) → accepted (受理) | returned (退回, reason)
            → in_progress → resolved (办结, result) → followed_up (回访, satisfaction) → closed (归档)
    plus transfer_failed (the call never reached the other side) and cancelled.

Informational events keep the state: offered (a phone rings), abandoned (the caller hung up before anyone
signed for it: flag caller_abandoned), amended (ticket fields corrected), overdue (supervision flag),
routed (the receiving city site moved the ticket on to the county site that owns its division), decided (the
outcome of a three-way call: who keeps the caller, by which rule).

Who may record what: the receiving platform signs for, accepts, returns, works and resolves; the sending
platform follows up, closes, cancels and declares a transfer failed. A local request that breaks these rules
is refused (403 / 409 / 400) and changes nothing. A peer's event that is legal for its author but not from
the current state (late, or crossing one of ours) is kept in the history and never moves the ticket back.
"""

from __future__ import annotations

from dataclasses import dataclass

from telephony.errors import Conflict, Forbidden, InvalidInput
from telephony.tickets.models import DRAFT_FIELDS, Event, Ticket, parse_draft

SENDER, RECEIVER, ANY, RELAY = "sender", "receiver", "any", "relay"
EARLY = frozenset({"created", "delivered"})

# event type -> (who may record it, new state or None to keep it, states it may come from or None for any)
RULES: dict[str, tuple[str, str | None, frozenset[str] | None]] = {
    "created": (SENDER, None, None),
    "delivered": (RECEIVER, "delivered", frozenset({"created"})),
    "offered": (RECEIVER, None, None),
    "signed_for": (RECEIVER, "signed_for", EARLY),
    "abandoned": (RECEIVER, None, None),
    "accepted": (RECEIVER, "accepted", frozenset({"delivered", "signed_for"})),
    # again from returned: the returning agent completes the reason a key press left pending
    "returned": (RECEIVER, "returned", frozenset({"delivered", "signed_for", "returned"})),
    "in_progress": (RECEIVER, "in_progress", frozenset({"accepted"})),
    "resolved": (RECEIVER, "resolved", frozenset({"accepted", "in_progress"})),
    "followed_up": (SENDER, "followed_up", frozenset({"resolved"})),
    "closed": (SENDER, "closed", frozenset({"resolved", "followed_up", "returned", "transfer_failed"})),
    "transfer_failed": (SENDER, "transfer_failed", EARLY),
    "cancelled": (SENDER, "cancelled", frozenset({"created", "delivered", "signed_for", "returned",
                                                   "transfer_failed"})),
    "amended": (ANY, None, None),
    "overdue": (ANY, None, None),
    "routed": (RECEIVER, None, EARLY),
    "transferred": (SENDER, None, None),
    "decided": (ANY, None, None),
}
REQUIRED = {"returned": "reason", "resolved": "result", "followed_up": "satisfaction", "transfer_failed": "reason"}
SATISFACTION = ("satisfied", "basically_satisfied", "dissatisfied")
FINAL = frozenset({"closed", "cancelled"})


@dataclass(frozen=True)
class Applied:
    duplicate: bool
    old: str
    new: str
    moved: bool


def role_of(ticket: Ticket, site: str) -> str:
    if site == ticket.source.site:
        return SENDER
    if site == ticket.target.site:
        return RECEIVER
    return RELAY


def check_author(ticket: Ticket, event: Event) -> None:
    """403 when the actor's site may not record this event; 400 when a required payload item is missing."""
    who, _, _ = RULES[event.type]
    role = role_of(ticket, event.actor.get("site", ""))
    if who not in (ANY, role):
        raise Forbidden(f"the {role} platform may not record {event.type!r} on this ticket",
                        role=role, event_type=event.type)
    need = REQUIRED.get(event.type)
    if need and not str(event.payload.get(need, "")).strip():
        raise InvalidInput(f"{event.type!r} needs payload.{need}", field=f"payload.{need}")
    if event.type == "followed_up" and event.payload.get("satisfaction") not in SATISFACTION:
        raise InvalidInput(f"payload.satisfaction must be one of {', '.join(SATISFACTION)}",
                           field="payload.satisfaction")
    if event.type == "amended":
        if not event.payload or not set(event.payload) <= DRAFT_FIELDS:
            raise InvalidInput(f"an amendment changes some of {sorted(DRAFT_FIELDS)}", field="payload")
        parse_draft(event.payload)


def allowed_from(ticket: Ticket, event_type: str) -> bool:
    _, _, sources = RULES[event_type]
    if ticket.status in FINAL:
        return False
    return sources is None or ticket.status in sources


def check(ticket: Ticket, event: Event) -> None:
    """Everything a local request must pass before it is recorded: author, payload, and current state."""
    check_author(ticket, event)
    if not allowed_from(ticket, event.type):
        raise Conflict(f"cannot record {event.type!r} on a ticket that is {ticket.status}",
                       status=ticket.status, event_type=event.type)


def apply_event(ticket: Ticket, event: Event) -> Applied:
    """Apply in place (the caller persists). Duplicates change nothing; an event that is not allowed from the
    current state is recorded but does not move the ticket."""
    old = ticket.status
    if event.id in {e.id for e in ticket.history}:
        return Applied(True, old, old, False)
    _, new, _ = RULES[event.type]
    moves = allowed_from(ticket, event.type)
    if moves:
        _effects(ticket, event)
        if new is not None:
            ticket.status = new
    ticket.version += 1
    event.version = ticket.version
    ticket.history.append(event)
    ticket.updated_at = event.at
    return Applied(False, old, ticket.status, moves)


def _flag(ticket: Ticket, flag: str) -> None:
    if flag not in ticket.flags:
        ticket.flags.append(flag)


def _effects(ticket: Ticket, event: Event) -> None:
    p = event.payload
    agent = event.actor.get("agent", "")
    if event.type == "offered" and agent and ticket.status in EARLY:
        ticket.offered_to = agent
    elif event.type == "signed_for" and agent:
        ticket.signed_for_by = agent
    elif event.type == "abandoned" and ticket.status in EARLY and p.get("dial_status") == "cancel":
        _flag(ticket, "caller_abandoned")
    elif event.type == "returned":
        ticket.return_reason = str(p.get("reason", ""))
    elif event.type == "resolved":
        ticket.result = str(p.get("result", ""))
    elif event.type == "followed_up":
        ticket.satisfaction = str(p.get("satisfaction", ""))
    elif event.type == "overdue":
        _flag(ticket, "overdue")
    elif event.type == "amended":
        for key, value in p.items():
            if key in DRAFT_FIELDS:
                setattr(ticket, key, str(value))
    elif event.type == "decided":
        ticket.decision = {k: str(p.get(k, "")) for k in ("keeper", "rule", "by")}
    elif event.type == "routed" and isinstance(p.get("site"), str):
        ticket.target.site = p["site"]
        if p["site"] not in ticket.path:
            ticket.path.append(p["site"])
