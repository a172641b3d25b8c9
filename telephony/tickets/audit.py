"""The audit trail of bulk exports: who exported, when, with which filter, how many tickets. An export hands
out callers' numbers and what they said, so each one leaves a record the supervisor can read back.

A capped Redis list, newest first: `record` pushes and trims in one transaction.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis.asyncio as aioredis

AUDIT_KEY = "linkage:audit:export"
KEEP = 1000  # records kept; the oldest go first
VALUE_LIMIT = 100  # characters of a filter value kept in a record (the filter was validated, but flag is free)


class ExportAudit:
    def __init__(self, redis: aioredis.Redis, keep: int = KEEP) -> None:
        self.redis = redis
        self.keep = keep

    async def record(self, *, by: str, remote: str, query: dict[str, str], fmt: str, rows: int,
                     complete: bool) -> dict[str, Any]:
        entry = {"at": round(time.time(), 3), "by": by, "remote": remote[:64], "format": fmt,
                 "filter": {k: v[:VALUE_LIMIT] for k, v in sorted(query.items()) if k != "format"},
                 "rows": rows, "complete": complete}
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.lpush(AUDIT_KEY, json.dumps(entry, ensure_ascii=False, separators=(",", ":")))
            pipe.ltrim(AUDIT_KEY, 0, self.keep - 1)
            await pipe.execute()
        return entry

    async def recent(self, limit: int = 100) -> list[dict[str, Any]]:
        """Newest first."""
        raw = await self.redis.lrange(AUDIT_KEY, 0, max(0, limit - 1))
        return [json.loads(r) for r in raw]
