"""Follow-up calls (智能回访) in the service, on the real Redis, AMI actions recorded, a clock the test moves:
scheduling on the other platform's resolve, calling hours, the number from the ticket only, retries, the manual
task, and the key recorded as followed_up. Asterisk itself is the lab's business (tests/scenarios/followup_*)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis

from linkage_lab.lab.lab import PLANS, Lab
from telephony.followup import hours
from telephony.followup.adapters import FollowupAmi
from telephony.followup.services import DUE, JOB, MANUAL, FollowupService
from telephony.tickets.hooks import TicketHooks
from telephony.tickets.models import Event, Ticket, new_event_id, now_iso
from telephony.tickets.services import TicketService
from telephony.tickets.store import TicketStore

REDIS_DB = 1  # the unit conftest's `redis` fixture gives this database, emptied
T0 = 1796000000.0  # 2026-11-30 08:53:20 in Asia/Shanghai: within 08:00-20:00


def test_calling_hours_in_the_sites_time_zone() -> None:
    tz = "Asia/Shanghai"
    assert hours.is_open(T0, "08:00-20:00", tz)
    assert not hours.is_open(T0, "10:00-20:00", tz)
    assert hours.next_open(T0, "10:00-20:00", tz) == T0 + 66 * 60 + 40  # 10:00:00 the same day
    assert hours.next_open(T0, "07:00-08:00", tz) == T0 + 24 * 3600 - 53 * 60 - 20 - 3600  # 07:00 the next day
    assert hours.is_open(T0, "20:00-10:00", tz)  # over midnight
    assert hours.is_open(T0, "00:00-24:00", tz)
    assert not hours.is_open(T0, "08:53:21-10:00", tz) and hours.next_open(T0, "08:53:21-10:00", tz) == T0 + 1


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Site:
    def __init__(self, tmp_path: Path, redis: aioredis.Redis, **followup: Any) -> None:
        config = Lab(rootfs=str(tmp_path)).site_config(PLANS["12345"])
        self.config = msgspec.structs.replace(config, followup=msgspec.structs.replace(config.followup, **followup))
        self.tickets = TicketService(self.config, TicketStore(redis), TicketHooks())
        self.actions: list[dict[str, str]] = []
        self.clock = Clock()
        self.service = FollowupService(self.config, self.tickets, self._ami, self.clock)
        self.redis = redis

    async def _ami(self, action: dict[str, str]) -> None:
        self.actions.append(action)

    async def resolved(self, number: str = "13912345678") -> Ticket:
        """A ticket sent from here that 110 signed for, accepted and resolved."""
        ticket = await self.tickets.create(target_site="110", target_platform="110", caller_number=number,
                                           agent_id="1001", linkedid="1795934017.10", uniqueids=[], draft={})
        for kind in ("delivered", "signed_for", "accepted", "resolved"):
            actor = {"platform": "110", "site": "110", "agent": "2001"}
            event = Event(new_event_id(), ticket.id, kind, now_iso(), actor,
                          {"result": "已处置"} if kind == "resolved" else {})
            ticket, _ = await self.tickets.apply_remote(event, sender="110")
        self.service.on_change(ticket, ticket.history[-1])
        for task in list(self.service.tasks):
            await task
        return ticket

    async def tick(self, seconds: float) -> None:
        """Let `seconds` pass and act on what is due (the worker's loop body)."""
        self.clock.now += seconds
        for raw in await self.redis.zrangebyscore(DUE, "-inf", self.clock.now):
            await self.service._act(raw.decode(), self.clock.now)

    async def state(self, ticket: Ticket) -> str:
        return (await self.redis.hget(JOB + ticket.id, "state") or b"").decode()


async def test_a_resolve_schedules_a_call_to_the_tickets_own_number_and_a_key_follows_it_up(
        tmp_path: Path, redis: aioredis.Redis) -> None:
    site = Site(tmp_path, redis, delay=60.0)
    ticket = await site.resolved()
    await site.tick(59)
    assert site.actions == []  # not before the delay
    await site.tick(1)
    [call] = site.actions
    assert call["Action"] == "Originate" and call["Channel"] == "PJSIP/13912345678@followup-out"
    assert (call["Context"], call["Exten"], call["Async"]) == ("linkage-followup", ticket.id, "true")
    assert call["CallerID"] == "<12345>" and await site.state(ticket) == "dialling"
    await site.service.keyed(ticket.id, "4", "0")
    stored = await site.tickets.store.get(ticket.id)
    assert stored is not None and stored.status == "followed_up" and stored.satisfaction == "satisfied"
    assert stored.history[-1].payload == {"satisfaction": "satisfied", "score": 4, "method": "phone",
                                          "automated": True, "invalid_keys": 0}
    assert await site.state(ticket) == "done" and await redis.zcard(DUE) == 0
    await site.service.keyed(ticket.id, "1", "0")  # a late or repeated key changes nothing
    again = await site.tickets.store.get(ticket.id)
    assert again is not None and again.satisfaction == "satisfied"


async def test_no_answer_is_tried_again_then_left_as_a_manual_task(tmp_path: Path, redis: aioredis.Redis) -> None:
    site = Site(tmp_path, redis, delay=0.0, attempts=2, retry_seconds=600.0)
    ticket = await site.resolved()
    await site.tick(0)
    ami = FollowupAmi(site.service)
    await ami.on_event({"Event": "OriginateResponse", "Response": "Failure", "Context": "linkage-followup",
                        "Exten": ticket.id, "Reason": "3"})
    assert await site.state(ticket) == "scheduled"
    await site.tick(599)
    assert len(site.actions) == 1
    await site.tick(1)
    assert len(site.actions) == 2
    await ami.on_event({"Event": "OriginateResponse", "Response": "Failure", "Context": "linkage-followup",
                        "Exten": ticket.id, "Reason": "5"})
    assert await site.state(ticket) == "manual" and await redis.zscore(MANUAL, ticket.id) is not None
    [job] = await site.service.jobs()
    assert job == {"ticket_id": ticket.id, "state": "manual", "attempts": 2, "outcome": "busy",
                   "next_at": pytest.approx(T0 + 600)}
    # the agent follows up by hand: the task goes
    await site.tickets.record(ticket.id, "followed_up", "1001", {"satisfaction": "dissatisfied"})
    stored = await site.tickets.store.get(ticket.id)
    assert stored is not None
    site.service.on_change(stored, stored.history[-1])
    for task in list(site.service.tasks):
        await task
    assert await site.service.jobs() == []


async def test_outside_calling_hours_nothing_is_dialled_until_they_open(tmp_path: Path,
                                                                         redis: aioredis.Redis) -> None:
    site = Site(tmp_path, redis, delay=0.0, hours="10:00-20:00")  # T0 is 08:53:20 there
    await site.resolved()
    await site.tick(0)
    await site.tick(66 * 60 + 39)
    assert site.actions == []
    await site.tick(1)
    assert len(site.actions) == 1


async def test_an_answer_without_a_key_and_a_lost_outcome(tmp_path: Path, redis: aioredis.Redis) -> None:
    site = Site(tmp_path, redis, delay=0.0, ring_seconds=30, attempts=2)
    ticket = await site.resolved()
    await site.tick(0)
    await site.service.keyed(ticket.id, "", "3")  # three wrong keys, or hung up: not called again
    assert await site.state(ticket) == "manual"
    other = await site.resolved("13912345679")
    await site.tick(0)
    await site.tick(30 + 60)  # the lease ran out without an outcome (the controller restarted, say)
    assert await site.state(other) == "scheduled"


async def test_only_a_peers_resolve_of_a_ticket_sent_here_with_a_number_starts_one(
        tmp_path: Path, redis: aioredis.Redis) -> None:
    site = Site(tmp_path, redis, delay=0.0)
    await site.resolved(number="")
    off = Site(tmp_path, redis, gateway=None)
    await off.resolved()
    assert await redis.zcard(DUE) == 0 and not off.service.enabled


async def test_the_worker_rides_out_a_redis_that_is_away(tmp_path: Path, redis: aioredis.Redis) -> None:
    """A Redis restart must not end the controller (the worker is one of its owned tasks): the round fails,
    the worker waits and tries again."""
    import asyncio

    from redis.exceptions import ConnectionError as RedisDown

    site = Site(tmp_path, redis, delay=0.0)
    calls = 0

    async def away(*_: Any, **__: Any) -> Any:
        nonlocal calls
        calls += 1
        raise RedisDown("Error 111 connecting")

    site.service.redis = type("Down", (), {"zrangebyscore": away, "zrange": away})()
    worker = asyncio.get_running_loop().create_task(site.service.run())
    await asyncio.sleep(1.3)
    assert not worker.done() and calls >= 2  # still running, and it tried again
    worker.cancel()
