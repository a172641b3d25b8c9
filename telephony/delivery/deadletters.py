"""The dead-letter list of a peer: messages the peer refused for good, parked so they stop blocking its link.

Each entry is a sealed JSON envelope `{"message", "error", "parked_at"}`; entries parked before the envelope
existed are the bare queued message and are still read. Replaying moves an entry to the tail of the peer's
outbox and dropping deletes it; both run as one Lua script that first checks the entry is still the one the
caller read, so two operators (or the CLI and the console) can never move a message twice or lose it, and a
crash leaves it either parked or queued, never both nor neither.

What is shown of an entry is what an operator needs to decide, and nothing personal: the kind, the ticket and
event ids, the event type, when it was parked and the peer's error (escaped and truncated).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

import redis.asyncio as aioredis

from telephony.errors import ConfigError, Conflict, InvalidInput, NotFound
from telephony.ids import EVENT_ID, TICKET_ID
from telephony.logs import escape, mask_phone
from telephony.security.sealing import Sealer
from telephony.tickets.models import EVENT_TYPES
from telephony.tickets.store import PREFIX, outbox_key

ERROR_CHARS = 160

# KEYS: dead list, outbox. ARGV: a unique tombstone, then per entry (expected value, message to queue or '').
# The first n entries must be exactly the expected ones (a parked message may have been appended since: it stays).
# With ARGV[2] = index, a single entry at that index is moved (or dropped when its message is '').
MOVE_SCRIPT = """
local mode = ARGV[2]
if mode == 'one' then
  local index = tonumber(ARGV[3])
  if redis.call('LINDEX', KEYS[1], index) ~= ARGV[4] then
    return 0
  end
  redis.call('LSET', KEYS[1], index, ARGV[1])
  redis.call('LREM', KEYS[1], 1, ARGV[1])
  if ARGV[5] ~= '' then
    redis.call('RPUSH', KEYS[2], ARGV[5])
  end
  return 1
