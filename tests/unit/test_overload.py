"""Overload safety and the early push (issue 17), against the real Redis: the AMI handlers' writes run in lanes,
off the event queue, in order within a ticket or call; route_in rings an agent within `transfer.route_budget` when
the ticket's push, its fetch or our own Redis is too slow, and the facts of that call land on the ticket when it
comes; a prepared ticket's push leaves before its write, once."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry
from test_outbox import ScriptedPeer
from test_prepared_transfers import AGENT, LINKEDID, Pbx, _build, _events, _reserve

from linkage_lab.lab.lab import PLANS, Lab
from telephony.calls.registry import CallRegistry
from telephony.delivery.client import PeerClient, PeerError
from telephony.delivery.outbox import OutboxWorker
from telephony.lanes import Lanes
from telephony.metrics import sample
from telephony.tickets.hooks import TicketHooks
from telephony.tickets.models import new_ticket_id
from telephony.tickets.services import TicketService
from telephony.tickets.store import TicketStore, outbox_key
from telephony.transfers.ami import PreparedAmi, TransferAmi
from telephony.transfers.arrivals import Arrivals
from telephony.transfers.metrics import TransferMetrics
from telephony.transfers.receiving import ReceivingService

REDIS_DB = 13  # the unit conftest's `redis` fixture gives this database, emptied
TRUNK = "1795936000.7"


async def test_a_lane_keeps_its_order_and_lanes_overlap() -> None:
    lanes = Lanes("test")
    gate = asyncio.Event()
    done: list[str] = []

    async def step(name: str, wait: bool = False) -> None:
        if wait:
            await gate.wait()
        done.append(name)

    await lanes.run("a", lambda: step("a1", wait=True))
    await lanes.run("a", lambda: step("a2"))
    await lanes.run("b", lambda: step("b1"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert done == ["b1"]  # b does not wait for a's first piece; a's second does
    gate.set()
    await lanes.idle()
    assert done == ["b1", "a1", "a2"] and lanes.tails == {} and not lanes.running


async def test_a_failing_piece_is_logged_and_the_lane_goes_on() -> None:
    lanes = Lanes("test")
    done: list[int] = []

    async def fail() -> None:
        raise RuntimeError("boom")

    async def ok() -> None:
        done.append(1)

    await lanes.run("a", fail)
    await lanes.run("a", ok)
    await lanes.idle()
    assert done == [1]


async def test_beyond_the_bound_the_caller_waits_for_its_piece() -> None:
    lanes = Lanes("test", max_running=2)
    gate = asyncio.Event()

    async def held() -> None:
        await gate.wait()

    await lanes.run("a", held)
    await lanes.run("b", held)  # two in flight: both returned at once
    third = asyncio.create_task(lanes.run("c", held))
    await asyncio.sleep(0.01)
    assert not third.done()  # the event queue would wait here: back-pressure instead of a pile of tasks
    gate.set()
    await asyncio.wait_for(third, 2.0)
    await lanes.idle()


async def test_the_press_handler_returns_before_the_ticket_write_and_a_hangup_waits_for_it(
        tmp_path: Path, redis: aioredis.Redis) -> None:
    calls, pbx = CallRegistry(), Pbx()
    _events(calls)
    prepared = _build(tmp_path, redis, calls, pbx)
    ticket_id = await _reserve(prepared)
    gate = asyncio.Event()
    real_create = prepared.sending.tickets.store.create

    async def slow_create(*args: Any, **kwargs: Any) -> Any:
        await gate.wait()
        return await real_create(*args, **kwargs)

    prepared.sending.tickets.store.create = slow_create  # type: ignore[method-assign]
    metrics = TransferMetrics(CollectorRegistry())
    adapter = PreparedAmi(prepared, metrics)
    await asyncio.wait_for(adapter.on_event({"Event": "UserEvent", "UserEvent": "LinkagePress", "Ticket": ticket_id,
                                             "Target": "110", "Linkedid": LINKEDID}), 2.0)
    assert ticket_id in prepared.completing  # claimed at once: the queue's next event sees the press
    for uniqueid in (AGENT, LINKEDID):
        calls.on_event({"Event": "Hangup", "Uniqueid": uniqueid, "Linkedid": LINKEDID})
    await adapter.on_event({"Event": "Hangup", "Uniqueid": LINKEDID, "Linkedid": LINKEDID})
    gate.set()
    await adapter.lanes.idle()
    stored = await prepared.sending.tickets.store.get(ticket_id)
    assert stored is not None and [e.type for e in stored.history] == ["created"]  # made, not dropped
    assert prepared.reserved.of_call(LINKEDID) is None and not prepared.completing
    assert sample(metrics.registry, "linkage_press_handling_seconds_count") == 1  # the press timed, in its lane


class HangingPeer(PeerClient):
    """A peer whose ticket fetch never answers (the sender's controller far behind)."""

    def __init__(self, peer: Any) -> None:
        self.peer = peer
        self.fetches = 0

    async def fetch_ticket(self, url: str) -> dict[str, Any]:
        self.fetches += 1
        await asyncio.Event().wait()
        raise AssertionError


async def test_route_in_under_overload_rings_an_agent_and_the_late_ticket_gets_the_facts(
        tmp_path: Path, redis: aioredis.Redis, redis_url: str) -> None:
    """The push does not come, the fetch by reference hangs: route_in still names an agent within the budget
    (no call is dropped), the call's offered / signed_for are kept against the header's id, and they land on the
    ticket when its push comes at last."""
    calls, pbx = CallRegistry(), Pbx()
    _events(calls)
    sender = _build(tmp_path, redis, calls, pbx)
    made = await sender.pressed(await _reserve(sender), "110")
    assert made is not None
    base = Lab(rootfs=str(tmp_path)).site_config(PLANS["110"])
    far_config = msgspec.structs.replace(base, transfer=msgspec.structs.replace(
        base.transfer, route_budget=0.2, push_wait=0.05, fetch_timeout=5.0))  # the fetch outlasts the budget
    far_redis = aioredis.from_url(redis_url.rsplit("/", 1)[0] + "/12")  # the receiver's own database
    await far_redis.flushdb()
    try:
        arrivals = Arrivals(far_config.transfer.push_wait)
        far = TicketService(far_config, TicketStore(far_redis), TicketHooks(landed=(arrivals.land,)))
        sender_peer = far_config.peer("12345")
        assert sender_peer is not None
        peer = HangingPeer(sender_peer)
        far_calls = CallRegistry()
        receiving = ReceivingService(far_config, far_calls, far, {"12345": peer}, arrivals)
        adapter = TransferAmi(receiving, TransferMetrics(CollectorRegistry()))

        async def call_info() -> str:
            return f"<{sender_peer.url}/v1/tickets/{made.id}>"

        route = await asyncio.wait_for(receiving.route(made.id, TRUNK, call_info, TRUNK), 3.0)
        first = far_config.accounts.agents[0].id
        assert route.dest == f"PJSIP/agent{first}" and not route.relay and peer.fetches == 1
        assert receiving.ticket_of(TRUNK) == made.id and far_calls.received[TRUNK] == made.id
        assert arrivals.waiting == {}
        for event in ({"Event": "DialBegin", "Uniqueid": TRUNK, "Linkedid": TRUNK,
                       "DestChannel": f"PJSIP/agent{first}-00000001"},
                      {"Event": "DialEnd", "Uniqueid": TRUNK, "Linkedid": TRUNK,
                       "DestChannel": f"PJSIP/agent{first}-00000001", "DialStatus": "ANSWER"}):
            await adapter.on_event(event)
        await adapter.lanes.idle()
        assert await far.store.get(made.id) is None  # still not here
        _, stored = await far.receive(made, via="push")  # the late push
        assert stored
        held = await far.store.get(made.id)
        assert held is not None
        assert [e.type for e in held.history] == ["created", "delivered", "offered", "signed_for"]
        assert held.signed_for_by == first
        receiving.on_change(held, held.history[1])
        assert not receiving.tasks  # its call was routed already: no route published for it
    finally:
        await far_redis.flushdb()
        await far_redis.aclose()


async def test_route_in_with_its_own_redis_stuck_still_routes(tmp_path: Path, redis: aioredis.Redis) -> None:
    base = Lab(rootfs=str(tmp_path)).site_config(PLANS["110"])
    config = msgspec.structs.replace(base, transfer=msgspec.structs.replace(base.transfer, route_budget=0.1))
    tickets = TicketService(config, TicketStore(redis), TicketHooks())

    async def stuck(ticket_id: str) -> Any:
        await asyncio.Event().wait()

    tickets.store.get = stuck  # type: ignore[method-assign]
    receiving = ReceivingService(config, CallRegistry(), tickets, {}, Arrivals(config.transfer.push_wait))

    async def no_header() -> str:
        return ""

    route = await asyncio.wait_for(receiving.route("37080020260101120000123456", TRUNK, no_header, TRUNK), 3.0)
    assert route.dest.startswith("PJSIP/agent") and receiving.ticket_of(TRUNK) == "37080020260101120000123456"


async def _sender_with_worker(tmp_path: Path, redis: aioredis.Redis,
                              peer: Any) -> tuple[TicketService, OutboxWorker]:
    config = Lab(rootfs=str(tmp_path)).site_config(PLANS["12345"])
    worker = OutboxWorker(redis, peer, base_delay=0.001)
    hooks = TicketHooks(queued=lambda site, head: worker.notify(head), early=lambda site, m: worker.push_early(m))
    return TicketService(config, TicketStore(redis), hooks), worker


async def _create(tickets: TicketService, n: int, early: bool = True) -> Any:
    return await tickets.create(target_site="110", target_platform="110", caller_number="13912345678",
                                agent_id="1001", linkedid=f"1795937000.{n}", uniqueids=[f"1795937000.{n}"],
                                draft={}, ticket_id=new_ticket_id("370800"), early=early)


async def _until_empty(redis: aioredis.Redis) -> None:
    for _ in range(500):
        if not await redis.llen(outbox_key("110")):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the outbox did not empty")


async def test_a_prepared_ticket_is_pushed_before_its_write_and_only_once(
        tmp_path: Path, redis: aioredis.Redis) -> None:
    peer = ScriptedPeer([])
    tickets, worker = await _sender_with_worker(tmp_path, redis, peer)
    running = asyncio.create_task(worker.run())
    try:
        while not worker.idle:
            await asyncio.sleep(0.001)
        gate = asyncio.Event()
        real_put = tickets.store.put

        async def held_put(*args: Any, **kwargs: Any) -> bool:
            await gate.wait()
            return await real_put(*args, **kwargs)

        tickets.store.put = held_put  # type: ignore[method-assign]
        creating = asyncio.create_task(_create(tickets, 1))
        for _ in range(200):
            if peer.seen:
                break
            await asyncio.sleep(0.005)
        assert len(peer.seen) == 1 and not creating.done()  # the far side has it while the write is held
        gate.set()
        ticket = await creating
        await _until_empty(redis)
        assert peer.seen == [ticket.id]  # the outbox entry was removed without a second send
        assert sample(worker.metrics.registry, "linkage_delivery_sent_total", peer="110") == 1
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_an_early_push_that_failed_is_sent_from_the_outbox(tmp_path: Path, redis: aioredis.Redis) -> None:
    peer = ScriptedPeer([PeerError("peer unreachable")])  # the early push fails
    tickets, worker = await _sender_with_worker(tmp_path, redis, peer)
    running = asyncio.create_task(worker.run())
    try:
        while not worker.idle:
            await asyncio.sleep(0.001)
        ticket = await _create(tickets, 2)
        await _until_empty(redis)
        assert peer.seen == [ticket.id, ticket.id]
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_no_early_push_unless_asked_or_while_the_worker_is_busy(tmp_path: Path, redis: aioredis.Redis) -> None:
    peer = ScriptedPeer([])
    tickets, worker = await _sender_with_worker(tmp_path, redis, peer)
    await _create(tickets, 3)  # the worker is not waiting (not running): the outbox carries it
    await _create(tickets, 4, early=False)
    assert peer.seen == [] and not worker.early
    assert await redis.llen(outbox_key("110")) == 2


async def test_the_ticket_cache_answers_reads_and_forgets_a_write_of_unknown_outcome(
        tmp_path: Path, redis: aioredis.Redis) -> None:
    config = Lab(rootfs=str(tmp_path)).site_config(PLANS["12345"])
    store = TicketStore(redis, cache=2)
    tickets = TicketService(config, store, TicketHooks())
    first = await _create(tickets, 5, early=False)
    reads: list[str] = []
    real_get = redis.get

    async def counted_get(key: Any) -> Any:
        reads.append(str(key))
        return await real_get(key)

    redis.get = counted_get  # type: ignore[method-assign]
    recorded = await tickets.record(first.id, "amended", "1001", {"title": "t"})
    again = await store.get(first.id)
    assert reads == [] and again is not None and again.version == recorded.version  # no Redis read
    second, third = await _create(tickets, 6, early=False), await _create(tickets, 7, early=False)
    assert list(store.cache) == [second.id, third.id]  # the oldest went
    assert (await store.get(first.id)) is not None and len(reads) == 1  # read from Redis, kept again

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("reset")

    store._put = broken  # type: ignore[method-assign,assignment]
    held = await store.get(third.id)
    assert held is not None
    try:
        await store.put(held)
    except ConnectionError:
        pass
    assert third.id not in store.cache  # written or not: the next read asks Redis
