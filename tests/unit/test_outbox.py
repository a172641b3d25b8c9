"""The delivery worker against a real Redis and a scripted peer: order, retries, parking, replays."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from structlog.testing import capture_logs
from test_ticket_services import plain_ticket
from throwaway import ThrowawayRedis

from telephony import backoff
from telephony.config import HostPort, Peer
from telephony.delivery import batch
from telephony.delivery import outbox as outbox_module
from telephony.delivery.client import PeerError
from telephony.delivery.deadletters import open_entry
from telephony.delivery.outbox import OutboxWorker
from telephony.metrics import sample
from telephony.security.sealing import Sealer
from telephony.tickets.store import PREFIX, Head, TicketStore, connect, outbox_key

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

    async def send_batch(self, items: list[Any]) -> list[Any]:
        # An older peer: the worker falls back to the single sends these tests script (batches: test_batch_delivery)
        raise PeerError("peer answered 404 to a batch", unsupported=True)


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
    assert sample(worker.metrics.registry, "linkage_delivery_sent_total", peer="110") == 3
    assert sample(worker.metrics.registry, "linkage_delivery_retries_total", peer="110") == 1
    assert await redis.llen(f"{PREFIX}dead:110") == 0


async def test_a_ticket_the_peer_does_not_know_is_parked_after_a_few_tries(redis: aioredis.Redis,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outbox_module, "NOT_FOUND_TRIES", 3)
    await queue(redis, "orphan", "next")
    peer = ScriptedPeer([PeerError("peer answered 404", not_found=True)] * 4)
    await run_until_empty(OutboxWorker(redis, peer, base_delay=0.001), redis)
    assert peer.seen[:4] == ["orphan"] * 4 and peer.seen[-1] == "next"  # the link is not blocked forever
    dead = [open_entry(Sealer(()), m)[0]["body"]["id"] for m in await redis.lrange(f"{PREFIX}dead:110", 0, -1)]
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


async def test_retry_after_is_bounded_by_the_configured_max(redis: aioredis.Redis) -> None:
    await queue(redis, "slow")
    peer = ScriptedPeer([PeerError("peer answered 429", retry_after=3600), None])
    loop = asyncio.get_running_loop()
    start = loop.time()
    await run_until_empty(OutboxWorker(redis, peer, base_delay=0.001, max_delay=0.05), redis)
    assert peer.seen == ["slow", "slow"] and loop.time() - start < 2


def test_backoff_delays_grow_and_cap() -> None:
    top = [backoff.delay(n, 0.2, 60, rand=lambda: 1.0) for n in range(1, 40)]
    low = [backoff.delay(n, 0.2, 60, rand=lambda: 0.0) for n in range(1, 40)]
    assert top[:5] == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2])
    assert all(b >= a for a, b in itertools.pairwise(top)) and max(top) == 60
    assert low == pytest.approx([t / 2 for t in top])  # the jitter stays in [d/2, d]: never zero
    assert backoff.delay(10**6, 0.2, 60) <= 60  # days of retries cannot overflow the exponent


async def test_the_worker_outlives_a_redis_outage_and_resends_what_it_could_not_pop(tmp_path: Path) -> None:
    server = ThrowawayRedis(tmp_path)
    server.start()
    client = aioredis.from_url(server.url, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        await queue(client, "a", "b")

        class DropsRedisAfterTheFirstSend(ScriptedPeer):
            async def send(self, message: dict[str, Any]) -> None:
                await super().send(message)
                if len(self.seen) == 1:
                    server.stop()  # the peer has "a", but the worker cannot pop it

        peer = DropsRedisAfterTheFirstSend([])
        worker = OutboxWorker(client, peer, base_delay=0.01)
        with capture_logs() as logs:
            task = asyncio.create_task(worker.run())
            await asyncio.sleep(1.0)
            assert not task.done()
            assert peer.seen == ["a"]
            server.start()
            deadline = asyncio.get_running_loop().time() + 10
            while peer.seen[-1:] != ["b"] and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.1)
            assert not task.done()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert peer.seen == ["a", "a", "b"]  # "a" again: the receiver answers it as a replay
        assert await client.llen(outbox_key("110")) == 0
        events = [e["event"] for e in logs]
        assert events.count("delivery.store_unavailable") == 1 and "delivery.store_available" in events
    finally:
        await client.aclose()
        server.stop()


async def test_a_worker_started_while_redis_is_down_waits_for_it(tmp_path: Path) -> None:
    server = ThrowawayRedis(tmp_path)  # not started yet: the port is closed
    client = aioredis.from_url(server.url, socket_timeout=0.5, socket_connect_timeout=0.5)
    peer = ScriptedPeer([])
    worker = OutboxWorker(client, peer, base_delay=0.01)
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.sleep(0.5)
        assert not task.done()
        server.start()
        await queue(client, "late")
        worker.notify()
        deadline = asyncio.get_running_loop().time() + 10
        while not peer.seen and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        assert peer.seen == ["late"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.aclose()
        server.stop()


async def test_a_message_that_lands_in_an_empty_outbox_is_sent_without_reading_it_back(redis: aioredis.Redis) -> None:
    store = TicketStore(redis)
    first: dict[str, Head] = {}
    second: dict[str, Head] = {}
    message = {"kind": "event", "body": {"id": "a", "ticket_id": "1"}}
    assert await store.put(plain_ticket("37080020260101120000000001"), [("110", message)], heads=first)
    assert await store.put(plain_ticket("37080020260101120000000002"),
                           [("110", {"kind": "event", "body": {"id": "b", "ticket_id": "2"}})], heads=second)
    assert set(first) == {"110"} and first["110"].message == message
    assert second == {}  # queued behind "a": not the head

    peer = ScriptedPeer([])
    worker = OutboxWorker(redis, peer, base_delay=0.01)
    reads: list[str] = []
    for name in ("lrange", "lindex"):
        original = getattr(redis, name)

        async def counted(*args: Any, _name: str = name, _original: Any = original) -> Any:
            reads.append(_name)
            return await _original(*args)
        setattr(worker.redis, name, counted)
    worker.notify(first["110"])
    await worker._step()
    assert peer.seen == ["a"] and reads == []  # sent from the hint, no read of the outbox
    assert [json.loads(r)["body"]["id"] for r in await redis.lrange(outbox_key("110"), 0, -1)] == ["b"]
    await worker._step()
    assert peer.seen == ["a", "b"] and reads  # "b" was read back as usual
    assert await redis.llen(outbox_key("110")) == 0


async def test_a_late_hint_for_a_message_already_sent_is_not_sent_again(redis: aioredis.Redis) -> None:
    store = TicketStore(redis)
    heads: dict[str, Head] = {}
    message = {"kind": "event", "body": {"id": "a", "ticket_id": "1"}}
    assert await store.put(plain_ticket("37080020260101120000000001"), [("110", message)], heads=heads)
    peer = ScriptedPeer([])
    worker = OutboxWorker(redis, peer, base_delay=0.01)
    await worker._step()  # read back and sent before the hint arrived
    assert peer.seen == ["a"]
    with capture_logs() as logs:
        worker.notify(heads["110"])
        worker.wake.set()
        task = asyncio.create_task(worker._step())
        await asyncio.sleep(0.1)
        worker.wake.set()
        await asyncio.wait_for(task, 2)
    assert peer.seen == ["a"]
    assert "delivery.head_moved" not in [e["event"] for e in logs]


async def test_the_controllers_client_survives_a_redis_restart(tmp_path: Path) -> None:
    """After a restart every pooled connection is dead; without a resend, each failed its first command (a
    transfer_failed AGI crashed on one in the Asterisk-restart drill and left a failed transfer unrecorded)."""
    server = ThrowawayRedis(tmp_path)
    server.start()
    client = connect(server.url, max_connections=8)
    try:
        await asyncio.gather(*[client.set(f"k{i}", i) for i in range(8)])  # eight pooled connections
        server.stop()
        server.start()  # same port, same append-only file
        assert await asyncio.gather(*[client.get(f"k{i}") for i in range(8)]) == [str(i).encode() for i in range(8)]
    finally:
        await client.aclose()
        server.stop()


class BatchingPeer(ScriptedPeer):
    """Takes batches too, and remembers them."""

    def __init__(self) -> None:
        super().__init__([])
        self.batches: list[list[str]] = []

    async def send_batch(self, items: list[Any]) -> list[Any]:
        self.batches.append([i.id for i in items])
        return [batch.Result(i.id, 200) for i in items]


def _event(event_type: str, n: int) -> dict[str, Any]:
    return {"kind": "event", "body": {"id": f"{n:032x}", "ticket_id": "37080020260101120000000001",
                                      "type": event_type}}


async def _hinted(redis: aioredis.Redis, worker: OutboxWorker, message: dict[str, Any]) -> None:
    entry = json.dumps(message)
    await redis.rpush(outbox_key("110"), entry)
    worker.notify(Head(entry, message))  # it went into an empty outbox


async def test_delivered_waits_for_the_offer_that_follows_and_nothing_else_waits(redis: aioredis.Redis) -> None:
    """delivered_linger: `delivered` waits a moment, so the `offered` that follows a few ms later goes in the same
    request. Any other event, and a ticket, is sent at once."""
    peer = BatchingPeer()
    worker = OutboxWorker(redis, peer, base_delay=0.01, linger=0.2)  # type: ignore[arg-type]
    await _hinted(redis, worker, _event("delivered", 1))
    step = asyncio.create_task(worker._step())
    await asyncio.sleep(0.05)
    assert not step.done() and peer.seen == [] and peer.batches == []  # waiting for company
    await redis.rpush(outbox_key("110"), json.dumps(_event("offered", 2)))
    worker.notify()
    await step
    assert peer.batches == [[f"event-{1:032x}", f"event-{2:032x}"]] and await redis.llen(outbox_key("110")) == 0

    await _hinted(redis, worker, _event("delivered", 3))  # alone: sent after the wait, from the hint
    start = time.monotonic()
    await worker._step()
    assert time.monotonic() - start >= 0.2 and peer.seen == [f"{3:032x}"]

    for n, message in enumerate([_event("accepted", 4), _event("signed_for", 5),
                                 {"kind": "ticket", "body": {"id": "37080020260101120000000009", "version": 1}}]):
        await _hinted(redis, worker, message)
        start = time.monotonic()
        await worker._step()
        assert time.monotonic() - start < 0.2, n
    assert peer.seen[1:] == [f"{4:032x}", f"{5:032x}", "37080020260101120000000009"]
    assert await redis.llen(outbox_key("110")) == 0


def test_only_a_refused_connection_counts_as_a_peer_that_is_down() -> None:
    from telephony.delivery.client import _unreachable

    assert _unreachable(ConnectionRefusedError(111, "Connection refused")).refused
    assert _unreachable(ConnectionResetError(104, "Connection reset by peer")).refused
    assert not _unreachable(TimeoutError()).refused  # slow, not down: plain backoff, no probe on its load
    assert not PeerError.of(503, "busy").refused


async def test_a_peer_back_from_a_restart_is_not_left_waiting_out_the_backoff(
        redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """The peer-down drill waited ~23 s after 110 was back: the next attempt's backoff (43.5 s at attempt 9)
    ran on. A real PeerClient and a real HTTP peer on loopback: down (nothing listens), the send is refused
    and the worker backs off for 20-40 s; the peer starts, answers /v1/health, and the message goes at the
    next probe."""
    import aiohttp
    from aiohttp import web

    from telephony.delivery.client import PeerClient

    monkeypatch.setattr(outbox_module, "PROBE_EVERY", 0.2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    peer = Peer("110", "110", f"http://127.0.0.1:{port}", HostPort("127.0.0.1", port), "110",
                secrets=("whsec_" + "A" * 24,))
    got: list[str] = []

    async def events(request: web.Request) -> web.Response:
        got.append(request.match_info["ticket"])
        return web.json_response({"ok": True})

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/v1/health", health)
    app.router.add_post("/v1/tickets/{ticket}/events", events)
    runner = web.AppRunner(app)
    async with aiohttp.ClientSession() as session:
        worker = OutboxWorker(redis, PeerClient(session, peer, "12345"), base_delay=40.0, max_delay=60.0)
        await queue(redis, "e1")
        with capture_logs() as logs:
            task = asyncio.create_task(worker.run())
            try:
                for _ in range(200):
                    if worker.attempt:
                        break
                    await asyncio.sleep(0.01)
                assert worker.attempt == 1  # refused, now in a backoff of 20-40 s
                await runner.setup()
                await web.TCPSite(runner, "127.0.0.1", port).start()
                started = time.monotonic()
                while await redis.llen(outbox_key("110")) and time.monotonic() - started < 5:
                    await asyncio.sleep(0.02)
                assert await redis.llen(outbox_key("110")) == 0 and got == ["1"]
                assert time.monotonic() - started < 2.0  # a probe or two, not the rest of the backoff
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                await runner.cleanup()
    assert next(e["error"] for e in logs if e["event"] == "delivery.retry").startswith("peer unreachable")
    assert any(e["event"] == "delivery.peer_back" for e in logs)
