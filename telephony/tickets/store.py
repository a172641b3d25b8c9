"""Ticket persistence in Redis: the ticket, its indexes and its outgoing messages in one atomic step.

With appendonly + appendfsync always, a successful write is on disk before we answer the dialplan. Creating a
ticket runs as one Lua script, so a refused create (the id exists) writes nothing at all — no outbox message
and no index entry for a ticket that was never stored.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from telephony.delivery.messages import OutboxMessage, as_data
from telephony.errors import Replayed
from telephony.security.sealing import Sealer
from telephony.tickets.models import Ticket, decode_ticket, encode

PREFIX = "linkage:"
# What Redis being away looks like to a caller: the store is unavailable, nothing is wrong with the data.
STORE_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
STORE_UNAVAILABLE = "store_unavailable"  # the error id a caller is answered with then

# KEYS: ticket key, tickets zset, by_linkedid hash, open set, a peer message's replay key (or ''), deadlines
# zset, a key the write consumes (deleted with it: the draft a new ticket was made from; or ''), then one outbox
# list per message
# ARGV: create flag, body, score, ticket id, linkedid, open flag, replay key ttl, the ticket's next deadline
# ('' leaves the deadlines alone, '-' drops the ticket's, else its time), then one message per outbox key
# Returns -1 (the peer message was processed before: a replay), 0 (refused), or 1 followed by each outbox's
# length after the push: 1 means the message is at the head of an empty outbox, so the peer's worker may send it
# without reading it back.
PUT_SCRIPT = """
if KEYS[5] ~= '' and redis.call('EXISTS', KEYS[5]) == 1 then
  return -1
end
if ARGV[1] == '1' and redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[3], ARGV[5], ARGV[4])
end
if ARGV[6] == '1' then
  redis.call('SADD', KEYS[4], ARGV[4])
else
  redis.call('SREM', KEYS[4], ARGV[4])
end
if KEYS[5] ~= '' then
  redis.call('SET', KEYS[5], '1', 'EX', ARGV[7])
end
if ARGV[8] == '-' then
  redis.call('ZREM', KEYS[6], ARGV[4])
elseif ARGV[8] ~= '' then
  redis.call('ZADD', KEYS[6], ARGV[8], ARGV[4])
end
if KEYS[7] ~= '' then
  redis.call('DEL', KEYS[7])
