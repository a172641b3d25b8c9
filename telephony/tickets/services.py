"""Ticket use cases: create at key press, receive from a peer, record local facts and decisions, apply the
peer's events in order.

Every change goes through `_commit`, which persists the ticket together with the messages for the neighbouring
sites on the ticket's path in one atomic Redis step, then tells the hooks (TicketHooks: the peers' delivery
workers, the console stream, metrics, supervision).
Events carry `seq`, a counter per ticket and authoring site; every copy applies each author's events in seq
order (an early arrival waits in `pending`, a duplicate is acknowledged and changes nothing).
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

import structlog
from msgspec.json import decode

from telephony.config import SiteConfig
from telephony.delivery.messages import EventMessage, OutboxMessage, TicketMessage, as_data
from telephony.errors import Conflict, Forbidden, LinkageError, NotFound
from telephony.tickets.advised import Advised
from telephony.tickets.hooks import TicketHooks
from telephony.tickets.models import (
    DRAFT_FIELDS,
    Event,
    Party,
    Ticket,
    encode,
    new_event_id,
    new_ticket_id,
    now_iso,
)
from telephony.tickets.state import apply_event, check, check_author
from telephony.tickets.store import PREFIX, Head, ReplayMark, TicketStore

log = structlog.get_logger("tickets")
OBSERVED_TTL = 7 * 24 * 3600  # seconds a fact observed before its ticket waits for it
OBSERVED_ORDER = ("offered", "signed_for", "abandoned")  # the order a call's facts happen in


def observed_key(ticket_id: str) -> str:
    return f"{PREFIX}observed:{ticket_id}"


MAX_PENDING = 50  # the schema's bound on `pending`; a peer beyond it is told to resend in order


class TicketService:
    def __init__(self, config: SiteConfig, store: TicketStore, hooks: TicketHooks) -> None:
        self.config = config
        self.store = store
        self.hooks = hooks
        # One lock per ticket while anyone uses it: a lock nobody holds or waits for is dropped with its last
        # reference, so memory does not grow with the tickets seen.
        self.locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def _lock(self, ticket_id: str) -> asyncio.Lock:
        lock = self.locks.get(ticket_id)
        if lock is None:
            lock = self.locks[ticket_id] = asyncio.Lock()
        return lock

    def neighbours(self, ticket: Ticket, exclude: str | None = None) -> list[str]:
        """The sites next to this one on the ticket's path that we deliver to (configured peers)."""
        path = ticket.path or [ticket.source.site, ticket.target.site]
        if self.config.site.name not in path:
            return []
        i = path.index(self.config.site.name)
        around = [path[j] for j in (i - 1, i + 1) if 0 <= j < len(path)]
        return [s for s in around if s != exclude and self.config.peer(s) is not None]

    def came_from(self, ticket: Ticket, origin: str) -> str | None:
        """The neighbour an event authored at `origin` reached us through."""
        path = ticket.path or [ticket.source.site, ticket.target.site]
        if origin not in path or self.config.site.name not in path:
            return origin
        here, there = path.index(self.config.site.name), path.index(origin)
        return path[here - 1] if there < here else path[here + 1] if there > here else None

    def actor(self, agent: str = "") -> dict[str, str]:
        actor = {"platform": self.config.site.platform, "site": self.config.site.name}
        if agent:
            actor["agent"] = agent
        return actor

    async def create(self, *, target_site: str, target_platform: str, caller_number: str, agent_id: str,
                     linkedid: str, uniqueids: list[str], draft: dict[str, str],
                     path: list[str] | None = None, mode: str = "transfer", recording: str = "",
                     channel: str = "call", consume: str = "", parent: str = "",
                     advice: Advised | None = None, ticket_id: str = "", early: bool = False) -> Ticket:
        """A new ticket, stored with its push in one atomic write. `consume` is a key that write deletes: the
        draft the ticket was made from; `parent` the ticket it carries the matter on from; `advice` what the
        scope advisor suggested for it. `ticket_id` is an id reserved before (a prepared transfer): one attempt,
        and when a ticket of that id for the same call is stored already, that ticket is the answer (a press
        completed twice — by its event and by a resync — makes one ticket). `early` (a prepared press, whose
        call has left already): the push is handed to the delivery worker before the write (TicketHooks.early),
        and the ticket's lock is held over the write, so the far side's first feedback waits for it here."""
        created = now_iso()
        here = self.config.site
        for _ in range(1 if ticket_id else 5):
            ticket = Ticket(
                id=ticket_id or new_ticket_id(here.division), direction=f"{here.platform}->{target_platform}",
                source=Party(here.platform, here.name), target=Party(target_platform, target_site),
                caller_number=caller_number, agent_id=agent_id, linkedid=linkedid, uniqueids=uniqueids,
                created_at=created, updated_at=created, path=path or [self.config.site.name, target_site], mode=mode,
                recording=recording, channel=channel, parent=parent, advice=advice)
            for key, value in draft.items():
                if key in DRAFT_FIELDS:  # validated by parse_draft when the agent typed it
                    setattr(ticket, key, value)
            event = self._local_event(ticket, "created", agent_id, {})
            apply_event(ticket, event)
            body = ticket.to_dict()  # rendered once: stored and pushed alike (this is on the key-press path)
            outgoing: list[tuple[str, OutboxMessage]] = [(site, TicketMessage(body=body))
                                                          for site in self.neighbours(ticket)]
            heads: dict[str, Head] = {}
            if early and ticket_id:
                async with self._lock(ticket.id):
                    for site, message in outgoing:
                        self.hooks.early(site, as_data(message))
                    written = await self.store.create(ticket, outgoing, body, heads, consume=consume)
            else:
                written = await self.store.create(ticket, outgoing, body, heads, consume=consume)
            if written or await self._ours(ticket.id, event):
                for site, _ in outgoing:  # first: the push is what the far side waits for before it rings
                    self.hooks.queued(site, heads.get(site))
                log.info("ticket.created", ticket_id=ticket.id, call_id=linkedid, target=target_site)
                self.hooks.emit(ticket, event)
                return ticket
            stored = await self.store.get(ticket.id) if ticket_id else None
            if stored is not None and stored.linkedid == linkedid:
                return stored
        raise Conflict("could not allocate a unique ticket id")

    async def _ours(self, ticket_id: str, created: Event) -> bool:
        """A create refused because the id exists: is that ticket this very attempt's, written before its reply
        was lost (the store sends a command again on a new connection)? Then it is stored, not a collision."""
        stored = await self.store.get(ticket_id)
        return stored is not None and bool(stored.history) and stored.history[0].id == created.id

    def _local_event(self, ticket: Ticket, event_type: str, agent: str, payload: dict[str, Any]) -> Event:
        seq = ticket.sequences.get(self.config.site.name, 0) + 1
        ticket.sequences[self.config.site.name] = seq
        return Event(new_event_id(), ticket.id, event_type, now_iso(), self.actor(agent), payload, seq=seq)

    async def receive(self, ticket: Ticket, via: str, replay: ReplayMark | None = None) -> tuple[Ticket, bool]:
        """A ticket from a peer (pushed, or fetched by reference). Idempotent on the ticket id. `replay` is the
        pushing message's mark, written with the ticket. Facts observed here before the ticket existed
        (`observe`: its call rang and was answered while the sender could not push it) are recorded on it
        right after it is stored."""
        received, stored = await self._receive(ticket, via, replay)
        if stored:  # with its landing time (`delivered`, the push verified), for the transfer's timeline
            log.info("ticket.received", ticket_id=received.id, via=via, landed_at=received.history[-1].at)
        if stored and received.target.site == self.config.site.name:
            await self._observed(received.id)
        return received, stored

    async def observe(self, ticket_id: str, event_type: str, agent: str = "",
                      payload: dict[str, Any] | None = None) -> Ticket | None:
        """A fact about a ticket that is here (recorded, as `record`), or not yet here: a linked call whose
        ticket the sender could not push (its controller was down at the key press) rang an agent. Kept
        against the X-Linkage-Id, one fact per type, until the ticket lands (or OBSERVED_TTL)."""
        try:
            return await self.record(ticket_id, event_type, agent, payload)
        except NotFound:
            fact = {"agent": agent, "payload": {**(payload or {}), "observed_at": now_iso()}}
            async with self.store.redis.pipeline(transaction=True) as pipe:
                pipe.hsetnx(observed_key(ticket_id), event_type, encode(fact).decode())
                pipe.expire(observed_key(ticket_id), OBSERVED_TTL)
                await pipe.execute()
            log.info("ticket.fact_observed_before_ticket", ticket_id=ticket_id, event_type=event_type)
            return None

    async def _observed(self, ticket_id: str) -> None:
        raw = await self.store.redis.hgetall(observed_key(ticket_id))
        if not raw:
            return
        facts = {(k.decode() if isinstance(k, bytes) else k): decode(v) for k, v in raw.items()}
        for event_type in OBSERVED_ORDER:
            fact = facts.get(event_type)
            if fact is None:
                continue
            try:
                await self.record(ticket_id, event_type, fact.get("agent", ""), fact.get("payload") or {})
            except LinkageError as exc:
                log.warning("ticket.observed_fact_refused", ticket_id=ticket_id, event_type=event_type,
                            reason=exc.message)
        await self.store.redis.delete(observed_key(ticket_id))

    async def _receive(self, ticket: Ticket, via: str, replay: ReplayMark | None) -> tuple[Ticket, bool]:
        async with self._lock(ticket.id):
            # No read first: the store refuses an id it has (create=True) and then we read what it holds. A
            # push is on the path of a call waiting to ring here, and this saves it a round trip.
            ticket.pending = []
            for e in ticket.history:
                site = e.actor.get("site", "")
                ticket.sequences[site] = max(ticket.sequences.get(site, 0), e.seq)
            if ticket.target.site == self.config.site.name:
                event = self._local_event(ticket, "delivered", "", {"via": via})
                apply_event(ticket, event)
                self.hooks.land(ticket)
                stored = await self._commit(ticket, event, create=True, replay=replay)
                if stored:
                    self.hooks.land(ticket)  # again: a call that began waiting during the write is woken too
            else:  # a relay: keep a copy and pass the ticket on towards its target
                event = ticket.history[-1]
                nxt = self.neighbours(ticket, exclude=self.came_from(ticket, ticket.source.site))
                body = ticket.to_dict()
                outgoing = [(s, TicketMessage(body=body)) for s in nxt]
                self.hooks.land(ticket)
                stored = await self.store.put(ticket, outgoing, create=True, replay=replay)
                if stored:
                    self.hooks.land(ticket)
                    for s in nxt:
                        self.hooks.queued(s, None)
                    log.info("ticket.relayed", ticket_id=ticket.id, to=nxt)
            if not stored:
                again = await self.store.get(ticket.id)
                if again is None:
                    raise Conflict("ticket could not be stored", ticket_id=ticket.id)
                return again, False
            return ticket, True

    async def record(self, ticket_id: str, event_type: str, agent: str = "",
                     payload: dict[str, Any] | None = None) -> Ticket:
        """A fact or decision made here: checked (403/409/400 change nothing), applied, persisted, queued."""
        async with self._lock(ticket_id):
            ticket = await self._get(ticket_id)
            probe = Event("0" * 32, ticket_id, event_type, now_iso(), self.actor(agent), payload or {})
            check(ticket, probe)
            event = self._local_event(ticket, event_type, agent, payload or {})
            applied = apply_event(ticket, event)
            log.info("ticket.transition", ticket_id=ticket_id, old=applied.old, event_type=event_type,
                     new=applied.new)
            await self._commit(ticket, event)
            return ticket

    async def route_to(self, ticket_id: str, site: str, reason: str = "division") -> Ticket:
        """Hand a ticket we received on to another site (the county that owns its division): the ticket itself
        goes to the new site, the `routed` event to the others; both in the same atomic step."""
        async with self._lock(ticket_id):
            ticket = await self._get(ticket_id)
            probe = Event("0" * 32, ticket_id, "routed", now_iso(), self.actor(), {"site": site, "reason": reason})
            check(ticket, probe)
            event = self._local_event(ticket, "routed", "", {"site": site, "reason": reason})
            apply_event(ticket, event)
            others = self.neighbours(ticket, exclude=site)
            outgoing: list[tuple[str, OutboxMessage]] = [(s, EventMessage(event.to_dict())) for s in others]
            outgoing.append((site, TicketMessage(body=ticket.to_dict())))
            await self.store.put(ticket, outgoing)
            for s, _ in outgoing:
                self.hooks.queued(s, None)
            self.hooks.emit(ticket, event)
            return ticket

    async def apply_remote(self, event: Event, sender: str | None = None,
                           replay: ReplayMark | None = None) -> tuple[Ticket, str]:
        """An event from a peer: 'applied', 'duplicate' or 'queued' (waiting for an earlier one). `sender` is the
        signing peer, which must be one of the ticket's sites; `replay` its message's mark, written with the
        change."""
        async with self._lock(event.ticket_id):
            ticket = await self._get(event.ticket_id)
            origin = event.actor.get("site", "")
            if sender is not None and sender not in {*ticket.path, ticket.source.site, ticket.target.site}:
                raise Forbidden(f"site {sender} is not a party to this ticket", ticket_id=ticket.id)
            if origin == self.config.site.name:
                raise Conflict("an event authored here cannot come back from a peer", ticket_id=ticket.id)
            last = ticket.sequences.get(origin, 0)
            if event.id in ticket.event_ids() or (event.seq and event.seq <= last):
                return ticket, "duplicate"  # before the author check: roles may have moved since (routed)
            check_author(ticket, event)
            if event.seq > last + 1:
                if len(ticket.pending) >= MAX_PENDING:
                    raise Conflict("too many events are waiting for an earlier one; send that one first",
                                   ticket_id=ticket.id, waiting_for=last + 1)
                ticket.pending.append(event)
                await self.store.put(ticket, replay=replay)
                log.info("ticket.event_queued", ticket_id=ticket.id, seq=event.seq, waiting_for=last + 1)
                return ticket, "queued"
            applied_events = [event, *self._drain(ticket, origin, event.seq)]
            relay_to = self.neighbours(ticket, exclude=self.came_from(ticket, origin))
            outgoing = []
            for e in applied_events:
                if e.seq:
                    ticket.sequences[origin] = e.seq
                applied = apply_event(ticket, e)
                log.info("ticket.transition", ticket_id=ticket.id, old=applied.old, event_type=e.type,
                         new=applied.new, remote=origin, moved=applied.moved)
                outgoing += [(s, EventMessage(e.to_dict())) for s in relay_to]
            await self.store.put(ticket, outgoing, replay=replay)
            for s in relay_to:
                self.hooks.queued(s, None)
            for e in applied_events:
                self.hooks.emit(ticket, e)
            return ticket, "applied"

    @staticmethod
    def _drain(ticket: Ticket, origin: str, seq: int) -> list[Event]:
        """Pending events of the same author that can now follow `seq`, in order."""
        out: list[Event] = []
        nxt = seq + 1
        while seq:
            found = next((e for e in ticket.pending if e.actor.get("site") == origin and e.seq == nxt), None)
            if found is None:
                break
            ticket.pending.remove(found)
            out.append(found)
            nxt += 1
        return out

    async def _get(self, ticket_id: str) -> Ticket:
        ticket = await self.store.get(ticket_id)
        if ticket is None:
            raise NotFound(f"ticket {ticket_id} not found", ticket_id=ticket_id)
        return ticket

    async def _commit(self, ticket: Ticket, event: Event, create: bool = False,
                      replay: ReplayMark | None = None) -> bool:
        nxt = self.neighbours(ticket)
        body = event.to_dict()  # one snapshot for every peer
        outgoing: list[tuple[str, OutboxMessage]] = [(s, EventMessage(body)) for s in nxt]
        heads: dict[str, Head] = {}
        if not await self.store.put(ticket, outgoing, create=create, heads=heads, replay=replay):
            return False
        for s in nxt:
            self.hooks.queued(s, heads.get(s))
        self.hooks.emit(ticket, event)
        return True
