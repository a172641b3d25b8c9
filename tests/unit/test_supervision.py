"""Supervision (跟踪督办): deadlines per state and the supervisor that raises one overdue alert per state, run
against a real Redis as the receiving site 110."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, generate_latest

from linkage_lab.lab.lab import PLANS, Lab
from telephony.config import Deadlines, SiteConfig
from telephony.metrics import sample
from telephony.supervision.deadlines import (
    Alarm,
    DeadlineRule,
    Supervisor,
    add_working_days,
    already_alerted,
    deadline,
)
from telephony.supervision.metrics import SupervisionMetrics
from telephony.tickets.hooks import TicketHooks
from telephony.tickets.models import Event, Party, Ticket, new_event_id, now_iso
from telephony.tickets.services import TicketService
from telephony.tickets.store import DEADLINES, TicketStore, outbox_key

D = Deadlines(signed_for=60, accepted=1800, resolved_days=5, working_days=(0, 1, 2, 3, 4))
LONG_AGO = "2020-01-06T09:00:00.000Z"  # a Monday
OVERDUE = "linkage_tickets_overdue_total"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# ---- add_working_days ----------------------------------------------------------------------------------

@pytest.mark.parametrize("start, days, end", [
    ("2026-01-05T12:00:00Z", 1, "2026-01-06T12:00:00Z"),  # Monday -> Tuesday
    ("2026-01-09T12:00:00Z", 1, "2026-01-12T12:00:00Z"),  # Friday noon -> Monday noon
    ("2026-01-09T12:00:00Z", 5, "2026-01-16T12:00:00Z"),  # a working week
    ("2026-01-10T15:00:00Z", 1, "2026-01-13T00:00:00Z"),  # Saturday: starts counting on Monday 00:00
    ("2026-01-05T00:00:00Z", 0.5, "2026-01-05T12:00:00Z"),
    ("2026-01-09T18:00:00Z", 0.25, "2026-01-10T00:00:00Z"),  # the rest of Friday is exactly enough
    ("2026-01-07T08:00:00Z", 0, "2026-01-07T08:00:00Z"),
])
def test_add_working_days_skips_the_weekend(start: str, days: float, end: str) -> None:
    assert add_working_days(utc(start), days, (0, 1, 2, 3, 4)) == utc(end)


def test_add_working_days_with_a_six_day_week() -> None:
    assert add_working_days(utc("2026-01-09T12:00:00Z"), 1, (0, 1, 2, 3, 4, 5)) == utc("2026-01-10T12:00:00Z")
    assert add_working_days(utc("2026-01-10T12:00:00Z"), 1, (0, 1, 2, 3, 4, 5)) == utc("2026-01-12T12:00:00Z")


# ---- deadline and already_alerted ----------------------------------------------------------------------

def ticket(status: str, *events: tuple[str, str]) -> Ticket:
    t = Ticket(id="37080020260101120000123456", direction="12345->110", source=Party("12345", "12345"),
               target=Party("110", "110"), caller_number="13912345678", agent_id="1001", linkedid="1.1",
               uniqueids=[], created_at="2026-01-05T08:00:00.000Z", status=status)
    for i, (etype, at) in enumerate(events, start=1):
        payload = {"state": at} if etype == "overdue" else {}
        t.history.append(Event(f"{i:032x}", t.id, etype, at if etype != "overdue" else LONG_AGO,
                               {"platform": "110", "site": "110"}, payload))
    return t


def test_nothing_is_due_before_a_phone_rings() -> None:
    assert deadline(ticket("delivered", ("delivered", "2026-01-05T08:00:00Z")), D) is None


def test_sign_for_is_due_after_the_last_offer() -> None:
    t = ticket("delivered", ("offered", "2026-01-05T08:00:00Z"), ("offered", "2026-01-05T08:05:00Z"))
    assert deadline(t, D) == ("signed_for", utc("2026-01-05T08:06:00Z"))  # a new ring restarts the clock


def test_accept_is_due_after_sign_for() -> None:
    t = ticket("signed_for", ("offered", "2026-01-05T08:00:00Z"), ("signed_for", "2026-01-05T08:00:30Z"))
    assert deadline(t, D) == ("accepted", utc("2026-01-05T08:30:30Z"))


@pytest.mark.parametrize("status", ["accepted", "in_progress"])
def test_resolve_is_due_in_working_days_after_accept(status: str) -> None:
    t = ticket(status, ("accepted", "2026-01-09T12:00:00Z"), ("in_progress", "2026-01-09T13:00:00Z"))
    assert deadline(t, D) == ("resolved", utc("2026-01-16T12:00:00Z"))


@pytest.mark.parametrize("status", ["resolved", "followed_up", "returned", "closed", "cancelled",
                                    "transfer_failed"])
def test_nothing_is_due_once_resolved_or_ended(status: str) -> None:
    t = ticket(status, ("offered", "2026-01-05T08:00:00Z"), ("signed_for", "2026-01-05T08:00:30Z"),
               ("accepted", "2026-01-05T08:01:00Z"))
    assert deadline(t, D) is None


def test_already_alerted_is_per_state() -> None:
    t = ticket("signed_for", ("overdue", "signed_for"))
    assert already_alerted(t, "signed_for") is True
    assert already_alerted(t, "accepted") is False


# ---- Supervisor against Redis --------------------------------------------------------------------------

class Desk:
    """The receiving site 110 with its supervisor."""

    def __init__(self, config: SiteConfig, redis: aioredis.Redis) -> None:
        self.redis = redis
        self.alarm = Alarm(DeadlineRule(config))  # wired as the controller wires it
        self.store = TicketStore(redis, deadline_of=self.alarm.rule)
        self.tickets = TicketService(config, self.store, TicketHooks(changed=(self.alarm.on_change,),
                                                                     deadline_of=self.alarm.rule))
        self.metrics = SupervisionMetrics(CollectorRegistry())
        self.supervisor = Supervisor(config, self.tickets, self.alarm, self.metrics)

    async def receive(self, n: int = 1, target: str = "110") -> Ticket:
        tid = f"370800202601011200001234{n:02d}"
        created = Event(new_event_id(), tid, "created", now_iso(), {"platform": "12345", "site": "12345"}, seq=1)
        t = Ticket(id=tid, direction="12345->110", source=Party("12345", "12345"), target=Party("110", target),
                   caller_number="13912345678", agent_id="1001", linkedid=f"1.{n}", uniqueids=[],
                   created_at=now_iso(), version=1, history=[created], path=["12345", "110"])
        stored, _ = await self.tickets.receive(t, via="push")
        return stored

    async def backdate(self, ticket_id: str, event_type: str, at: str = LONG_AGO) -> None:
        t = await self.store.get(ticket_id)
        assert t is not None
        next(e for e in reversed(t.history) if e.type == event_type).at = at
        await self.store.put(t)

    def overdue_count(self, state: str) -> float:
        return sample(self.metrics.registry, OVERDUE, state=state)


@pytest.fixture
async def desk(tmp_path: Path, redis_url: str) -> AsyncIterator[Desk]:
    client = aioredis.from_url(redis_url.rsplit("/", 1)[0] + "/6")
    await client.flushdb()
    yield Desk(Lab(rootfs=str(tmp_path)).site_config(PLANS["110"]), client)
    await client.aclose()


async def deadlines(desk: Desk) -> dict[str, float]:
    return {k.decode(): v for k, v in await desk.redis.zrange(DEADLINES, 0, -1, withscores=True)}


async def test_a_ticket_offered_long_ago_and_never_signed_for_gets_exactly_one_alert(desk: Desk) -> None:
    t = await desk.receive()
    await desk.tickets.record(t.id, "offered", agent="2001")
    await desk.backdate(t.id, "offered")
    assert await deadlines(desk) == {t.id: utc("2020-01-06T09:01:00Z").timestamp()}
    assert await desk.supervisor.tick() == 1
    assert await desk.supervisor.tick() == 0  # the alert's own write dropped the deadline
    await desk.supervisor._check(t.id, utc("2020-01-06T09:01:00Z").timestamp())  # a stale entry, once more
    stored = await desk.store.get(t.id)
    assert stored is not None
    overdue = [e for e in stored.history if e.type == "overdue"]
    assert len(overdue) == 1
    assert overdue[0].payload == {"state": "signed_for", "deadline": "2020-01-06T09:01:00+00:00"}
    assert overdue[0].actor == {"platform": "110", "site": "110"}
    assert (stored.status, stored.flags) == ("delivered", ["overdue"])
    assert desk.overdue_count("signed_for") == 1
    assert f'{OVERDUE}{{state="signed_for"}} 1.0\n' in generate_latest(desk.metrics.registry).decode()
    queued = [json.loads(m)["body"]["type"] for m in await desk.redis.lrange(outbox_key("12345"), 0, -1)]
    assert queued == ["delivered", "offered", "overdue"]  # the sender hears of it like every other event
    assert await deadlines(desk) == {}


async def test_a_ticket_that_moved_on_gets_no_alert(desk: Desk) -> None:
    t = await desk.receive()
    await desk.tickets.record(t.id, "offered", agent="2001")
    await desk.backdate(t.id, "offered")
    await desk.tickets.record(t.id, "signed_for", agent="2001")
    before = await desk.redis.get(f"linkage:ticket:{t.id}")
    assert await desk.supervisor.tick() == 0
    await desk.supervisor._check(t.id, utc("2020-01-06T09:01:00Z").timestamp())  # the old deadline, stale
    assert await desk.redis.get(f"linkage:ticket:{t.id}") == before
    assert desk.overdue_count("signed_for") == 0
    [(ticket_id, due)] = (await deadlines(desk)).items()  # the next state's deadline, kept
    assert ticket_id == t.id and 1790 < due - datetime.now(UTC).timestamp() <= 1800


async def test_a_deadline_that_moved_is_scheduled_again_not_alerted(desk: Desk) -> None:
    t = await desk.receive()
    await desk.tickets.record(t.id, "offered", agent="2001")  # rang just now: due in 60 s
    await desk.redis.zadd(DEADLINES, {t.id: 1.0})  # as if written by an older run, long past
    before = await desk.redis.get(f"linkage:ticket:{t.id}")
    assert await desk.supervisor.tick() == 1
    assert await desk.redis.get(f"linkage:ticket:{t.id}") == before
    [(ticket_id, due)] = (await deadlines(desk)).items()
    assert ticket_id == t.id and 0 < due - datetime.now(UTC).timestamp() <= 60


async def test_an_unknown_ticket_is_ignored_and_forgotten(desk: Desk) -> None:
    await desk.redis.zadd(DEADLINES, {"37080020260101120000999999": 1.0})
    assert await desk.supervisor.tick() == 1
    assert desk.overdue_count("signed_for") == 0
    assert await deadlines(desk) == {}


async def test_a_deadline_is_only_dropped_as_it_was_seen(desk: Desk) -> None:
    """Dropping a deadline that a newer write moved meanwhile keeps the moved one."""
    t = await desk.receive()
    await desk.tickets.record(t.id, "offered", agent="2001")
    await desk.backdate(t.id, "offered")
    seen = (await deadlines(desk))[t.id]
    await desk.tickets.record(t.id, "offered", agent="2002")  # rings again later: the clock restarts
    moved = (await deadlines(desk))[t.id]
    await desk.store.drop_deadline(t.id, seen)
    assert await deadlines(desk) == {t.id: moved} and moved != seen
    await desk.store.drop_deadline(t.id, moved)
    assert await deadlines(desk) == {}


async def test_a_ticket_that_cannot_be_read_is_logged_and_not_retried(desk: Desk) -> None:
    await desk.redis.set("linkage:ticket:37080020260101120000999998", b"not a ticket")
    await desk.redis.zadd(DEADLINES, {"37080020260101120000999998": 1.0})
    assert await desk.supervisor.tick() == 1
    assert await deadlines(desk) == {}


async def test_the_deadlines_follow_every_write_of_the_ticket(desk: Desk) -> None:
    t = await desk.receive()
    assert await deadlines(desk) == {}  # delivered: nothing due until a phone rings
    await desk.tickets.record(t.id, "offered", agent="2001")
    assert list(await deadlines(desk)) == [t.id]
    assert desk.alarm.wake.is_set()
    first = (await deadlines(desk))[t.id]
    await desk.tickets.record(t.id, "signed_for", agent="2001")
    assert list(await deadlines(desk)) == [t.id]  # one entry per ticket: its next deadline
    assert (await deadlines(desk))[t.id] - first > 1700
    closed = await desk.store.get(t.id)
    assert closed is not None
    closed.status = "closed"
    await desk.store.put(closed)
    assert await deadlines(desk) == {}


async def test_the_supervisor_keeps_no_memory_per_open_ticket(desk: Desk) -> None:
    """A soak of open tickets grew the controller by a heap entry each: now they are all in Redis."""
    for n in range(1, 31):
        t = await desk.receive(n)
        await desk.tickets.record(t.id, "offered", agent="2001")
    assert len(await deadlines(desk)) == 30
    assert {k: type(v).__name__ for k, v in vars(desk.supervisor).items()} == {
        "config": "SiteConfig", "tickets": "TicketService", "alarm": "Alarm", "due_at": "DeadlineRule",
        "metrics": "SupervisionMetrics"}
    assert {k: type(v).__name__ for k, v in vars(desk.alarm).items()} == {
        "rule": "DeadlineRule", "wake": "Event", "next_at": "float"}


def test_due_at_only_supervises_the_receivers_own_deadlines(desk: Desk) -> None:
    offered = ticket("delivered", ("offered", LONG_AGO))
    elsewhere = msgspec.structs.replace(offered, target=Party("110", "110-370811"))
    alerted = ticket("delivered", ("offered", LONG_AGO), ("overdue", "signed_for"))
    assert desk.supervisor.due_at(elsewhere) is None
    assert desk.supervisor.due_at(alerted) is None
    assert desk.supervisor.due_at(offered) == utc("2020-01-06T09:01:00Z").timestamp()


async def test_reload_schedules_every_open_ticket_written_without_a_supervisor(desk: Desk) -> None:
    desk.store.deadline_of = None  # e.g. written by an earlier version that kept deadlines in memory
    due = await desk.receive(1)
    await desk.tickets.record(due.id, "offered", agent="2001")
    quiet = await desk.receive(2)
    closed = await desk.receive(3)
    closed.status = "closed"
    await desk.store.put(closed)
    assert await deadlines(desk) == {}
    restarted = Supervisor(desk.tickets.config, desk.tickets, desk.alarm, desk.metrics)
    assert await restarted.reload() == 2
    assert list(await deadlines(desk)) == [due.id]
    assert quiet.id in await desk.store.open_ids() and closed.id not in await desk.store.open_ids()
    # once per Redis: every write keeps the deadlines since, so later starts read no tickets
    assert await Supervisor(desk.tickets.config, desk.tickets, desk.alarm, desk.metrics).reload() is None


async def test_a_restarted_supervisor_alerts_without_reloading(desk: Desk) -> None:
    t = await desk.receive()
    await desk.tickets.record(t.id, "offered", agent="2001")
    await desk.backdate(t.id, "offered")
    restarted = Supervisor(desk.tickets.config, desk.tickets, desk.alarm, desk.metrics)
    assert await restarted.tick() == 1
    assert desk.overdue_count("signed_for") == 1


async def test_the_running_supervisor_alerts_when_the_deadline_passes(desk: Desk) -> None:
    fast = Deadlines(signed_for=0.05)
    desk.supervisor.config = desk.alarm.rule.config = msgspec.structs.replace(desk.tickets.config, supervision=fast)
    t = await desk.receive()
    task = asyncio.create_task(desk.supervisor.run())
    try:
        await desk.tickets.record(t.id, "offered", agent="2001")
        async with asyncio.timeout(3):
            while desk.overdue_count("signed_for") == 0:
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)  # time for a second, wrong alert
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    stored = await desk.store.get(t.id)
    assert stored is not None
    assert [e.payload.get("state") for e in stored.history if e.type == "overdue"] == ["signed_for"]
    assert desk.overdue_count("signed_for") == 1
    assert await deadlines(desk) == {}


async def test_each_state_gets_its_own_alert(desk: Desk) -> None:
    """An alert of the sign-for deadline does not stop the next state's deadline from being alerted."""
    t = await desk.receive()
    await desk.tickets.record(t.id, "offered", agent="2001")
    await desk.backdate(t.id, "offered")
    assert await desk.supervisor.tick() == 1
    await desk.tickets.record(t.id, "signed_for", agent="2001")
    await desk.backdate(t.id, "signed_for", (datetime.now(UTC) - timedelta(hours=1)).isoformat())
    assert await desk.supervisor.tick() == 1
    stored = await desk.store.get(t.id)
    assert stored is not None
    assert [e.payload["state"] for e in stored.history if e.type == "overdue"] == ["signed_for", "accepted"]
    assert (desk.overdue_count("signed_for"), desk.overdue_count("accepted")) == (1, 1)
