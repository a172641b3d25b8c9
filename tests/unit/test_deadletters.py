"""Dead letters against a real Redis: parked with the peer's reason, listed without anything personal, replayed
in order to the tail of the outbox (one or all, atomically), dropped only when confirmed."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import pytest
import redis.asyncio as aioredis

from telephony.config import HostPort, Peer
from telephony.delivery import deadletters
from telephony.delivery.client import PeerError
from telephony.delivery.outbox import OutboxWorker
from telephony.errors import Conflict, InvalidInput, NotFound
from telephony.security.sealing import Sealer
from telephony.tickets.store import outbox_key

REDIS_DB = 10  # the unit conftest's `redis` fixture gives this database, emptied
PEER = Peer("110", "110", "http://127.0.0.1:1", HostPort("127.0.0.1", 1), "110", secrets=("whsec_" + "A" * 24,))
TID = "37080020260101120000123456"
SEALER = Sealer((base64.b64encode(b"k" * 32).decode(),))


def event(n: int) -> dict[str, Any]:
    return {"kind": "event", "body": {"id": f"{n:032x}", "ticket_id": TID, "type": "accepted",
                                      "payload": {"result": "13912345678 at home"}}}


def ticket() -> dict[str, Any]:
    return {"kind": "ticket", "body": {"id": TID, "caller_number": "13912345678", "content": "a secret"}}


class Peer110:
    """Refuses what `refuse` names (by body id), accepts the rest, and records what it accepted."""

    def __init__(self, refuse: set[str]) -> None:
        self.peer = PEER
        self.refuse = refuse
        self.accepted: list[str] = []

    async def send(self, message: dict[str, Any]) -> None:
        if message["body"]["id"] in self.refuse:
            raise PeerError('peer answered 400: {"error":"invalid_input","message":"bad\r\nforged 13912345678"}',
                            permanent=True)
        self.accepted.append(message["body"]["id"])

    async def send_batch(self, items: list[Any]) -> list[Any]:
        # An older peer: the worker falls back to single sends (parking from a batch: test_batch_delivery)
        raise PeerError("peer answered 404 to a batch", unsupported=True)


async def drain(worker: OutboxWorker, redis: aioredis.Redis) -> None:
    task = asyncio.create_task(worker.run())
    try:
        deadline = asyncio.get_running_loop().time() + 5
        while await redis.llen(outbox_key("110")) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def enqueue(redis: aioredis.Redis, *messages: dict[str, Any]) -> None:
    for m in messages:
        await redis.rpush(outbox_key("110"), SEALER.seal(json.dumps(m)))


async def test_park_list_replay_and_delivered_in_order(redis: aioredis.Redis) -> None:
    await enqueue(redis, ticket(), event(1), event(2), event(3))
    peer = Peer110({TID, f"{1:032x}", f"{3:032x}"})
    before = time.time()
    await drain(OutboxWorker(redis, peer, base_delay=0.001, sealer=SEALER), redis)
    assert peer.accepted == [f"{2:032x}"]

    listed = await deadletters.entries(redis, SEALER, "110")
    assert [(d.index, d.kind, d.ticket_id, d.event_id, d.event_type) for d in listed] == [
        (0, "ticket", TID, "", ""), (1, "event", TID, f"{1:032x}", "accepted"),
        (2, "event", TID, f"{3:032x}", "accepted")]
    assert all(d.parked_at is not None and before <= d.parked_at <= time.time() for d in listed)
    shown = json.dumps([d.to_dict() for d in listed])
    assert "13912345678" not in shown and "secret" not in shown and "at home" not in shown
    error = listed[0].error
    assert error.startswith("peer answered 400") and "\r" not in error and "\\x0d" in error
    stored = b"".join(await redis.lrange(deadletters.dead_key("110"), 0, -1))
    assert b"13912345678" not in stored and b"peer answered" not in stored  # sealed at rest, reason included

    assert await deadletters.replay_one(redis, SEALER, "110", 1) == 1  # event 1 first, then the rest
    assert await deadletters.replay_all(redis, SEALER, "110") == 2
    assert await deadletters.count(redis, "110") == 0
    peer.refuse.clear()
    await drain(OutboxWorker(redis, peer, base_delay=0.001, sealer=SEALER), redis)
    assert peer.accepted == [f"{2:032x}", f"{1:032x}", TID, f"{3:032x}"]


async def test_old_plain_entries_are_still_read_and_replayed(redis: aioredis.Redis) -> None:
    plain = Sealer(())
    await redis.rpush(deadletters.dead_key("110"), json.dumps(event(7)))  # parked before the envelope existed
    await redis.rpush(deadletters.dead_key("110"), deadletters.envelope(plain, event(8), "peer answered 400", 5.0))
    listed = await deadletters.entries(redis, plain, "110")
    assert [(d.event_id, d.error, d.parked_at) for d in listed] == [
        (f"{7:032x}", "", None), (f"{8:032x}", "peer answered 400", 5.0)]
    assert await deadletters.replay_all(redis, plain, "110") == 2
    queued = [json.loads(m) for m in await redis.lrange(outbox_key("110"), 0, -1)]
    assert queued == [event(7), event(8)]  # the outbox holds bare messages, as the worker reads them


async def test_replay_goes_to_the_tail_and_keeps_what_was_parked_meanwhile(redis: aioredis.Redis) -> None:
    await enqueue(redis, event(1))
    for n in (2, 3):
        await redis.rpush(deadletters.dead_key("110"), deadletters.envelope(SEALER, event(n), "x"))
    assert await deadletters.replay_one(redis, SEALER, "110", 0) == 1
    ids = [json.loads(SEALER.open(m))["body"]["id"] for m in await redis.lrange(outbox_key("110"), 0, -1)]
    assert ids == [f"{1:032x}", f"{2:032x}"]
    assert [d.event_id for d in await deadletters.entries(redis, SEALER, "110")] == [f"{3:032x}"]


async def test_a_stale_index_is_refused_and_nothing_moves(redis: aioredis.Redis) -> None:
    for n in (1, 2):
        await redis.rpush(deadletters.dead_key("110"), deadletters.envelope(SEALER, event(n), "x"))
    read = (await redis.lindex(deadletters.dead_key("110"), 0)).decode()
    await deadletters.drop(redis, "110", 0, confirm=True)  # someone else dropped it meanwhile
    with pytest.raises(Conflict):
        await deadletters._move(redis, "110", ["one", "0", read, "queued"])
    assert await redis.llen(outbox_key("110")) == 0 and await deadletters.count(redis, "110") == 1
    with pytest.raises(NotFound):
        await deadletters.replay_one(redis, SEALER, "110", 5)
    with pytest.raises(NotFound):
        await deadletters.replay_one(redis, SEALER, "110", -1)


async def test_drop_needs_a_confirmation(redis: aioredis.Redis) -> None:
    for n in (1, 2):
        await redis.rpush(deadletters.dead_key("110"), deadletters.envelope(SEALER, event(n), "x"))
    with pytest.raises(InvalidInput):
        await deadletters.drop(redis, "110", 0, confirm=False)
    assert await deadletters.count(redis, "110") == 2
    assert await deadletters.drop(redis, "110", 0, confirm=True) == 1
    assert [d.event_id for d in await deadletters.entries(redis, SEALER, "110")] == [f"{2:032x}"]
    assert await redis.llen(outbox_key("110")) == 0


async def test_an_unreadable_entry_is_listed_and_can_only_be_dropped(redis: aioredis.Redis) -> None:
    await redis.rpush(deadletters.dead_key("110"), "not json \x1b[2J")
    [entry] = await deadletters.entries(redis, SEALER, "110")
    assert (entry.kind, entry.ticket_id) == ("?", "?") and "unreadable" in entry.error
    with pytest.raises(Conflict):
        await deadletters.replay_one(redis, SEALER, "110", 0)
    assert await deadletters.drop(redis, "110", 0, confirm=True) == 1


def test_an_error_is_escaped_masked_and_truncated() -> None:
    text = deadletters.clean_error("refused \n call 13912345678 " + "x" * 500)
    assert "\n" not in text and "13912345678" not in text and len(text) == deadletters.ERROR_CHARS
