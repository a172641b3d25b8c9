"""Deadlines per state, computed from the ticket itself, and the task that raises overdue alerts.

A deadline is derived from the ticket's status and the time of the event that started it. Every write of a
ticket also writes its next deadline into a Redis zset, in the same atomic step, so the deadlines survive a
restart and take no controller memory however many tickets are open. Only the receiving site supervises the
receiver's deadlines; its `overdue` event travels to the sender like every other event.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import structlog

from telephony.config import Deadlines, SiteConfig
from telephony.errors import LinkageError
from telephony.supervision.metrics import SupervisionMetrics
from telephony.tickets.models import Event, Ticket
from telephony.tickets.services import TicketService
from telephony.tickets.store import PREFIX, STORE_ERRORS
from telephony.waits import raise_if_cancelled, wait_event

log = structlog.get_logger("supervision")
RELOADED = f"{PREFIX}deadlines:reloaded"  # set once every open ticket written before the zset was scheduled


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
    if ticket.status == "delivered" and ticket.mode == "referral":
        # no call, so no phone rings to be signed for: the referral is due to be accepted once delivered
        delivered = _last(ticket, "delivered")
        return ("accepted", _at(delivered.at) + timedelta(seconds=d.accepted)) if delivered else None
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


class DeadlineRule:
    """When a ticket's next deadline falls (an epoch time), if this site supervises it and has not alerted it
    yet; None otherwise. The store writes it with every ticket change (TicketHooks.deadline_of)."""

    def __init__(self, config: SiteConfig) -> None:
        self.config = config

    def __call__(self, ticket: Ticket) -> float | None:
        if ticket.target.site != self.config.site.name:
            return None
        due = deadline(ticket, self.config.supervision)
        if due is None or already_alerted(ticket, due[0]):
            return None
        return due[1].timestamp()


class Alarm:
    """Wakes the supervisor when a ticket change (TicketHooks.changed) brings a deadline earlier than the one it
    sleeps towards; the deadline itself is already stored with the ticket."""

    def __init__(self, rule: DeadlineRule) -> None:
        self.rule = rule
        self.wake = asyncio.Event()
        self.next_at = float("inf")  # the earliest deadline the supervisor knows of

    def on_change(self, ticket: Ticket, _: Event) -> None:
        due = self.rule(ticket)
        if due is not None and due < self.next_at:
            self.next_at = due
            self.wake.set()


class Supervisor:
    """Raises overdue alerts. The deadlines live in Redis (a zset of ticket id -> next deadline, written in the
    same atomic step as the ticket), so the controller's memory does not grow with the open tickets and a
    restart loses none. This task only sleeps until the earliest one and checks it."""

    def __init__(self, config: SiteConfig, tickets: TicketService, alarm: Alarm, metrics: SupervisionMetrics) -> None:
        self.config = config
        self.tickets = tickets
        self.alarm = alarm
        self.due_at = alarm.rule
        self.metrics = metrics

    async def reload(self) -> int | None:
        """Once per Redis: schedule every open ticket, for the tickets written before their deadlines were kept
        in Redis (every write keeps them since). Returns the number of open tickets read, or None when an earlier
        start already did it."""
        if await self.tickets.store.redis.exists(RELOADED):
            return None
        count = 0
        for ticket_id in await self.tickets.store.open_ids():
            ticket = await self.tickets.store.get(ticket_id)
            if ticket is None:
                continue
            count += 1
            due = self.due_at(ticket)
            if due is not None:
                await self.tickets.store.set_deadline(ticket.id, due)
        await self.tickets.store.redis.set(RELOADED, "1")
        return count

    async def run(self) -> None:
        delay = 0.5
        while True:  # the store may be restarting when we start: wait for it rather than die
            try:
                log.info("supervision.started", open_tickets_rescheduled=await self.reload())
                break
            except STORE_ERRORS as exc:
                log.warning("supervision.store_unavailable", error=exc.__class__.__name__, retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        while True:
            raise_if_cancelled()
            self.alarm.wake.clear()
            timeout = 1.0
            try:
                await self.tick()
                nxt = await self.tickets.store.next_deadline()
                self.alarm.next_at = float("inf") if nxt is None else nxt
                timeout = self.alarm.next_at - datetime.now(UTC).timestamp()
            except STORE_ERRORS as exc:  # store away for a moment: the deadlines wait in it
                log.warning("supervision.store_unavailable", error=exc.__class__.__name__, retry_in=1.0)
                self.alarm.next_at = float("inf")
            await wait_event(self.alarm.wake, min(max(timeout, 0.01), 1.0))

    async def tick(self) -> int:
        """Check every deadline that has passed; returns how many were checked."""
        checked = 0
        while True:
            due = await self.tickets.store.due(datetime.now(UTC).timestamp())
            for ticket_id, seen in due:
                try:
                    await self._check(ticket_id, seen)
                except STORE_ERRORS:
                    raise
                except Exception as exc:  # a ticket that cannot be read: say so once, do not retry every second
                    log.error("supervision.check_failed", error=exc.__class__.__name__, ticket_id=ticket_id)
                    await self.tickets.store.drop_deadline(ticket_id, seen)
            checked += len(due)
            if len(due) < 100:
                return checked

    async def _check(self, ticket_id: str, seen: float) -> None:
        """A deadline (as stored: `seen`) has passed: alert, unless the ticket moved on in time."""
        store = self.tickets.store
        ticket = await store.get(ticket_id)
        due = self.due_at(ticket) if ticket is not None else None
        state = deadline(ticket, self.config.supervision) if ticket is not None else None
        if ticket is None or due is None or state is None:
            await store.drop_deadline(ticket_id, seen)  # gone, moved on, or already alerted
            return
        if due > datetime.now(UTC).timestamp():
            await store.set_deadline(ticket_id, due)  # the deadline moved (a newer event restarted it)
            return
        structlog.contextvars.bind_contextvars(ticket_id=ticket_id)
        try:  # the write that records the alert also drops (or moves on) the deadline
            await self.tickets.record(ticket_id, "overdue", "", {"state": state[0],
                                                                  "deadline": state[1].isoformat()})
        except LinkageError as exc:
            log.warning("supervision.alert_failed", error=exc.message)
            await store.drop_deadline(ticket_id, seen)  # not retried every second
            return
        self.metrics.overdue.labels(state=state[0]).inc()
        log.warning("supervision.overdue", state=state[0], status=ticket.status)
