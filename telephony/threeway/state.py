"""The three-way room and the consultation (attended transfer): their states, a table each, one function that moves.

A room (三方通话) is keyed by its ticket id, which is also the ConfBridge's name:

    dialling ──far_joined──→ joined            (the other platform's leg entered the conference)
    dialling | joined ──accepted | timeout──→ decided
    joined ──both_left──→ decided               (both agents left before either accepted)
    dialling | joined | decided ──caller_left──→ closed
    decided ──emptied──→ closed
    dialling | joined ──emptied──→ deserted ──timeout──→ closed

`decided` means an outcome is on the ticket (or is being recorded): every later key press, deadline or departure
leaves it alone. A room leaves the service's index when it is closed or deserted. A deserted room emptied before
anyone decided: no AMI event reaches it any more, but its deadline still decides by the plan's rule, so the ticket
carries an outcome all the same.

A consultation is one record per ticket; its 4-digit slot stands for the ticket until the consultation dials:

    reserved ──dialled──→ consulting ──completed──→ completed   (Asterisk's AttendedTransfer succeeded)
                                     ──cancelled──→ cancelled   (the consultation hung up: the caller is back)
    reserved ──expired──→ expired                                (never dialled within SLOT_SECONDS)
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import structlog

from telephony.errors import Conflict

log = structlog.get_logger("threeway")

DIALLING, JOINED, DECIDED, CLOSED, DESERTED = "dialling", "joined", "decided", "closed", "deserted"
OPEN = frozenset({DIALLING, JOINED})
ROOM_RULES: dict[str, tuple[str, frozenset[str]]] = {  # event -> (new state, states it may come from)
    "far_joined": (JOINED, frozenset({DIALLING})),
    "accepted": (DECIDED, OPEN),
    "timeout": (DECIDED, OPEN),
    "both_left": (DECIDED, frozenset({JOINED})),
    "caller_left": (CLOSED, OPEN | {DECIDED}),
}
# `emptied` and a deserted room's `timeout` depend on whether the room was decided, so they have their own rows
ROOM_RULES_FROM: dict[tuple[str, str], str] = {
    ("emptied", DIALLING): DESERTED,
    ("emptied", JOINED): DESERTED,
    ("emptied", DECIDED): CLOSED,
    ("timeout", DESERTED): CLOSED,
}

RESERVED, CONSULTING, COMPLETED, CANCELLED, EXPIRED = "reserved", "consulting", "completed", "cancelled", "expired"
CONSULT_RULES: dict[str, tuple[str, frozenset[str]]] = {
    "dialled": (CONSULTING, frozenset({RESERVED})),
    "completed": (COMPLETED, frozenset({CONSULTING})),
    "cancelled": (CANCELLED, frozenset({CONSULTING})),
    "expired": (EXPIRED, frozenset({RESERVED})),
}
SLOT_SECONDS = 120.0  # a reserved slot whose consultation never dialled is freed after this


@dataclass
class Room:
    ticket_id: str
    caller: str  # channel names
    agent: str
    agent_id: str
    far_dial: str
    members: dict[str, str] = field(default_factory=dict)  # channel -> uniqueid, while in the conference
    far: str = ""
    agents_left: set[str] = field(default_factory=set)
    timer: asyncio.Task[None] | None = None
    state: str = DIALLING

    @property
    def open(self) -> bool:
        """Still negotiating: no outcome yet and the conference is there."""
        return self.state in OPEN


@dataclass
class Consult:
    ticket_id: str
    agent: str  # the consulting agent's channel
    exten: str  # <dial>*<ticket id>: what the consultation dials
    slot: str  # the linkage-consult-out extension standing for this ticket until it dials
    taken: float  # time.monotonic() when the slot was reserved
    local: str = ""  # Local/<slot>@linkage-consult-out-N, once the consultation dials
    state: str = RESERVED


def room_next(state: str, event: str) -> str | None:
    """The state a room moves to on this event, or None when the event may not happen now."""
    new = ROOM_RULES_FROM.get((event, state))
    if new is not None:
        return new
    rule = ROOM_RULES.get(event)
    return rule[0] if rule is not None and state in rule[1] else None


def consult_next(state: str, event: str) -> str | None:
    rule = CONSULT_RULES.get(event)
    return rule[0] if rule is not None and state in rule[1] else None


def can(thing: Room | Consult, event: str) -> bool:
    return _next(thing, event) is not None


def move(thing: Room | Consult, event: str) -> str:
    """Check, then apply in place: returns the new state. An illegal move raises and changes nothing."""
    new = _next(thing, event)
    kind = "room" if isinstance(thing, Room) else "consult"
    if new is None:
        raise Conflict(f"a {kind} that is {thing.state} cannot take {event!r}", ticket_id=thing.ticket_id,
                       state=thing.state, event=event)
    old, thing.state = thing.state, new
    log.info(f"threeway.{kind}_transition", ticket_id=thing.ticket_id, old=old, event_type=event, new=new)
    return new


def _next(thing: Room | Consult, event: str) -> str | None:
    return room_next(thing.state, event) if isinstance(thing, Room) else consult_next(thing.state, event)