end
local n = (#ARGV - 2) / 2
local head = redis.call('LRANGE', KEYS[1], 0, n - 1)
if #head ~= n then
  return 0
end
for i = 1, n do
  if head[i] ~= ARGV[1 + 2 * i] then
    return 0
  end
end
redis.call('LTRIM', KEYS[1], n, -1)
for i = 1, n do
  redis.call('RPUSH', KEYS[2], ARGV[2 + 2 * i])
end
return n
"""


def dead_key(peer: str) -> str:
    return f"{PREFIX}dead:{peer}"


@dataclass(frozen=True)
class DeadLetter:
    index: int
    kind: str
    ticket_id: str
    event_id: str
    event_type: str
    parked_at: float | None
    error: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def envelope(sealer: Sealer, message: dict[str, Any], error: str, parked_at: float | None = None) -> str:
    """The stored form of a parked message: the message itself, the peer's reason and when, sealed together."""
    data = {"message": message, "error": error, "parked_at": time.time() if parked_at is None else parked_at}
    return sealer.seal(json.dumps(data, ensure_ascii=False, separators=(",", ":")))


def open_entry(sealer: Sealer, raw: str | bytes) -> tuple[dict[str, Any], str, float | None]:
    """(message, error, parked_at) of a stored entry, envelope or bare message alike."""
    data = json.loads(sealer.open(raw))
    if isinstance(data, dict) and "kind" not in data and isinstance(data.get("message"), dict):
        parked_at = data.get("parked_at")
        return (data["message"], str(data.get("error", "")),
                float(parked_at) if isinstance(parked_at, (int, float)) else None)
    if not isinstance(data, dict):
        raise ValueError("a dead letter is not a JSON object")
    return data, "", None


def summary(index: int, message: dict[str, Any], error: str, parked_at: float | None) -> DeadLetter:
    body = message.get("body")
    if not isinstance(body, dict):
        body = {}
    kind = message.get("kind")
    ticket = body.get("id") if kind == "ticket" else body.get("ticket_id")
    event = body.get("id") if kind == "event" else ""
    etype = body.get("type") if kind == "event" else ""
    return DeadLetter(
        index=index,
        kind=kind if kind in ("ticket", "event") else "?",
        ticket_id=ticket if isinstance(ticket, str) and TICKET_ID.match(ticket) else "?",
        event_id=event if isinstance(event, str) and (not event or EVENT_ID.match(event)) else "?",
        event_type=etype if isinstance(etype, str) and (not etype or etype in EVENT_TYPES) else "?",
        parked_at=parked_at,
        error=clean_error(error),
    )


def clean_error(error: str) -> str:
    """A peer's answer may echo anything: no control characters, no phone numbers, a bounded length."""
    text = escape(mask_phone(error))
    return text if len(text) <= ERROR_CHARS else text[:ERROR_CHARS - 1] + "…"


async def entries(redis: aioredis.Redis, sealer: Sealer, peer: str) -> list[DeadLetter]:
    out = []
    for index, raw in enumerate(await redis.lrange(dead_key(peer), 0, -1)):
        try:
            message, error, parked_at = open_entry(sealer, raw)
        except (ValueError, ConfigError):  # still listed, so it can be dropped
            message, error, parked_at = {}, "unreadable entry (not JSON, or sealed with a key not configured)", None
        out.append(summary(index, message, error, parked_at))
    return out


async def park(redis: aioredis.Redis, sealer: Sealer, peer: str, message: dict[str, Any], error: str) -> None:
    """Move the head of the peer's outbox (which is `message`: only its worker pops it) to the dead list."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.rpush(dead_key(peer), envelope(sealer, message, error))
        pipe.lpop(outbox_key(peer))
        await pipe.execute()


async def count(redis: aioredis.Redis, peer: str) -> int:
    return int(await redis.llen(dead_key(peer)))


async def replay_one(redis: aioredis.Redis, sealer: Sealer, peer: str, index: int) -> int:
    raw = await _entry(redis, peer, index)
    return await _move(redis, peer, ["one", str(index), raw, _queued(sealer, raw, index)])


async def replay_all(redis: aioredis.Redis, sealer: Sealer, peer: str) -> int:
    """Queue every parked message again, in the order they were parked; returns how many."""
    args = ["all"]
    for index, raw in enumerate(await redis.lrange(dead_key(peer), 0, -1)):
        args += [_text(raw), _queued(sealer, raw, index)]
    return await _move(redis, peer, args) if len(args) > 1 else 0


async def drop(redis: aioredis.Redis, peer: str, index: int, *, confirm: bool) -> int:
    if not confirm:
        raise InvalidInput("dropping a dead letter loses that message for good: confirm it explicitly")
    return await _move(redis, peer, ["one", str(index), await _entry(redis, peer, index), ""])


async def _entry(redis: aioredis.Redis, peer: str, index: int) -> str:
    raw = await redis.lindex(dead_key(peer), index) if index >= 0 else None
    if raw is None:
        raise NotFound(f"peer {peer} has no dead letter at index {index}", peer=peer, index=index)
    return _text(raw)


async def _move(redis: aioredis.Redis, peer: str, args: list[str]) -> int:
    script = redis.register_script(MOVE_SCRIPT)
    moved = int(await script(keys=[dead_key(peer), outbox_key(peer)], args=[f"tombstone:{uuid.uuid4().hex}", *args]))
    if not moved:
        raise Conflict("the dead-letter list changed meanwhile (replayed or dropped elsewhere): list it again")
    return moved


def _queued(sealer: Sealer, raw: str | bytes, index: int) -> str:
    """The outbox form of a parked entry: the bare message, sealed again."""
    try:
        message, _, _ = open_entry(sealer, raw)
    except (ValueError, ConfigError) as exc:
        raise Conflict(f"dead letter {index} cannot be read, so it cannot be sent; drop it", index=index) from exc
    return sealer.seal(json.dumps(message, ensure_ascii=False, separators=(",", ":")))


def _text(raw: str | bytes) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw
