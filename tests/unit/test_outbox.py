"""The delivery worker against a real Redis and a scripted peer: order, retries, parking, replays."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import redis.asyncio as aioredis

from telephony.config import HostPort, Peer
from telephony.delivery import outbox as outbox_module
from telephony.delivery.client import PeerError
from telephony.delivery.outbox import OutboxWorker
from telephony.tickets.store import PREFIX, outbox_key

REDIS_DB = 5  # the unit conftest's `redis` fixture gives this database, emptied
PEER = Peer("110", "110", "http://127.0.0.1:1", HostPort("127.0.0.1", 1), "110", secrets=("whsec_" + "A" * 24,))


class ScriptedPeer:
    """Answers each send from a script of outcomes (None = accepted, or a PeerError to raise)."""

    def __init__(self, script: list[PeerError | None]) -> None:
        self.peer = PEER
        self.script = script
        self.seen: list[str] = []

    async def send(self, message: dict[str, Any]) -> None:
        self.seen.append(message["body"]["id"])
        outcome = self.script.pop(0) if self.script else None
        if outcome is not None:
            raise outcome


async def run_until_empty(worker: OutboxWorker, redis: aioredis.Redis, timeout: float = 5) -> None:
    task = asyncio.create_task(worker.run())
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while await redis.llen(outbox_key("110")) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def queue(redis: aioredis.Redis, *ids: str) -> None:
    for i in ids:
        await redis.rpush(outbox_key("110"), json.dumps({"kind": "event", "body": {"id": i, "ticket_id": "1"}}))


async def test_messages_go_in_order_and_a_transient_failure_is_retried(redis: aioredis.Redis) -> None:
    await queue(redis, "a", "b", "c")
    peer = ScriptedPeer([None, PeerError("peer unreachable"), None, None])
    worker = OutboxWorker(redis, peer, base_delay=0.001)
    await run_until_empty(worker, redis)
    assert peer.seen == ["a", "b", "b", "c"]
    assert worker.metrics.counters["linkage_delivery_sent_total"][(("peer", "110"),)] == 3
    assert worker.metrics.counters["linkage_delivery_retries_total"][(("peer", "110"),)] == 1
    assert await redis.llen(f"{PREFIX}dead:110") == 0


async def test_a_ticket_the_peer_does_not_know_is_parked_after_a_few_tries(redis: aioredis.Redis,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outbox_module, "NOT_FOUND_TRIES", 3)
    await queue(redis, "orphan", "next")
    peer = ScriptedPeer([PeerError("peer answered 404", not_found=True)] * 4)
    await run_until_empty(OutboxWorker(redis, peer, base_delay=0.001), redis)
    assert peer.seen[:4] == ["orphan"] * 4 and peer.seen[-1] == "next"  # the link is not blocked forever
    dead = [json.loads(m)["body"]["id"] for m in await redis.lrange(f"{PREFIX}dead:110", 0, -1)]
    assert dead == ["orphan"]


async def test_a_permanent_refusal_is_parked_at_once(redis: aioredis.Redis) -> None:
    await queue(redis, "bad", "good")
    peer = ScriptedPeer([PeerError("peer answered 400", permanent=True), None])
    await run_until_empty(OutboxWorker(redis, peer, base_delay=0.001), redis)
    assert peer.seen == ["bad", "good"]
    assert await redis.llen(f"{PREFIX}dead:110") == 1


async def test_retry_after_is_honoured(redis: aioredis.Redis) -> None:
    await queue(redis, "slow")
    peer = ScriptedPeer([PeerError("peer answered 429", retry_after=0.3), None])
    loop = asyncio.get_running_loop()
    start = loop.time()
    await run_until_empty(OutboxWorker(redis, peer, base_delay=0.001), redis)
    assert peer.seen == ["slow", "slow"] and loop.time() - start >= 0.3
