"""Deadlines per state, computed from the ticket itself, and the task that raises overdue alerts.

A deadline is derived from the ticket's status and the time of the event that started it, so nothing but the
tickets needs to survive a restart: at start the supervisor reloads every open ticket (an index kept in the
same atomic write as the ticket) and schedules again. Only the receiving site supervises the receiver's
deadlines; its `overdue` event travels to the sender like every other event.
"""

from __future__ import annotations

import asyncio
import heapq
from datetime import UTC, datetime, timedelta

import structlog

from telephony.config import Deadlines, SiteConfig
from telephony.errors import LinkageError
from telephony.metrics import Metrics
from telephony.tickets.models import Event, Ticket
from telephony.tickets.services import TicketService
from telephony.tickets.store import STORE_ERRORS
from telephony.waits import raise_if_cancelled, wait_event

log = structlog.get_logger("supervision")


def _at(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def add_working_days(start: datetime, days: float, working: tuple[int, ...]) -> datetime:
    """`days` working days after `start`: time passes only on working weekdays (no holiday calendar)."""
    remaining = days * 86400.0
    t = start
    while remaining > 0:
        midnight = (t + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        if t.weekday() in working:
            step = min(remaining, (midnight - t).total_seconds())
            t += timedelta(seconds=step)
            remaining -= step
        else:
            t = midnight
    return t


def _last(ticket: Ticket, event_type: str) -> Event | None:
    return next((e for e in reversed(ticket.history) if e.type == event_type), None)


def deadline(ticket: Ticket, d: Deadlines) -> tuple[str, datetime] | None:
    """(the state the ticket must reach, by when), or None when nothing is due."""
    if ticket.status in ("created", "delivered"):
        offered = _last(ticket, "offered")
        return ("signed_for", _at(offered.at) + timedelta(seconds=d.signed_for)) if offered else None
    if ticket.status == "signed_for":
        signed = _last(ticket, "signed_for")
        return ("accepted", _at(signed.at) + timedelta(seconds=d.accepted)) if signed else None
    if ticket.status in ("accepted", "in_progress"):
        accepted = _last(ticket, "accepted")
        if accepted:
            return "resolved", add_working_days(_at(accepted.at), d.resolved_days, d.working_days)
    return None


def already_alerted(ticket: Ticket, state: str) -> bool:
    return any(e.type == "overdue" and e.payload.get("state") == state for e in ticket.history)


class Supervisor:
    def __init__(self, config: SiteConfig, tickets: TicketService, metrics: Metrics) -> None:
        self.config = config
        self.tickets = tickets
        self.metrics = metrics
        self.heap: list[tuple[float, str, str]] = []
        self.wake = asyncio.Event()
        tickets.listeners.append(self.on_change)

    def on_change(self, ticket: Ticket, _: Event) -> None:
        self.schedule(ticket)

    def schedule(self, ticket: Ticket) -> None:
        if ticket.target.site != self.config.name:
            return
        due = deadline(ticket, self.config.deadlines)
        if due is not None and not already_alerted(ticket, due[0]):
            heapq.heappush(self.heap, (due[1].timestamp(), ticket.id, due[0]))
            self.wake.set()

    async def reload(self) -> int:
        count = 0
        for ticket_id in await self.tickets.store.open_ids():
            ticket = await self.tickets.store.get(ticket_id)
            if ticket is not None:
                self.schedule(ticket)
                count += 1
        return count

    async def run(self) -> None:
        delay = 0.5
        while True:  # the store may be restarting when we start: wait for it rather than die
            try:
                log.info("supervision.started", open_tickets=await self.reload())
                break
            except STORE_ERRORS as exc:
                log.warning("supervision.store_unavailable", error=exc.__class__.__name__, retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        while True:
            raise_if_cancelled()
            now = datetime.now(UTC).timestamp()
            while self.heap and self.heap[0][0] <= now:
                _, ticket_id, state = heapq.heappop(self.heap)
                try:
                    await self._check(ticket_id, state)
                except STORE_ERRORS as exc:  # store away for a moment: check this deadline again soon
                    log.warning("supervision.store_unavailable", error=exc.__class__.__name__, retry_in=1.0)
                    heapq.heappush(self.heap, (now + 1.0, ticket_id, state))
                    break
            timeout = min(1.0, self.heap[0][0] - now) if self.heap else 1.0
            self.wake.clear()
            await wait_event(self.wake, max(timeout, 0.01))

    async def _check(self, ticket_id: str, state: str) -> None:
        ticket = await self.tickets.store.get(ticket_id)
        if ticket is None:
            return
        due = deadline(ticket, self.config.deadlines)
        if due is None or due[0] != state or already_alerted(ticket, state):
            return  # moved on in time, or already alerted
        if due[1].timestamp() > datetime.now(UTC).timestamp():
            self.schedule(ticket)  # the deadline moved (a newer event restarted it)
            return
        structlog.contextvars.bind_contextvars(ticket_id=ticket_id)
        try:
            await self.tickets.record(ticket_id, "overdue", "", {"state": state,
                                                                  "deadline": due[1].isoformat()})
        except LinkageError as exc:
            log.warning("supervision.alert_failed", error=exc.message)
            return
        self.metrics.inc("linkage_tickets_overdue_total", state=state)
        log.warning("supervision.overdue", state=state, status=ticket.status)