end
local lengths = {1}
for i = 8, #KEYS do
  lengths[#lengths + 1] = redis.call('RPUSH', KEYS[i], ARGV[i + 1])
end
return lengths
"""
# Drops a ticket's deadline unless a newer write moved it. KEYS: deadlines zset; ARGV: ticket id, the score seen
DROP_SCRIPT = """
if tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1])) == tonumber(ARGV[2]) then
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
"""
FINAL_STATES = ("closed", "cancelled")
DEADLINES = f"{PREFIX}deadlines"


@dataclass
class ReplayMark:
    """The replay key of one peer message, handed down by the inbox with the change the message causes: the
    store sets it in the same atomic step as that change, so the message costs one fsync'd write, not two. Used
    by one write only (`done` says it was written); when nothing was written the inbox sets it itself."""
    key: str
    ttl: int
    done: bool = False


class Head(NamedTuple):
    """A message that went into an empty outbox: the stored (sealed) entry and the message it holds."""
    entry: str
    message: dict[str, Any]


def connect(url: str, max_connections: int = 100) -> aioredis.Redis:
    """The controller's Redis client. A burst waits for a free connection (up to 3 s) rather than failing the key
    press (the default pool raises MaxConnectionsError at once). A command that meets a dead connection is sent
    once more on a new one: after a Redis restart every pooled connection is dead. A write that
    did run before its connection died may so run twice. That is harmless here: the ticket and its indexes are set
    to the same values again; a queued message is queued twice and the peer answers the second as a replay; a
    peer message's replay key makes the second run answer "replayed", which the sender counts as delivered; the
    outbox trim checks the head first; and creating a ticket recognises its own earlier attempt
    (TicketService.create)."""
    return aioredis.Redis(connection_pool=aioredis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=3, socket_timeout=5, socket_connect_timeout=2,
        retry=Retry(NoBackoff(), 1), retry_on_error=[redis.exceptions.ConnectionError]))


def ticket_key(ticket_id: str) -> str:
    return f"{PREFIX}ticket:{ticket_id}"


def outbox_key(peer: str) -> str:
    return f"{PREFIX}outbox:{peer}"


def _json(data: Any) -> str:
    return encode(data).decode()


class TicketStore:
    def __init__(self, redis: aioredis.Redis, sealer: Sealer | None = None,
                 deadline_of: Callable[[Ticket], float | None] | None = None, cache: int = 0) -> None:
        """`deadline_of` is the supervision rule for a ticket's next deadline (a time, or None when nothing is
        due here; see TicketHooks). Every write keeps the deadlines zset in step with the ticket in the same
        atomic step, so the deadlines live in Redis, not in the controller's memory, and survive its restarts.
        Without it, writes leave the deadlines alone.

        `cache`: how many of the tickets written or read last are kept (as their JSON) to answer `get` without a
        Redis round trip — the controller's, which is its site's only writer of tickets (each change reads the
        ticket first: under load half the feedback path's time was redis-py, a quarter of it that read). A write
        whose outcome is unknown (the connection failed) forgets its ticket."""
        self.redis = redis
        self.sealer = sealer or Sealer(())
        self.deadline_of = deadline_of
        self.cache_size = cache
        self.cache: OrderedDict[str, str] = OrderedDict()  # ticket id -> its JSON as last stored
        self._put = redis.register_script(PUT_SCRIPT)
        self._drop = redis.register_script(DROP_SCRIPT)

    async def get(self, ticket_id: str) -> Ticket | None:
        cached = self.cache.get(ticket_id) if self.cache_size else None
        if cached is not None:
            self.cache.move_to_end(ticket_id)
            return decode_ticket(cached)
        raw = await self.redis.get(ticket_key(ticket_id))
        if raw is None:
            return None
        text = self.sealer.open(raw)
        self._keep(ticket_id, text)
        return decode_ticket(text)

    def _keep(self, ticket_id: str, text: str) -> None:
        if self.cache_size:
            self.cache[ticket_id] = text
            self.cache.move_to_end(ticket_id)
            while len(self.cache) > self.cache_size:
                self.cache.popitem(last=False)

    async def put(self, ticket: Ticket, outgoing: Sequence[tuple[str, OutboxMessage | dict[str, Any]]] = (),
                  *, create: bool = False, body: dict[str, Any] | None = None,
                  heads: dict[str, Head] | None = None, replay: ReplayMark | None = None,
                  consume: str = "") -> bool:
        """Store the ticket and queue messages for peers atomically. With create=True, an existing id is
        refused and nothing is written; returns whether it was stored. `heads` (when given) gets, per peer, the
        stored entry and the message when it went into an empty outbox: the worker's next send, as it is.
        `replay` (a peer message's mark) is refused when already set (Replayed), else set with the change.
        `consume` names a key deleted in the same step (the draft the ticket was made from)."""
        mark = None if replay is None or replay.done else replay
        keys = [ticket_key(ticket.id), f"{PREFIX}tickets", f"{PREFIX}by_linkedid", f"{PREFIX}open",
                mark.key if mark else "", DEADLINES, consume]
        keys += [outbox_key(peer) for peer, _ in outgoing]
        body = ticket.to_dict() if body is None else body  # the caller may have rendered it already
        text = _json(body)
        args = ["1" if create else "0", self.sealer.seal(text), str(_score(ticket.created_at)),
                ticket.id, ticket.linkedid, "0" if ticket.status in FINAL_STATES else "1",
                str(mark.ttl) if mark else "0", self._deadline(ticket)]
        entries = [self.sealer.seal(_json(message)) for _, message in outgoing]
        try:
            result = await self._put(keys=keys, args=args + entries)
        except BaseException:
            self.cache.pop(ticket.id, None)  # written or not: the next read asks Redis
            raise
        if result == -1:
            raise Replayed("this message id was already processed; nothing changed")
        if not result:
            return False
        self._keep(ticket.id, text)
        if mark is not None:
            mark.done = True
        if heads is not None and isinstance(result, list):
            for (peer, message), entry, length in zip(outgoing, entries, result[1:], strict=False):
                if length == 1:
                    heads[peer] = Head(entry, as_data(message))
        return True

    def _deadline(self, ticket: Ticket) -> str:
        if self.deadline_of is None:
            return ""
        due = self.deadline_of(ticket)
        return "-" if due is None else repr(due)

    async def due(self, now: float, limit: int = 100) -> list[tuple[str, float]]:
        """Tickets whose deadline has passed, earliest first, with the deadline as stored."""
        raw = await self.redis.zrangebyscore(DEADLINES, "-inf", now, start=0, num=limit, withscores=True)
        return [(_text(r[0]), float(r[1])) for r in raw]

    async def next_deadline(self) -> float | None:
        raw = await self.redis.zrange(DEADLINES, 0, 0, withscores=True)
        return float(raw[0][1]) if raw else None

    async def set_deadline(self, ticket_id: str, due: float) -> None:
        await self.redis.zadd(DEADLINES, {ticket_id: due})

    async def drop_deadline(self, ticket_id: str, seen: float) -> None:
        """Forget a deadline that was dealt with, unless a write since has moved it."""
        await self._drop(keys=[DEADLINES], args=[ticket_id, repr(seen)])

    async def create(self, ticket: Ticket, outgoing: Sequence[tuple[str, OutboxMessage | dict[str, Any]]],
                     body: dict[str, Any] | None = None, heads: dict[str, Head] | None = None,
                     replay: ReplayMark | None = None, consume: str = "") -> bool:
        return await self.put(ticket, outgoing, create=True, body=body, heads=heads, replay=replay,
                              consume=consume)

    async def by_linkedid(self, linkedid: str) -> str | None:
        raw = await self.redis.hget(f"{PREFIX}by_linkedid", linkedid)
        return raw.decode() if isinstance(raw, bytes) else raw

    async def list_ids(self, since: float = 0, limit: int = 100, until: float | None = None,
                       offset: int = 0) -> list[str]:
        raw = await self.redis.zrangebyscore(f"{PREFIX}tickets", since, "+inf" if until is None else until,
                                             start=offset, num=limit)
        return [r.decode() if isinstance(r, bytes) else str(r) for r in raw]

    async def open_ids(self) -> list[str]:
        raw = await self.redis.smembers(f"{PREFIX}open")
        return sorted(r.decode() if isinstance(r, bytes) else str(r) for r in raw)

    async def ping(self) -> bool:
        return bool(await self.redis.ping())


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _score(created_at: str) -> float:
    try:
        return datetime.fromisoformat(created_at.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0
