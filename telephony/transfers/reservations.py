"""Reservations of prepared transfers, in Redis: what a key press needs, stored when an agent's call is bridged.

A reservation is the ticket id and the call's facts as they were at bridge time (caller number, agent, Linkedid,
Uniqueids, times). It lives in the call's draft hash (`linkage:draft:<linkedid>`, transfers/drafts.py) as the
field `_res`, sealed like the draft: the draft the agent types updates the reservation's content, and the
ticket's create write deletes both in one atomic step (the key it consumes), so a reservation is gone exactly
when its ticket is stored. The set `linkage:reservations` lists the calls with one, for the resync after a
restart; a member whose hash has no `_res` any more is stale and dropped when met.

Each reservation gets a slot (a counter modulo SLOTS, in the same script): the dialplan records a press in AstDB
under `linkage-press/<slot>`, so Asterisk keeps a bounded number of press records, overwritten in turn.

RESERVE_SCRIPT. KEYS: the draft hash, the reservations set, the slot counter. ARGV: the sealed reservation, the
linkedid, SLOTS, the hash's ttl. Returns the slot.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import msgspec
import redis.asyncio as aioredis

from telephony.security.sealing import Sealer
from telephony.tickets.store import PREFIX
from telephony.transfers.drafts import DRAFT_TTL, RESERVATION_FIELD, draft_key

RESERVED = f"{PREFIX}reservations"
SLOT_COUNTER = f"{PREFIX}reservation:slot"
SLOTS = 4096  # press records Asterisk keeps (AstDB family linkage-press), one per reservation in turn
RESERVE_SCRIPT = """
local slot = redis.call('INCR', KEYS[3]) % tonumber(ARGV[3])
redis.call('HSET', KEYS[1], '_res', ARGV[1], '_slot', slot)
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('SADD', KEYS[2], ARGV[2])
return slot
"""


@dataclass
class Reservation:
    ticket_id: str
    linkedid: str
    caller_number: str
    agent_id: str
    agent_uniqueid: str
    agent_channel: str
    uniqueids: list[str]
    recording: str
    reserved_at: float
    slot: int = -1
    recovered: bool = field(default=False, compare=False)  # loaded from Redis by this run, not made by it

    @property
    def press_var(self) -> str:
        """LINKAGE_RES on the agent's channel: `<ticket id>-<slot>`, digits and a dash only."""
        return f"{self.ticket_id}-{self.slot}"


class ReservationStore:
    def __init__(self, redis: aioredis.Redis, sealer: Sealer, ttl: int = DRAFT_TTL) -> None:
        self.redis = redis
        self.sealer = sealer
        self.ttl = ttl
        self._reserve = redis.register_script(RESERVE_SCRIPT)
        self.spent: set[str] = set()  # members of consumed reservations, removed by `flush`

    async def reserve(self, res: Reservation) -> int:
        """One durable write (fsync'd with appendfsync always); sets and returns the reservation's slot."""
        body = {k: v for k, v in asdict(res).items() if k not in ("slot", "recovered")}
        sealed = self.sealer.seal(msgspec.json.encode(body).decode())
        slot = int(await self._reserve(keys=[draft_key(res.linkedid), RESERVED, SLOT_COUNTER],
                                       args=[sealed, res.linkedid, str(SLOTS), str(self.ttl)]))
        res.slot = slot
        return slot

    async def load(self) -> list[Reservation]:
        """Every stored reservation (after a restart); stale members of the set are dropped."""
        found: list[Reservation] = []
        for raw in await self.redis.smembers(RESERVED):
            linkedid = raw.decode() if isinstance(raw, bytes) else str(raw)
            sealed, slot = await self.redis.hmget(draft_key(linkedid), [RESERVATION_FIELD, "_slot"])
            if sealed is None:
                await self.redis.srem(RESERVED, linkedid)
                continue
            data: dict[str, Any] = msgspec.json.decode(self.sealer.open(sealed))
            found.append(Reservation(**data, slot=int(slot or -1), recovered=True))
        return found

    async def drop(self, linkedid: str) -> None:
        """The call ended untransferred: its reservation and its draft go (no caller data kept for a call that
        never became a linkage)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(draft_key(linkedid))
            pipe.srem(RESERVED, linkedid)
            await pipe.execute()

    def forget(self, linkedid: str) -> None:
        """The ticket's write consumed the hash; only the set's member is left. Removed by the next `flush`, in
        one write for all (not a third fsync'd write on every transfer); until then it is only stale."""
        self.spent.add(linkedid)

    async def flush(self) -> None:
        if self.spent:
            spent, self.spent = self.spent, set()
            try:
                await self.redis.srem(RESERVED, *spent)
            except BaseException:
                self.spent |= spent
                raise


class Reserved:
    """The reservations this run knows, by call and by ticket id (memory; the store is the durable copy)."""

    def __init__(self) -> None:
        self.by_linkedid: dict[str, Reservation] = {}
        self.by_ticket: dict[str, str] = {}  # ticket id -> linkedid

    def keep(self, res: Reservation) -> None:
        self.by_linkedid[res.linkedid] = res
        self.by_ticket[res.ticket_id] = res.linkedid

    def of_call(self, linkedid: str) -> Reservation | None:
        return self.by_linkedid.get(linkedid)

    def of_ticket(self, ticket_id: str) -> Reservation | None:
        linkedid = self.by_ticket.get(ticket_id)
        return self.by_linkedid.get(linkedid) if linkedid is not None else None

    def pop(self, linkedid: str) -> Reservation | None:
        res = self.by_linkedid.pop(linkedid, None)
        if res is not None:
            self.by_ticket.pop(res.ticket_id, None)
        return res

    def all(self) -> list[Reservation]:
        return list(self.by_linkedid.values())
