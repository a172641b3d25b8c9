"""Ticket persistence in Redis: the ticket, its indexes and its outgoing messages in one MULTI/EXEC.

With appendonly + appendfsync always, a successful write is on disk before we answer the dialplan.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from telephony.tickets.models import Ticket, parse_ticket

PREFIX = "linkage:"


def _key(ticket_id: str) -> str:
    return f"{PREFIX}ticket:{ticket_id}"


def outbox_key(peer: str) -> str:
    return f"{PREFIX}outbox:{peer}"


class TicketStore:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis

    async def get(self, ticket_id: str) -> Ticket | None:
        raw = await self.redis.get(_key(ticket_id))
        if raw is None:
            return None
        return parse_ticket(json.loads(raw))

    async def put(self, ticket: Ticket, outgoing: Sequence[tuple[str, dict[str, Any]]] = (),
                  *, create: bool = False) -> bool:
        """Store the ticket and queue messages for peers atomically. With create=True, refuse an existing id."""
        body = json.dumps(ticket.to_dict(), ensure_ascii=False, separators=(",", ":"))
        async with self.redis.pipeline(transaction=True) as pipe:
            if create:
                pipe.set(_key(ticket.id), body, nx=True)
            else:
                pipe.set(_key(ticket.id), body)
            pipe.zadd(f"{PREFIX}tickets", {ticket.id: _score(ticket.created_at)})
            if ticket.linkedid:
                pipe.hset(f"{PREFIX}by_linkedid", ticket.linkedid, ticket.id)
            for peer, message in outgoing:
                pipe.rpush(outbox_key(peer), json.dumps(message, ensure_ascii=False, separators=(",", ":")))
            results = await pipe.execute()
        return not (create and not results[0])

    async def create(self, ticket: Ticket, outgoing: Sequence[tuple[str, dict[str, Any]]]) -> bool:
        return await self.put(ticket, outgoing, create=True)

    async def by_linkedid(self, linkedid: str) -> str | None:
        raw = await self.redis.hget(f"{PREFIX}by_linkedid", linkedid)
        return raw.decode() if isinstance(raw, bytes) else raw

    async def list_ids(self, since: float = 0, limit: int = 100) -> list[str]:
        raw = await self.redis.zrangebyscore(f"{PREFIX}tickets", since, "+inf", start=0, num=limit)
        return [r.decode() if isinstance(r, bytes) else str(r) for r in raw]

    async def ping(self) -> bool:
        return bool(await self.redis.ping())


def _score(created_at: str) -> float:
    from datetime import datetime

    try:
        return datetime.fromisoformat(created_at.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0
