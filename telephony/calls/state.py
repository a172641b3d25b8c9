"""The call's hand-over state: whether this site is handing the call to another platform, and how.

        idle ──transfer──→ transferring   (one-key or console blind transfer)
        idle ──threeway──→ threeway       (三方通话: the call is in a conference with the other platform)
        idle ──consult───→ consulting     (attended transfer: the agent consults the other platform first)
        idle ──return────→ returning      (退回: a received linked call goes back to the platform it came from)
    any ──not_stored | pbx_refused | recalled | consult_cancelled | returned──→ idle

A call that is not idle cannot be handed over again: that is the one refused move (409), and it is what stops a
second key press or console click making a second ticket. A call that was handed over successfully stays in its
state until it ends (the registry forgets it), because nothing of it is left here to hand over.

Settling back to idle is allowed from any state, idle included: the events that settle a hand-over can cross
(a failed dial and a refused BlindTransfer, or a recall on a call a restarted controller only learnt from a
resync), and a call must never stay marked once the caller is back with an agent here.
"""

from __future__ import annotations

from typing import Protocol

import structlog

from telephony.errors import Conflict

log = structlog.get_logger("calls")

IDLE, TRANSFERRING, THREEWAY, CONSULTING, RETURNING = "idle", "transferring", "threeway", "consulting", "returning"
STATES = (IDLE, TRANSFERRING, THREEWAY, CONSULTING, RETURNING)

# event -> (new state, states it may come from, or None for any)
RULES: dict[str, tuple[str, frozenset[str] | None]] = {
    "transfer": (TRANSFERRING, frozenset({IDLE})),
    "threeway": (THREEWAY, frozenset({IDLE})),
    "consult": (CONSULTING, frozenset({IDLE})),
    "return": (RETURNING, frozenset({IDLE})),
    "not_stored": (IDLE, None),  # the ticket could not be stored: the call stays with the agent
    "pbx_refused": (IDLE, None),  # Asterisk refused the BlindTransfer
    "recalled": (IDLE, None),  # the dial to the target failed: the caller comes back here
    "consult_cancelled": (IDLE, None),  # the consultation ended without a transfer
    "returned": (IDLE, None),  # the platform we sent it to returned the caller: back with an agent here
}
START = {"transfer": "transfer", "threeway": "threeway", "attended": "consult"}  # ticket mode -> event


class HandedOver(Protocol):
    """What a transition needs of a call (the registry's `Call`)."""

    linkedid: str
    handover: str
    ticket_id: str | None


def allowed(state: str, event: str) -> bool:
    _, sources = RULES[event]
    return sources is None or state in sources


def check(call: HandedOver, event: str) -> None:
    """409 when the call may not take this event now (it is already being handed over)."""
    if not allowed(call.handover, event):
        raise Conflict("this call is already being transferred", ticket_id=call.ticket_id or "")


def move(call: HandedOver, event: str) -> str:
    """Check, then apply in place: returns the new state. Refused moves raise and change nothing."""
    check(call, event)
    old, (new, _) = call.handover, RULES[event]
    call.handover = new
    log.info("call.transition", linkedid=call.linkedid, old=old, event_type=event, new=new)
    return new


def start_event(mode: str) -> str:
    """The event that starts a hand-over of the ticket mode given (transfer, threeway, attended)."""
    return START[mode]
