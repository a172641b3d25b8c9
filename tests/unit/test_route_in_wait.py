"""Receiving side: a linked call that outruns its ticket's push waits briefly for the push (woken by the ticket
service when it is stored) before asking the sender for the ticket by reference."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from test_ticket_services import plain_ticket

from linkage_lab.lab.lab import PLANS, Lab
from telephony.tickets.hooks import TicketHooks
from telephony.tickets.models import Ticket
from telephony.tickets.services import TicketService
from telephony.tickets.store import TicketStore
from telephony.transfers.arrivals import RECENT_LANDED, Arrivals

REDIS_DB = 8  # the unit conftest's `redis` fixture gives this database, emptied


@dataclasses.dataclass
class Far:
    """The receiving site's ticket service with the arrivals it lands its pushes in, wired as the controller does."""
    tickets: TicketService
    arrivals: Arrivals

    async def look(self, ticket_id: str) -> Ticket | None:
        return await self.arrivals.ticket(ticket_id, self.tickets.store.get)


def _sites(tmp_path: Path, redis: aioredis.Redis) -> tuple[TicketService, Far]:
    lab = Lab(rootfs=str(tmp_path))
    sender = TicketService(lab.site_config(PLANS["12345"]), TicketStore(redis), TicketHooks())
    # a long wait: only the ticket service's wake-up can end it early, so a broken wake-up fails the test
    arrivals = Arrivals(push_wait=5.0)
    receiver = TicketService(lab.site_config(PLANS["110"]), TicketStore(redis),  # one db: ids differ
                             TicketHooks(landed=(arrivals.land,)))
    return sender, Far(receiver, arrivals)


async def _pushed(sender: TicketService, redis: aioredis.Redis, n: int) -> Ticket:
    """A ticket the sender created, as its push will carry it; the far side does not have it yet (one db)."""
    ticket = await sender.create(target_site="110", target_platform="110", caller_number="13912345678",
                                 agent_id="1001", linkedid=f"pbx12345-1.{n}", uniqueids=[f"pbx12345-1.{n}"],
                                 draft={})
    await redis.delete(f"linkage:ticket:{ticket.id}")
    return ticket


def _hold_writes(far: Far) -> asyncio.Event:
    """The far side's durable writes wait until the returned event is set."""
    gate = asyncio.Event()
    real_put = far.tickets.store.put

    async def slow_put(*args: Any, **kwargs: Any) -> bool:
        await gate.wait()
        return await real_put(*args, **kwargs)

    far.tickets.store.put = slow_put  # type: ignore[method-assign]
    return gate


async def test_a_push_landing_while_the_call_waits_is_used(tmp_path: Path, redis: aioredis.Redis) -> None:
    sender, far = _sites(tmp_path, redis)
    ticket = await _pushed(sender, redis, 1)  # the far side has not got it yet

    async def push_later() -> None:
        await asyncio.sleep(0.01)
        await far.tickets.receive(ticket, via="push")

    start = time.monotonic()
    pushed = asyncio.create_task(push_later())
    got = await far.look(ticket.id)
    await pushed
    assert got is not None and got.id == ticket.id
    assert time.monotonic() - start < 2.0  # woken by the push, not by the 5 s timeout
    assert far.arrivals.waiting == {} and far.arrivals.landed == {}


async def test_no_push_in_time_gives_none_and_leaves_nothing_behind(tmp_path: Path, redis: aioredis.Redis) -> None:
    _, far = _sites(tmp_path, redis)
    far.arrivals.push_wait = 0.05
    start = time.monotonic()
    assert await far.look("37080020260101120000123456") is None
    assert time.monotonic() - start >= far.arrivals.push_wait * 0.9
    assert far.arrivals.waiting == {} and far.arrivals.landed == {}


async def test_the_waiting_call_goes_on_before_the_durable_write_and_changes_wait_for_it(
        tmp_path: Path, redis: aioredis.Redis) -> None:
    """route_in only reads where the ticket goes: it is woken once the push is verified and parsed, while the
    store write is still in flight. Anything that changes the ticket (the phone's offer) waits for that write."""
    sender, far = _sites(tmp_path, redis)
    ticket = await _pushed(sender, redis, 2)
    gate = _hold_writes(far)  # the durable write, held back
    waiting = asyncio.create_task(far.look(ticket.id))
    await asyncio.sleep(0.01)
    pushed = asyncio.create_task(far.tickets.receive(ticket, via="push"))
    got = await asyncio.wait_for(waiting, 2.0)
    assert got is not None and got.id == ticket.id and not pushed.done()
    assert await redis.get(f"linkage:ticket:{ticket.id}") is None  # not written yet
    offer = asyncio.create_task(far.tickets.record(ticket.id, "offered", "2001"))
    await asyncio.sleep(0.05)
    assert not offer.done()  # waits for the ticket's write under its lock
    gate.set()
    await pushed
    offered = await asyncio.wait_for(offer, 2.0)
    assert [e.type for e in offered.history] == ["created", "delivered", "offered"]


async def test_a_call_that_starts_waiting_during_the_write_is_woken_by_it(
        tmp_path: Path, redis: aioredis.Redis) -> None:
    """The push landed before the call asked (nobody was waiting yet) and its write is still in flight when the
    call looks: the end of the write wakes it, not the push_wait timeout."""
    sender, far = _sites(tmp_path, redis)
    ticket = await _pushed(sender, redis, 3)
    gate = _hold_writes(far)  # the durable write, held back
    pushed = asyncio.create_task(far.tickets.receive(ticket, via="push"))
    await asyncio.sleep(0.01)  # landed, nobody waiting; the write is held
    far.arrivals.recent.clear()  # as if a burst of other pushes had pushed it out of the recent ones
    start = time.monotonic()
    waiting = asyncio.create_task(far.look(ticket.id))
    await asyncio.sleep(0.01)
    gate.set()
    await pushed
    got = await asyncio.wait_for(waiting, 2.0)
    assert got is not None and got.id == ticket.id
    assert time.monotonic() - start < 1.0  # woken by the write, not by the 5 s push_wait


async def test_a_call_after_its_push_takes_the_landed_ticket_without_reading_redis(
        tmp_path: Path, redis: aioredis.Redis) -> None:
    sender, far = _sites(tmp_path, redis)
    ticket = await _pushed(sender, redis, 4)
    await far.tickets.receive(ticket, via="push")
    reads: list[str] = []
    real_get = far.tickets.store.get

    async def counted(ticket_id: str) -> Any:
        reads.append(ticket_id)
        return await real_get(ticket_id)

    far.tickets.store.get = counted  # type: ignore[method-assign]
    got = await far.look(ticket.id)
    assert got is not None and got.id == ticket.id and got.status == "delivered" and reads == []
    assert ticket.id not in far.arrivals.recent  # taken once; a second call for it reads the store
    assert await far.look(ticket.id) is not None and reads == [ticket.id]


def test_the_landed_tickets_kept_for_calls_are_bounded(tmp_path: Path, redis: aioredis.Redis) -> None:
    _, far = _sites(tmp_path, redis)
    for n in range(RECENT_LANDED + 50):
        far.arrivals.land(plain_ticket(f"370800202601011200{n:08d}"))
    assert len(far.arrivals.recent) == RECENT_LANDED
    assert next(iter(far.arrivals.recent)) == f"370800202601011200{50:08d}"  # the oldest went first
