"""Flags on callers' numbers and their audit trail, at rest in Redis.

- `linkage:callers:flags`, a hash: one field per flagged number (a random id, so the number is in no key), the
  value the flag as JSON, sealed like every other piece of caller data (telephony/security/sealing.py);
- `linkage:audit:flags`, a capped list, newest first: every flag and unflag (who, when, why), sealed too.
A flag and its audit entry are written in one MULTI transaction: a flag is never stored unaudited.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Literal

import msgspec
import redis.asyncio as aioredis
from msgspec import Meta

from telephony.ids import CALLER_NUMBER, TEXT
from telephony.security.sealing import Sealer

FLAGS_KEY = "linkage:callers:flags"
AUDIT_KEY = "linkage:audit:flags"
AUDIT_KEEP = 5000  # entries kept; the oldest go first
REASON_MAX = 200  # characters: a short note for the next agent, not a case file

Number = Annotated[str, Meta(pattern=CALLER_NUMBER.pattern)]
Reason = Annotated[str, Meta(min_length=1, max_length=REASON_MAX, pattern=TEXT.pattern)]
SUPERVISOR = "supervisor"  # `by` of the site token (the supervisor's console)


class Flag(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    number: Number
    reason: Reason
    by: str  # the agent's id, or SUPERVISOR
    at: float  # epoch seconds


class AuditEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    action: Literal["flag", "unflag"]
    number: Number
    reason: Reason
    by: str
    at: float


class FlagStore:
    def __init__(self, redis: aioredis.Redis, sealer: Sealer, keep: int = AUDIT_KEEP) -> None:
        self.redis = redis
        self.sealer = sealer
        self.keep = keep

    async def load(self) -> dict[str, tuple[str, Flag]]:
        """number -> (field, flag). Two fields for one number (a write retried across a restart) keep the newest."""
        out: dict[str, tuple[str, Flag]] = {}
        stale = []
        for field, raw in (await self.redis.hgetall(FLAGS_KEY)).items():
            name = field.decode() if isinstance(field, bytes) else field
            flag = msgspec.json.decode(self.sealer.open(raw), type=Flag)
            old = out.get(flag.number)
            if old is not None:
                keep, drop = ((name, flag), old[0]) if flag.at >= old[1].at else (old, name)
                out[flag.number] = keep
                stale.append(drop)
            else:
                out[flag.number] = (name, flag)
        if stale:
            await self.redis.hdel(FLAGS_KEY, *stale)
        return out

    async def put(self, field: str | None, flag: Flag) -> str:
        """Store (or replace) a flag with its audit entry; returns its field."""
        field = field or secrets.token_hex(8)
        entry = AuditEntry("flag", flag.number, flag.reason, flag.by, flag.at)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(FLAGS_KEY, field, self._seal(flag))
            self._audit(pipe, entry)
            await pipe.execute()
        return field

    async def delete(self, field: str, entry: AuditEntry) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(FLAGS_KEY, field)
            self._audit(pipe, entry)
            await pipe.execute()

    async def audit(self, limit: int) -> list[AuditEntry]:
        """Newest first."""
        raw = await self.redis.lrange(AUDIT_KEY, 0, max(0, limit - 1))
        return [msgspec.json.decode(self.sealer.open(r), type=AuditEntry) for r in raw]

    def _audit(self, pipe: aioredis.client.Pipeline, entry: AuditEntry) -> None:
        pipe.lpush(AUDIT_KEY, self._seal(entry))
        pipe.ltrim(AUDIT_KEY, 0, self.keep - 1)

    def _seal(self, value: Flag | AuditEntry) -> str:
        return self.sealer.seal(msgspec.json.encode(value).decode())
