"""Batched delivery end to end: the real 12345 outbox worker and PeerClient against the real 110 API app on a
loopback port (above the lab's range), each site on its own real Redis database. Order, partial answers,
parking, replays, strict bodies, per-message authorisation, and the fallback to single sends."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs
from throwaway import free_port

from linkage_lab.lab.lab import PLANS, Lab
from telephony.api.app import build_app
from telephony.api.metrics import HttpMetrics
from telephony.api.stream import StreamHub
from telephony.config import SiteConfig, parse_site_config
from telephony.delivery import batch
from telephony.delivery.client import PeerClient
from telephony.delivery.deadletters import dead_key, open_entry
from telephony.delivery.outbox import OutboxWorker
from telephony.metrics import sample
from telephony.security import signing
from telephony.security.sealing import Sealer
from telephony.tickets.hooks import TicketHooks
from telephony.tickets.models import Event, Party, Ticket, new_event_id, now_iso, parse_ticket
from telephony.tickets.services import TicketService
from telephony.tickets.store import TicketStore, outbox_key

REDIS_DB = 12  # the sender's database (the unit conftest's `redis` fixture, emptied); the receiver's is 13
RECEIVER_DB = 13
T1, T2, T3 = "37080020260101120000000001", "37080020260101120000000002", "37080020260101120000000003"
ACTOR = {"platform": "12345", "site": "12345", "agent": "1001"}


def ticket(tid: str, source: str = "12345") -> dict[str, Any]:
    created = Event(new_event_id(), tid, "created", now_iso(), {"platform": source, "site": source}, seq=1)
    t = Ticket(id=tid, direction=f"{source}->110", source=Party(source, source), target=Party("110", "110"),
               caller_number="13912345678", agent_id="1001", linkedid="1.1", uniqueids=[], created_at=now_iso(),
               version=1, history=[created], path=[source, "110"])
    return {"kind": "ticket", "body": t.to_dict()}


def amended(tid: str, seq: int, title: str) -> dict[str, Any]:
    event = Event(new_event_id(), tid, "amended", now_iso(), ACTOR, {"title": title}, seq=seq)
    return {"kind": "event", "body": event.to_dict()}


@dataclass
class Link:
    """The sending site's worker towards 110, and 110 itself (its ticket service and Redis)."""

    sender: aioredis.Redis
    receiver: aioredis.Redis
    tickets: TicketService
    client: PeerClient
    worker: OutboxWorker
    url: str

    async def queue(self, *messages: dict[str, Any]) -> None:
        await self.sender.rpush(outbox_key("110"), *[json.dumps(m) for m in messages])

    async def queued(self) -> list[str]:
        return [batch.message_id(json.loads(m)) for m in await self.sender.lrange(outbox_key("110"), 0, -1)]

    async def titles(self, tid: str) -> list[str]:
        stored = await self.tickets.store.get(tid)
        assert stored is not None
        return [e.payload["title"] for e in stored.history if e.type == "amended"]

    async def seen(self, message: dict[str, Any]) -> bool:
        return bool(await self.receiver.exists(f"linkage:seen:12345:{batch.message_id(message)}"))

    def count(self, name: str) -> float:
        return sample(self.worker.metrics.registry, name, peer="110")

    async def post(self, raw: bytes) -> tuple[int, Any]:
        peer = self.client.peer
        headers = {"Content-Type": "application/json",
                   **signing.headers("12345", peer.secrets, f"batch-{uuid.uuid4().hex}", raw)}
        async with self.client.session.post(f"{self.url}/v1/batch", data=raw, headers=headers) as resp:
            return resp.status, await resp.json(content_type=None)


def _sender_config(tmp_path: Path, url: str) -> SiteConfig:
    raw = copy.deepcopy(Lab(rootfs=str(tmp_path)).site_raw(PLANS["12345"]))
    next(p for p in raw["peers"] if p["name"] == "110")["url"] = url
    return parse_site_config(raw, str(tmp_path / "12345.yaml"))


