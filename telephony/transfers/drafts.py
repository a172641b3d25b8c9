"""Drafts of the tickets of active calls, in Redis: what the agent types in the console while the caller talks,
kept until the transfer takes it into the ticket, so a controller restart in between loses nothing.

One hash per call, `linkage:draft:<linkedid>`, one field per draft field, each value sealed at rest with the
ticket store's Sealer (a draft holds what a citizen said, like the ticket it becomes). A save merges field by
field in one HSET, so two saves of the same form never lose each other's fields. Each save renews a TTL: the
draft of a call that ended without a transfer goes by itself.

The key press must stay quick, so the draft is read only when one can exist: this controller saved one for the
call since it started, or the call was learnt from Asterisk after a restart (`recovered`) and a previous run
may have. The ticket's create write deletes the draft in the same atomic step (`key` is handed to the store), so
a draft is gone exactly when its ticket is stored, and is still there if the write failed and the agent presses
again.

Fields whose name starts with `_` are the call's reservation (transfers/reservations.py), never draft fields.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from typing import Any

import redis.asyncio as aioredis

from telephony.security.sealing import Sealer

PREFIX = "linkage:draft:"
RESERVATION_FIELD = "_res"  # the prepared transfer's reservation shares the hash (transfers/reservations.py)
DRAFT_TTL = 24 * 3600  # seconds a draft outlives its last save: a shift, not forever
MAX_HINTS = 1000  # calls remembered as having a draft before those of ended calls are forgotten


def draft_key(linkedid: str) -> str:
    return f"{PREFIX}{linkedid}"


class DraftStore:
    def __init__(self, redis: aioredis.Redis, sealer: Sealer, ttl: int = DRAFT_TTL) -> None:
        self.redis = redis
        self.sealer = sealer
        self.ttl = ttl
        self.saved: set[str] = set()  # linkedids this run saved a draft for

    async def get(self, linkedid: str) -> dict[str, str]:
        raw = await self.redis.hgetall(draft_key(linkedid))
        return self._fields(raw)

    async def put(self, linkedid: str, fields: dict[str, str]) -> dict[str, str]:
        """Merge `fields` (validated already) into the call's draft; returns the whole draft."""
        key = draft_key(linkedid)
        async with self.redis.pipeline(transaction=True) as pipe:
            if fields:
                pipe.hset(key, mapping={k: self.sealer.seal(v) for k, v in fields.items()})
            pipe.expire(key, self.ttl)
            pipe.hgetall(key)
            *_, raw = await pipe.execute()
        self.saved.add(linkedid)
        return self._fields(raw)

    def _fields(self, raw: Mapping[Any, Any]) -> dict[str, str]:
        return {name: self.sealer.open(v) for k, v in raw.items() if not (name := _text(k)).startswith("_")}

    def prune(self, active: Container[str]) -> None:
        """Forget the hints of calls that ended (their drafts expire in Redis): only an active call is
        transferred, so this never hides a draft that a key press could still use."""
        if len(self.saved) > MAX_HINTS:
            self.saved = {linkedid for linkedid in self.saved if linkedid in active}

    async def for_call(self, linkedid: str, recovered: bool) -> dict[str, str]:
        """The draft of a call about to be transferred, read only when one can exist (see the module doc)."""
        if linkedid not in self.saved and not recovered:
            return {}
        return await self.get(linkedid)

    def stored(self, linkedid: str) -> None:
        """The ticket that took this call's draft is stored (and the draft with it deleted)."""
        self.saved.discard(linkedid)

    async def drop(self, linkedid: str) -> None:
        self.saved.discard(linkedid)
        await self.redis.delete(draft_key(linkedid))


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw
