"""Ticket use cases: create at key press, receive from a peer, record and apply events.

Every change goes through `_commit`, which persists the ticket together with the messages for the other
site in one Redis transaction and then wakes that site's delivery worker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import structlog

from telephony.config import SiteConfig
from telephony.errors import Conflict, NotFound
from telephony.tickets.models import DRAFT_FIELDS, Event, Party, Ticket, new_event_id, new_ticket_id, now_iso
from telephony.tickets.state import apply_event
from telephony.tickets.store import TicketStore

log = structlog.get_logger("tickets")


class TicketService:
    def __init__(self, config: SiteConfig, store: TicketStore, notify: Callable[[str], None]) -> None:
        self.config = config
        self.store = store
        self.notify = notify  # wakes the delivery worker of a peer
        self.locks: dict[str, asyncio.Lock] = {}
        self.listeners: list[Callable[[Ticket, Event], None]] = []

    def _lock(self, ticket_id: str) -> asyncio.Lock:
        lock = self.locks.get(ticket_id)
        if lock is None:
            if len(self.locks) > 10000:
                self.locks = {k: v for k, v in self.locks.items() if v.locked()}
            lock = self.locks[ticket_id] = asyncio.Lock()
        return lock

    def other_site(self, ticket: Ticket) -> str | None:
        other = ticket.target.site if ticket.source.site == self.config.name else ticket.source.site
        return other if self.config.peer(other) is not None else None

    def actor(self, agent: str = "") -> dict[str, str]:
        actor = {"platform": self.config.platform, "site": self.config.name}
        if agent:
            actor["agent"] = agent
        return actor

    async def create(self, *, target_site: str, target_platform: str, caller_number: str, agent_id: str,
                     linkedid: str, uniqueids: list[str], draft: dict[str, str]) -> Ticket:
        created = now_iso()
        for _ in range(5):
            ticket = Ticket(
                id=new_ticket_id(self.config.division), direction=f"{self.config.platform}->{target_platform}",
                source=Party(self.config.platform, self.config.name), target=Party(target_platform, target_site),
                caller_number=caller_number, agent_id=agent_id, linkedid=linkedid, uniqueids=uniqueids,
                created_at=created, updated_at=created)
            for key, value in draft.items():
                if key in DRAFT_FIELDS:  # validated by parse_draft when the agent typed it
                    setattr(ticket, key, value)
            event = Event(new_event_id(), ticket.id, "created", created, self.actor(agent_id))
            apply_event(ticket, event)
            ticket.status = "created"
            outgoing = []
            if self.config.peer(target_site) is not None:
                outgoing.append((target_site, {"kind": "ticket", "queued_at": time.time(),
                                                "body": ticket.to_dict()}))
            if await self.store.create(ticket, outgoing):
                log.info("ticket.created", ticket_id=ticket.id, call_id=linkedid, target=target_site)
                if outgoing:
                    self.notify(target_site)
                self._emit(ticket, event)
                return ticket
        raise Conflict("could not allocate a unique ticket id")

    async def receive(self, ticket: Ticket, via: str) -> tuple[Ticket, bool]:
        """A ticket from a peer (pushed, or fetched by reference). Idempotent on the ticket id."""
        async with self._lock(ticket.id):
            existing = await self.store.get(ticket.id)
            if existing is not None:
                return existing, False
            event = Event(new_event_id(), ticket.id, "delivered", now_iso(), self.actor(), {"via": via})
            apply_event(ticket, event)
            await self._commit(ticket, event, create=True)
            return ticket, True

    async def record(self, ticket_id: str, event_type: str, agent: str = "",
                     payload: dict[str, Any] | None = None) -> Ticket:
        """An event that happened here: apply, persist, and queue it for the other site."""
        async with self._lock(ticket_id):
            ticket = await self.store.get(ticket_id)
            if ticket is None:
                raise NotFound(f"ticket {ticket_id} not found", ticket_id=ticket_id)
            event = Event(new_event_id(), ticket_id, event_type, now_iso(), self.actor(agent), payload or {})
            applied = apply_event(ticket, event)
            log.info("ticket.transition", ticket_id=ticket_id, old=applied.old, event_type=event_type,
                     new=applied.new)
            await self._commit(ticket, event)
            return ticket

    async def apply_remote(self, event: Event) -> tuple[Ticket, bool]:
        """An event from the peer. Duplicates are acknowledged and change nothing."""
        async with self._lock(event.ticket_id):
            ticket = await self.store.get(event.ticket_id)
            if ticket is None:
                raise NotFound(f"ticket {event.ticket_id} not found", ticket_id=event.ticket_id)
            if event.actor.get("site") not in (ticket.source.site, ticket.target.site):
                raise Conflict("event actor is not a party to this ticket", ticket_id=ticket.id)
            applied = apply_event(ticket, event)
            if applied.duplicate:
                return ticket, False
            log.info("ticket.transition", ticket_id=ticket.id, old=applied.old, event_type=event.type,
                     new=applied.new, remote=True)
            await self.store.put(ticket)
            self._emit(ticket, event)
            return ticket, True

    async def _commit(self, ticket: Ticket, event: Event, create: bool = False) -> None:
        other = self.other_site(ticket)
        outgoing = [(other, {"kind": "event", "body": event.to_dict()})] if other else []
        await self.store.put(ticket, outgoing, create=create)
        if other:
            self.notify(other)
        self._emit(ticket, event)

    def _emit(self, ticket: Ticket, event: Event) -> None:
        for listener in self.listeners:
            listener(ticket, event)
