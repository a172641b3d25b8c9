"""Pushed tickets meeting the calls that follow them, on the receiving side.

The INVITE often outruns the push sent at the same moment. A `route_in` that does not find its ticket waits
`transfer.push_wait` for it here instead of asking the sender (busy with the same transfer). The tickets that
landed last are kept, bounded, for the call that follows each within milliseconds: it takes its ticket from here
instead of reading it back from Redis.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable

import structlog

from telephony.tickets.models import Ticket
from telephony.waits import wait_event

log = structlog.get_logger("transfers")
RECENT_LANDED = 256  # pushed tickets kept for the call that follows each
MAX_WAITING = 1000  # calls waiting for their push at once; beyond it a call reads the store and goes on


class Arrivals:
    def __init__(self, push_wait: float) -> None:
        self.push_wait = push_wait
        self.waiting: dict[str, asyncio.Event] = {}  # ticket id -> set when its push lands here
        self.landed: dict[str, Ticket] = {}  # ticket id -> the pushed ticket, for the call waiting on it
        self.recent: OrderedDict[str, Ticket] = OrderedDict()

    def land(self, ticket: Ticket) -> None:
        """TicketHooks.landed: a peer's ticket is verified (and about to be stored, or stored)."""
        self.recent[ticket.id] = ticket
        self.recent.move_to_end(ticket.id)
        while len(self.recent) > RECENT_LANDED:
            self.recent.popitem(last=False)
        waiting = self.waiting.get(ticket.id)
        if waiting is not None:
            self.landed[ticket.id] = ticket
            waiting.set()

    async def ticket(self, ticket_id: str, read: Callable[[str], Awaitable[Ticket | None]]) -> Ticket | None:
        """The ticket as `read` from the store, or the push that lands within `push_wait`. The wait is
        registered before the first read, so a push landing in between is not missed."""
        landed = self.recent.pop(ticket_id, None)
        if landed is not None:
            return landed
        if self.push_wait <= 0 or len(self.waiting) > MAX_WAITING:
            return await read(ticket_id)
        arrived = self.waiting.setdefault(ticket_id, asyncio.Event())
        try:
            ticket = await read(ticket_id)
            if ticket is None:
                await wait_event(arrived, self.push_wait)
                ticket = self.landed.pop(ticket_id, None) or await read(ticket_id)
                if ticket is not None:
                    log.info("route_in.push_arrived")
            return ticket
        finally:
            self.waiting.pop(ticket_id, None)
            self.landed.pop(ticket_id, None)
