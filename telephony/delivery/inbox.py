"""The receiving side of peer delivery: a pushed ticket, a pushed event, a batch of both, a ticket lent by
reference; and the replay memory that makes each signed message count once.

A message is remembered (`linkage:seen:<site>:<message id>`) once it was processed, so a failed attempt can be
retried. The store writes the key in the same atomic step as the ticket change the message causes (one fsync'd
write, not two): the inbox hands the message's `ReplayMark` down with the change; a message that changed
nothing gets it written here. The sender retries the same message id for days (a peer down over a long
weekend), so the window (`replay_window`) must be longer than that.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
import structlog

from telephony.config import SiteConfig
from telephony.delivery import batch
from telephony.errors import Forbidden, InvalidInput, LinkageError, NotFound, Replayed
from telephony.tickets.models import Ticket, parse_event, parse_ticket
from telephony.tickets.services import TicketService
from telephony.tickets.store import STORE_ERRORS, STORE_UNAVAILABLE, ReplayMark

log = structlog.get_logger("http")
Answer = tuple[int, dict[str, Any]]


class ReplayMemory:
    """The `linkage:seen:*` keys: which signed peer messages were processed, for `window` seconds."""

    def __init__(self, redis: aioredis.Redis, window: float) -> None:
        self.redis = redis
        self.ttl = round(window)

    def mark(self, sender: str, message_id: str) -> ReplayMark:
        return ReplayMark(f"linkage:seen:{sender}:{message_id}", self.ttl)

    async def check(self, mark: ReplayMark) -> None:
        if await self.redis.exists(mark.key):
            raise Replayed("this message id was already processed; nothing changed")

    async def seen(self, marks: list[ReplayMark]) -> set[str]:
        """The keys among `marks` already remembered, in one round trip."""
        values = await self.redis.mget([m.key for m in marks])
        return {m.key for m, v in zip(marks, values, strict=True) if v is not None}

    async def remember(self, mark: ReplayMark) -> None:
        """Once the message was processed; a no-op when the store already wrote it with the change."""
        if not mark.done:
            await self.redis.set(mark.key, "1", ex=mark.ttl)
            mark.done = True


class Inbox:
    def __init__(self, config: SiteConfig, tickets: TicketService, memory: ReplayMemory,
                 refused: Callable[[LinkageError], None]) -> None:
        # `refused` counts and logs a message refused inside a batch, as the HTTP layer does a whole request
        self.config = config
        self.tickets = tickets
        self.memory = memory
        self.refused = refused

    async def take_ticket(self, data: Any, sender: str, mark: ReplayMark) -> Answer:
        """A pushed ticket. Its replay check is in the store's write (one round trip less on the path of a call
        waiting to ring here)."""
        ticket = parse_ticket(data)
        if sender != ticket.source.site and sender not in ticket.path:
            raise Forbidden(f"site {sender} may not push a ticket that neither comes from it nor passed through it")
        if self.config.site.name not in (ticket.path or [ticket.target.site]):
            raise InvalidInput(f"ticket is addressed to site {ticket.target.site}, not {self.config.site.name}")
        if ticket.source.site == self.config.site.name:
            raise InvalidInput("a ticket created here cannot be received from a peer")
        stored, created = await self.tickets.receive(ticket, via="push", replay=mark)
        await self.memory.remember(mark)
        return 201 if created else 200, {"id": stored.id, "status": stored.status, "created": created}

    async def take_event(self, data: Any, sender: str, mark: ReplayMark, ticket_id: str | None = None) -> Answer:
        """A pushed event (alone, its replay was checked before: it may read before it writes)."""
        event = parse_event(data)
        if ticket_id is not None and event.ticket_id != ticket_id:
            raise InvalidInput("event ticket_id does not match the URL")
        ticket, outcome = await self.tickets.apply_remote(event, sender=sender, replay=mark)
        await self.memory.remember(mark)
        return 202 if outcome == "queued" else 200, {"id": ticket.id, "status": ticket.status, "outcome": outcome,
                                                     "applied": outcome == "applied"}

    async def lend(self, ticket_id: str, mark: ReplayMark) -> Ticket:
        """A ticket a peer fetches by reference (its replay was checked before)."""
        ticket = await self.tickets.store.get(ticket_id)
        if ticket is None:
            raise NotFound(f"ticket {ticket_id} not found")
        await self.memory.remember(mark)
        return ticket

    async def take_batch(self, items: list[batch.Item], sender: str, mark: ReplayMark) -> list[batch.Result]:
        """Messages in the sender's outbox order, each handled as its single route would; stops after the first
        the sender must retry, so nothing after it is taken out of order. `mark` is the batch request's own."""
        marks = [self.memory.mark(sender, item.id) for item in items]
        seen = await self.memory.seen(marks)
        results = []
        for item, item_mark in zip(items, marks, strict=True):
            result = await self._take(item, sender, item_mark, item_mark.key in seen)
            results.append(result)
            if result.status < 300:
                seen.add(item_mark.key)  # the same id again in this batch is a replay, as it would be alone
            elif batch.retriable(result.status, result.error):
                break
        await self.memory.remember(mark)
        return results

    async def _take(self, item: batch.Item, sender: str, mark: ReplayMark, seen: bool) -> batch.Result:
        structlog.contextvars.bind_contextvars(message_id=item.id)
        try:
            if seen:
                raise Replayed("this message id was already processed; nothing changed")
            if item.kind == "ticket":
                status, _ = await self.take_ticket(item.body, sender, mark)
            else:
                status, _ = await self.take_event(item.body, sender, mark)
            return batch.Result(item.id, status)
        except LinkageError as exc:
            self.refused(exc)
            return batch.Result(item.id, exc.status, exc.error_id)
        except STORE_ERRORS as exc:
            log.warning("http.store_unavailable", error=exc.__class__.__name__)
            return batch.Result(item.id, 503, STORE_UNAVAILABLE)
        finally:
            structlog.contextvars.unbind_contextvars("message_id")