async def _serve(app: web.Application, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


@pytest.fixture
async def receiver(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url.rsplit("/", 1)[0] + f"/{RECEIVER_DB}")
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture
async def link(tmp_path: Path, redis: aioredis.Redis, receiver: aioredis.Redis) -> AsyncIterator[Link]:
    config = Lab(rootfs=str(tmp_path)).site_config(PLANS["110"])
    store = TicketStore(receiver, Sealer(config.storage.keys))
    tickets = TicketService(config, store, TicketHooks())

    async def health() -> dict[str, Any]:
        return {"ok": True}

    app = build_app(config, tickets=tickets, transfers=None, threeway=None, returns=None, calls=None,  # type: ignore[arg-type]
                    hub=StreamHub(config.site.name), metrics=HttpMetrics(CollectorRegistry()),
                    health=health, redis=receiver,
                    sealer=store.sealer, wake=lambda peer: None)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    peer = _sender_config(tmp_path, url).peer("110")
    assert peer is not None
    runner = await _serve(app, port)
    async with aiohttp.ClientSession() as session:
        client = PeerClient(session, peer, "12345", timeout=5.0)
        yield Link(redis, receiver, tickets, client, OutboxWorker(redis, client, base_delay=0.001), url)
    await runner.cleanup()


async def drain(worker: OutboxWorker, redis: aioredis.Redis, steps: int = 20) -> None:
    for _ in range(steps):
        if not await redis.llen(outbox_key("110")):
            return
        await worker._step()


async def test_a_queue_of_tickets_and_events_goes_in_one_batch_in_order(link: Link) -> None:
    messages = [ticket(T1), amended(T1, 2, "a"), ticket(T2), amended(T1, 3, "b"), amended(T2, 2, "c")]
    await link.queue(*messages)
    await link.worker._step()
    assert await link.queued() == []
    assert await link.titles(T1) == ["a", "b"] and await link.titles(T2) == ["c"]
    assert all([await link.seen(m) for m in messages])
    assert (link.count("linkage_delivery_batches_total"), link.count("linkage_delivery_batched_messages_total"),
            link.count("linkage_delivery_sent_total")) == (1, 5, 5)


async def test_a_single_queued_message_still_takes_the_single_route(link: Link) -> None:
    await link.queue(ticket(T1))
    await link.worker._step()
    assert await link.queued() == [] and await link.tickets.store.get(T1) is not None
    assert link.count("linkage_delivery_batches_total") == 0 and link.count("linkage_delivery_sent_total") == 1


async def test_a_message_refused_for_good_is_parked_and_the_rest_delivered(link: Link) -> None:
    await link.tickets.receive(_parse(ticket(T3, source="99999")), via="push")
    forbidden = amended(T3, 2, "not yours")  # 12345 is not a party of T3: 403, a refusal for good
    await link.queue(ticket(T1), amended(T1, 2, "a"), forbidden, amended(T1, 3, "b"))
    await link.worker._step()
    assert await link.queued() == []
    assert await link.titles(T1) == ["a", "b"] and await link.titles(T3) == []
    [entry] = await link.sender.lrange(dead_key("110"), 0, -1)
    message, error, _ = open_entry(Sealer(()), entry)
    assert message["body"]["id"] == forbidden["body"]["id"] and error.startswith("peer answered 403: forbidden")
    assert link.count("linkage_delivery_dead_total") == 1 and link.count("linkage_delivery_sent_total") == 3
    assert not await link.seen(forbidden)


async def test_a_batch_stops_at_a_retriable_status_and_the_rest_follows_in_order(link: Link) -> None:
    early = amended(T2, 2, "early")  # T2 has not reached 110 yet: 404, retried
    last = amended(T1, 3, "b")
    await link.queue(ticket(T1), amended(T1, 2, "a"), early, last)
    await link.worker._step()
    assert await link.queued() == [batch.message_id(early), batch.message_id(last)]  # the prefix is gone
    assert await link.titles(T1) == ["a"]  # "b" was not looked at: it waits behind "early"
    assert link.worker.attempt == 1 and link.count("linkage_delivery_retries_total") == 1
    await link.tickets.receive(_parse(ticket(T2)), via="push")
    await link.worker._step()
    assert await link.queued() == [] and link.worker.attempt == 0
    assert await link.titles(T1) == ["a", "b"] and await link.titles(T2) == ["early"]
    assert link.count("linkage_delivery_batches_total") == 2 and await link.sender.llen(dead_key("110")) == 0


async def test_replays_and_duplicates_inside_a_batch_count_as_delivered(link: Link) -> None:
    first, event, last = ticket(T1), amended(T1, 2, "a"), amended(T1, 3, "b")
    again = amended(T1, 2, "a again")  # a new event id with a seq already applied: the "duplicate" outcome
    await link.client.send(first)  # delivered alone earlier, but its answer was lost: still queued
    await link.queue(first, event, event, last, again)
    await link.worker._step()
    assert await link.queued() == [] and await link.sender.llen(dead_key("110")) == 0
    assert link.count("linkage_delivery_batches_total") == 1 and link.count("linkage_delivery_sent_total") == 5
    assert await link.titles(T1) == ["a", "b"]
    results = await link.client.send_batch([batch.Outgoing.of(m) for m in (first, event, event, again)])
    assert [(r.status, r.error) for r in results] == [(409, "replayed")] * 4


def _parse(message: dict[str, Any]) -> Ticket:
    return parse_ticket(message["body"])


def _malformed() -> list[Any]:
    good = batch.Outgoing.of(ticket(T1))
    item = json.loads(good.data)
    event = amended(T1, 2, "a")
    return [
        {}, [], "x", {"messages": []}, {"messages": item}, {"messages": [item], "more": 1},
        {"messages": [json.loads(batch.Outgoing.of(event).data)] * 101},
        {"messages": [item, {**item, "extra": 1}]},
        {"messages": [item, {"id": item["id"], "kind": "ticket"}]},
        {"messages": [item, {**item, "kind": "call"}]},
        {"messages": [item, {**item, "body": [item["body"]]}]},
        {"messages": [item, {**item, "id": f"ticket-{T1}-7"}]},  # not the id its body implies
        {"messages": [item, {"id": f"event-{'0' * 32}", "kind": "event", "body": event["body"]}]},
        {"messages": [item, {"id": f"ticket-{T1}-1", "kind": "event", "body": event["body"]}]},
        {"messages": [item, {**item, "id": 5}]},
    ]


@pytest.mark.parametrize("body", _malformed())
async def test_a_malformed_batch_is_refused_whole_and_changes_nothing(link: Link, body: Any) -> None:
    status, answer = await link.post(json.dumps(body).encode())
    assert (status, answer["error"]) == (400, "invalid_input")
    assert await link.tickets.store.get(T1) is None and await link.receiver.keys("linkage:seen:*") == []


async def test_a_batch_that_is_not_json_or_too_large_is_refused(link: Link) -> None:
    assert (await link.post(b'{"messages": ['))[0] == 400
    big = {"messages": [{**json.loads(batch.Outgoing.of(ticket(T1)).data)}]}
    big["messages"][0]["body"]["content"] = "x" * (64 * 1024)
    assert (await link.post(json.dumps(big).encode()))[0] == 413
    assert await link.tickets.store.get(T1) is None and await link.receiver.keys("linkage:seen:*") == []


async def test_each_message_is_authorised_for_the_signer(link: Link) -> None:
    await link.tickets.receive(_parse(ticket(T3, source="99999")), via="push")
    foreign = ticket(T2, source="99999")  # neither from 12345 nor through it
    not_a_party = amended(T3, 2, "mine now")
    results = await link.client.send_batch([batch.Outgoing.of(m) for m in (foreign, not_a_party, ticket(T1))])
    assert [(r.status, r.error) for r in results] == [(403, "forbidden"), (403, "forbidden"), (201, None)]
    assert await link.tickets.store.get(T2) is None and await link.titles(T3) == []
    assert not await link.seen(foreign) and not await link.seen(not_a_party) and await link.seen(ticket(T1))


async def test_a_peer_without_the_batch_route_gets_single_sends_and_it_is_logged_once(
        tmp_path: Path, redis: aioredis.Redis) -> None:
    got: list[tuple[str, str]] = []

    async def single(request: web.Request) -> web.Response:
        got.append((request.path, request.headers["webhook-id"]))
        return web.json_response({}, status=200)

    old = web.Application()  # an older peer: the single routes only, so /v1/batch is a 404
    old.router.add_post("/v1/tickets", single)
    old.router.add_post("/v1/tickets/{id}/events", single)
    port = free_port()
    runner = await _serve(old, port)
    peer = _sender_config(tmp_path, f"http://127.0.0.1:{port}").peer("110")
    assert peer is not None
    try:
        async with aiohttp.ClientSession() as session:
            worker = OutboxWorker(redis, PeerClient(session, peer, "12345", timeout=5.0), base_delay=0.001)
            messages = [ticket(T1), amended(T1, 2, "a"), amended(T1, 3, "b")]
            later = [amended(T1, 4, "c"), amended(T1, 5, "d")]
            await redis.rpush(outbox_key("110"), *[json.dumps(m) for m in messages])
            with capture_logs() as logs:
                await drain(worker, redis)
                await redis.rpush(outbox_key("110"), *[json.dumps(m) for m in later])
                await drain(worker, redis)
        assert await redis.llen(outbox_key("110")) == 0 and await redis.llen(dead_key("110")) == 0
        assert [mid for _, mid in got] == [batch.message_id(m) for m in [*messages, *later]]
        assert [e["event"] for e in logs].count("delivery.batch_unsupported") == 1
        assert sample(worker.metrics.registry, "linkage_delivery_batches_total", peer="110") == 0
    finally:
        await runner.cleanup()


async def test_a_replayed_ticket_push_is_refused_in_the_stores_own_write(link: Link) -> None:
    """The single ticket route checks its replay key inside the store's write, not with a read first: the
    same signed message again is still refused (409 replayed) and changes nothing."""
    message = ticket(T1)
    body = json.dumps(message["body"]).encode()
    peer = link.client.peer
    headers = {"Content-Type": "application/json",
               **signing.headers("12345", peer.secrets, batch.message_id(message), body)}
    commands: list[str] = []
    real = link.receiver.execute_command

    async def counting(*args: Any, **kwargs: Any) -> Any:
        commands.append(str(args[0]))
        return await real(*args, **kwargs)

    link.receiver.execute_command = counting  # type: ignore[method-assign]
    answers = []
    for _ in range(2):
        before = await link.receiver.get(f"linkage:ticket:{T1}")
        async with link.client.session.post(f"{link.url}/v1/tickets", data=body, headers=headers) as resp:
            answers.append((resp.status, (await resp.json())))
    assert answers[0][0] == 201 and answers[0][1]["created"] is True
    assert answers[1][0] == 409 and answers[1][1]["error"] == "replayed"
    assert await link.receiver.get(f"linkage:ticket:{T1}") == before  # the replay wrote nothing
    assert "EXISTS" not in commands and commands.count("EVALSHA") == 2  # one write each, no read first
    stored = await link.tickets.store.get(T1)
    assert stored is not None and [e.type for e in stored.history] == ["created", "delivered"]

