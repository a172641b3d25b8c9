"""What leaves the tickets context when a ticket changes, declared in one place and filled in the composition
root only (telephony/controller.py): a reader finds every consumer of a ticket change there.

- `changed`: after every durable change, with the event that caused it (the console stream, metrics, the
  supervisor's alarm clock);
- `landed`: a peer's ticket is verified and about to be stored, and again once stored (a call waiting to ring
  here goes on at once; it only reads where the ticket goes, anything that changes it waits for the write);
- `queued`: a message for a peer went into its outbox (wakes that peer's delivery worker; the head, when the
  outbox was empty, lets it send without reading it back);
- `early`: a prepared transfer's ticket push, handed to that peer's worker *before* its durable write (the call
  left already; the reservation and the PBX's press record make the ticket again if the write fails), so the far
  side has it sooner; the outbox entry the write then queues is not sent a second time once the early push got
  through;
- `deadline_of`: the supervision rule for a ticket's next deadline, written with the ticket in one atomic step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from telephony.tickets.models import Event, Ticket
    from telephony.tickets.store import Head

Changed = Callable[["Ticket", "Event"], None]
Landed = Callable[["Ticket"], None]
Queued = Callable[[str, "Head | None"], None]
Early = Callable[[str, "dict[str, Any]"], None]
DeadlineOf = Callable[["Ticket"], "float | None"]


def _no_deadline(_: Ticket) -> float | None:
    return None


def _nobody(_: str, __: Head | None) -> None:
    return None


def _not_early(_: str, __: dict[str, Any]) -> None:
    return None


@dataclass(frozen=True)
class TicketHooks:
    changed: Sequence[Changed] = ()
    landed: Sequence[Landed] = ()
    queued: Queued = _nobody
    early: Early = _not_early
    deadline_of: DeadlineOf = _no_deadline

    def emit(self, ticket: Ticket, event: Event) -> None:
        for hook in self.changed:
            hook(ticket, event)

    def land(self, ticket: Ticket) -> None:
        for hook in self.landed:
            hook(ticket)
