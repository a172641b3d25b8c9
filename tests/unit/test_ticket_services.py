"""Ticket store and use cases against a real Redis, one database per lab site: db 0 = 12345 (city hotline),
db 1 = 110 (city police), db 2 = 110-370811 (county police under the city 110)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from linkage_lab.lab.lab import PLANS, Lab
from telephony.config import SiteConfig
from telephony.errors import Conflict, Forbidden, InvalidInput, NotFound, Replayed
from telephony.tickets import services as services_module
from telephony.tickets.hooks import TicketHooks
from telephony.tickets.models import Event, Party, Ticket, new_event_id, parse_event, parse_ticket
from telephony.tickets.services import TicketService
from telephony.tickets.store import PREFIX, TicketStore, outbox_key, ticket_key

TID = "37080020260101120000123456"
COUNTY = "110-370811"


@pytest.fixture
def configs(tmp_path: Path) -> dict[str, SiteConfig]:
    lab = Lab(rootfs=str(tmp_path))
    return {name: lab.site_config(plan) for name, plan in PLANS.items()}


async def _client(url: str, db: int) -> aioredis.Redis:
    client = aioredis.from_url(url.rsplit("/", 1)[0] + f"/{db}")
    await client.flushdb()
    return client


class Site:
    def __init__(self, config: SiteConfig, redis: aioredis.Redis) -> None:
        self.name = config.site.name
        self.redis = redis
        self.store = TicketStore(redis)
        self.notified: list[str] = []
        self.emitted: list[tuple[str, str]] = []
        hooks = TicketHooks(changed=(lambda t, e: self.emitted.append((t.id, e.type)),),
                            queued=lambda site, head=None: self.notified.append(site))
        self.service = TicketService(config, self.store, hooks)

    async def outbox(self, peer: str) -> list[dict[str, Any]]:
        return [json.loads(m) for m in await self.redis.lrange(outbox_key(peer), 0, -1)]

    async def raw(self, ticket_id: str) -> bytes:
        raw: bytes = await self.redis.get(ticket_key(ticket_id))
        return raw

    async def snapshot(self, ticket_id: str) -> tuple[Any, ...]:
        """Everything a refused request must leave as it was."""
        outboxes = {k: await self.redis.lrange(k, 0, -1) for k in await self.redis.keys(f"{PREFIX}outbox:*")}
        return (await self.raw(ticket_id), outboxes, await self.store.open_ids(), list(self.notified),
                list(self.emitted))


async def _site(configs: dict[str, SiteConfig], redis_url: str, name: str, db: int) -> AsyncIterator[Site]:
    client = await _client(redis_url, db)
    yield Site(configs[name], client)
    await client.aclose()


@pytest.fixture
async def site_a(configs: dict[str, SiteConfig], redis_url: str) -> AsyncIterator[Site]:
    async for site in _site(configs, redis_url, "12345", 0):
        yield site


@pytest.fixture
async def site_b(configs: dict[str, SiteConfig], redis_url: str) -> AsyncIterator[Site]:
    async for site in _site(configs, redis_url, "110", 1):
        yield site


@pytest.fixture
async def site_c(configs: dict[str, SiteConfig], redis_url: str) -> AsyncIterator[Site]:
    async for site in _site(configs, redis_url, COUNTY, 2):
        yield site


async def create(site: Site, linkedid: str = "1767268800.7", target: str = "110",
                 path: list[str] | None = None) -> Ticket:
    return await site.service.create(target_site=target, target_platform="110", caller_number="13912345678",
                                     agent_id="1001", linkedid=linkedid, uniqueids=[linkedid],
                                     draft={"content": "noise", "category": "noise"}, path=path)


def plain_ticket(ticket_id: str = TID, linkedid: str = "1767268800.1", content: str = "first",
                 created_at: str = "2026-01-01T12:00:00.000Z", status: str = "created") -> Ticket:
    return Ticket(id=ticket_id, direction="12345->110", source=Party("12345", "12345"),
                  target=Party("110", "110"), caller_number="13912345678", agent_id="1001", linkedid=linkedid,
                  uniqueids=[], created_at=created_at, content=content, status=status)


async def deliver(a: Site, b: Site) -> Ticket:
    """Create at 12345 and hand the queued ticket to 110 as the push would."""
    ticket = await create(a)
    message = (await a.outbox("110"))[0]
    await b.service.receive(parse_ticket(message["body"]), via="push")
    return ticket


async def events_for(site: Site, peer: str) -> list[Event]:
    return [parse_event(m["body"]) for m in await site.outbox(peer) if m["kind"] == "event"]


# ---- store ---------------------------------------------------------------------------------------------

def test_ticket_key() -> None:
    assert ticket_key(TID) == f"linkage:ticket:{TID}"


async def test_store_create_with_an_existing_id_returns_false(site_a: Site) -> None:
    assert await site_a.store.create(plain_ticket(content="first"), []) is True
    assert await site_a.store.create(plain_ticket(content="second"), []) is False
    stored = await site_a.store.get(TID)
    assert stored is not None and stored.content == "first"


async def test_refused_create_writes_nothing(site_a: Site) -> None:
    assert await site_a.store.create(plain_ticket(linkedid="1767268800.1"), [("110", {"kind": "ticket"})])
    before = await site_a.redis.zscore(f"{PREFIX}tickets", TID)
    refused = plain_ticket(linkedid="1767268800.2", content="second", created_at="2026-02-01T00:00:00.000Z")
    message = {"kind": "ticket", "body": refused.to_dict()}
    await site_a.redis.config_resetstat()
    assert await site_a.store.create(refused, [("110", message)]) is False
    assert len(await site_a.outbox("110")) == 1
    assert await site_a.store.by_linkedid("1767268800.2") is None
    assert await site_a.redis.zscore(f"{PREFIX}tickets", TID) == before
    stats = await site_a.redis.info("commandstats")
    assert not {"cmdstat_set", "cmdstat_rpush", "cmdstat_hset", "cmdstat_zadd", "cmdstat_sadd"} & set(stats)


async def test_store_put_overwrites(site_a: Site) -> None:
    await site_a.store.create(plain_ticket(content="first"), [])
    assert await site_a.store.put(plain_ticket(content="second")) is True
    stored = await site_a.store.get(TID)
    assert stored is not None and stored.content == "second"


async def test_store_get_unknown_is_none(site_a: Site) -> None:
    assert await site_a.store.get(TID) is None
    assert await site_a.store.by_linkedid("nope") is None


async def test_open_index_follows_the_status_in_the_same_write(site_a: Site) -> None:
    await site_a.store.create(plain_ticket(), [])
    assert await site_a.store.open_ids() == [TID]
    for status, is_open in [("resolved", True), ("closed", False), ("returned", True), ("cancelled", False)]:
        await site_a.store.put(plain_ticket(status=status))
        assert (await site_a.store.open_ids() == [TID]) is is_open, status
    assert await site_a.store.list_ids() == [TID]  # a final ticket can still be queried


async def test_list_ids_by_creation_time_with_range_and_paging(site_a: Site) -> None:
    ids = [f"370800202601011200001234{i:02d}" for i in range(5)]
    for i, ticket_id in enumerate(reversed(ids)):  # stored newest first
        day = 5 - i
        await site_a.store.create(plain_ticket(ticket_id, linkedid=f"1.{i}",
                                               created_at=f"2026-01-0{day}T00:00:00.000Z"), [])
    jan = 1767225600.0  # 2026-01-01T00:00:00Z
    assert await site_a.store.list_ids() == ids
    assert await site_a.store.list_ids(limit=2) == ids[:2]
    assert await site_a.store.list_ids(limit=2, offset=2) == ids[2:4]
    assert await site_a.store.list_ids(since=jan + 86400) == ids[1:]
    assert await site_a.store.list_ids(since=jan + 86400, until=jan + 2 * 86400) == ids[1:3]


# ---- create --------------------------------------------------------------------------------------------

async def test_create_stores_the_ticket_and_queues_it_for_the_peer(site_a: Site) -> None:
    ticket = await create(site_a)
    stored = await site_a.store.get(ticket.id)
    assert stored == ticket
    assert (stored.status, stored.version, stored.content) == ("created", 1, "noise")
    assert stored.path == ["12345", "110"]
    assert stored.sequences == {"12345": 1}
    assert [(e.type, e.seq) for e in stored.history] == [("created", 1)]
    assert stored.history[0].actor == {"platform": "12345", "site": "12345", "agent": "1001"}
    messages = await site_a.outbox("110")
    assert len(messages) == 1
    assert messages[0]["kind"] == "ticket"
    assert parse_ticket(messages[0]["body"]) == ticket
    assert site_a.notified == ["110"]
    assert site_a.emitted == [(ticket.id, "created")]
    assert await site_a.store.by_linkedid("1767268800.7") == ticket.id
    assert await site_a.store.list_ids() == [ticket.id]
    assert await site_a.store.open_ids() == [ticket.id]


async def test_create_is_one_lua_script(site_a: Site) -> None:
    await create(site_a, linkedid="1767268800.1")  # loads the script
    await site_a.redis.config_resetstat()
    await create(site_a, linkedid="1767268800.2")
    stats = await site_a.redis.info("commandstats")
    evalsha = stats["cmdstat_evalsha"]
    assert evalsha["calls"] - evalsha["failed_calls"] == 1
    assert "cmdstat_multi" not in stats and "cmdstat_exec" not in stats
    assert stats["cmdstat_set"]["calls"] == stats["cmdstat_rpush"]["calls"] == 1  # run inside the script


async def test_service_create_retries_when_the_id_is_taken(site_a: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    await site_a.store.create(plain_ticket(TID), [])
    ids = iter([TID, "37080020260101120000654321"])
    monkeypatch.setattr(services_module, "new_ticket_id", lambda division: next(ids))
    ticket = await create(site_a)
    assert ticket.id == "37080020260101120000654321"
    assert (await site_a.store.get(TID)).content == "first"  # type: ignore[union-attr]
    assert [m["body"]["id"] for m in await site_a.outbox("110")] == [ticket.id]  # no phantom for the collision
    assert site_a.notified == ["110"]


async def test_service_create_gives_up_after_five_collisions(site_a: Site,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    await site_a.store.create(plain_ticket(TID), [])
    monkeypatch.setattr(services_module, "new_ticket_id", lambda division: TID)
    with pytest.raises(Conflict):
        await create(site_a)
    assert await site_a.outbox("110") == []
    assert site_a.emitted == []


# ---- receive -------------------------------------------------------------------------------------------

async def test_receive_is_idempotent(site_a: Site, site_b: Site) -> None:
    ticket = await create(site_a)
    body = (await site_a.outbox("110"))[0]["body"]

    first, created = await site_b.service.receive(parse_ticket(body), via="push")
    assert created is True
    assert first.status == "delivered"
    assert [(e.type, e.seq) for e in first.history] == [("created", 1), ("delivered", 1)]
    assert first.history[1].payload == {"via": "push"}
    assert first.history[1].actor == {"platform": "110", "site": "110"}
    assert first.sequences == {"12345": 1, "110": 1}

    second, created_again = await site_b.service.receive(parse_ticket(body), via="reference")
    assert created_again is False
    assert second.id == ticket.id
    assert [e.type for e in second.history] == ["created", "delivered"]
    assert second.version == first.version

    stored = await site_b.store.get(ticket.id)
    assert stored is not None and len(stored.history) == 2
    queued = await site_b.outbox("12345")
    assert [(m["kind"], m["body"]["type"]) for m in queued] == [("event", "delivered")]
    assert site_b.notified == ["12345"]
    assert site_b.emitted == [(ticket.id, "delivered")]


async def test_a_relay_keeps_a_copy_and_passes_the_ticket_on(site_a: Site, site_b: Site, site_c: Site) -> None:
    """12345 -> county 110, through the city 110 (the county reaches 12345 only through its parent)."""
    ticket = await create(site_a, target=COUNTY, path=["12345", "110", COUNTY])
    assert site_a.notified == ["110"]
    body = (await site_a.outbox("110"))[0]["body"]

    relayed, stored = await site_b.service.receive(parse_ticket(body), via="push")
    assert stored is True
    assert (relayed.status, [e.type for e in relayed.history]) == ("created", ["created"])  # not delivered here
    assert [m["kind"] for m in await site_b.outbox(COUNTY)] == ["ticket"]
    assert await site_b.outbox("12345") == []
    assert site_b.notified == [COUNTY]
    assert await site_b.store.get(ticket.id) == relayed

    body = (await site_b.outbox(COUNTY))[0]["body"]
    delivered, _ = await site_c.service.receive(parse_ticket(body), via="push")
    assert delivered.status == "delivered"
    assert [e.type for e in await events_for(site_c, "110")] == ["delivered"]  # only to its neighbour

    [event] = await events_for(site_c, "110")
    at_b, outcome = await site_b.service.apply_remote(event)
    assert (outcome, at_b.status) == ("applied", "delivered")
    assert [e.id for e in await events_for(site_b, "12345")] == [event.id]  # relayed on towards the sender
    assert await events_for(site_b, COUNTY) == []  # never echoed back

    at_a, outcome = await site_a.service.apply_remote(event)
    assert (outcome, at_a.status, at_a.sequences) == ("applied", "delivered", {"12345": 1, COUNTY: 1})
    assert await site_a.outbox(COUNTY) == [] and await events_for(site_a, "110") == []


async def test_the_pushing_messages_mark_is_written_with_the_ticket_and_the_event(site_a: Site, site_b: Site,
                                                                                   site_c: Site) -> None:
    """The mark a peer message comes with reaches the store's write of the change it causes, on every path:
    a ticket delivered here, a ticket relayed on, an event applied or queued; a duplicate writes nothing."""
    from telephony.tickets.store import ReplayMark

    ticket = await create(site_a, target=COUNTY, path=["12345", "110", COUNTY])
    body = (await site_a.outbox("110"))[0]["body"]
    relay = ReplayMark("linkage:seen:12345:t1", 3600)
    await site_b.service.receive(parse_ticket(body), via="push", replay=relay)
    assert relay.done and await site_b.redis.exists(relay.key) == 1
    body = (await site_b.outbox(COUNTY))[0]["body"]
    landing = ReplayMark("linkage:seen:110:t1", 3600)
    await site_c.service.receive(parse_ticket(body), via="push", replay=landing)
    assert landing.done and await site_c.redis.exists(landing.key) == 1
    again = ReplayMark("linkage:seen:110:t2", 3600)
    _, created = await site_c.service.receive(parse_ticket(body), via="push", replay=again)
    assert not created and not again.done and await site_c.redis.exists(again.key) == 0  # the inbox writes it
    [event] = await events_for(site_c, "110")
    applied = ReplayMark("linkage:seen:" + COUNTY + ":e1", 3600)
    assert (await site_b.service.apply_remote(event, replay=applied))[1] == "applied"
    assert applied.done and await site_b.redis.exists(applied.key) == 1
    duplicate = ReplayMark("linkage:seen:" + COUNTY + ":e2", 3600)
    assert (await site_b.service.apply_remote(event, replay=duplicate))[1] == "duplicate"
    assert not duplicate.done and await site_b.redis.exists(duplicate.key) == 0
    later = await site_c.service.record(ticket.id, "offered", agent="2001")
    await site_c.service.record(later.id, "signed_for", agent="2001")
    [_, _, signed_for] = await events_for(site_c, "110")
    queued = ReplayMark("linkage:seen:" + COUNTY + ":e3", 3600)
    assert (await site_b.service.apply_remote(signed_for, replay=queued))[1] == "queued"  # waits for 'offered'
    assert queued.done and await site_b.redis.exists(queued.key) == 1


# ---- record --------------------------------------------------------------------------------------------

async def test_record_queues_the_event_for_the_other_site(site_a: Site, site_b: Site) -> None:
    ticket = await deliver(site_a, site_b)
    updated = await site_b.service.record(ticket.id, "offered", agent="2001")
    assert (updated.status, updated.offered_to) == ("delivered", "2001")
    updated = await site_b.service.record(ticket.id, "signed_for", agent="2001")
    assert (updated.status, updated.signed_for_by) == ("signed_for", "2001")
    stored = await site_b.store.get(ticket.id)
    assert stored == updated
    queued = await events_for(site_b, "12345")
    assert [(e.type, e.seq) for e in queued] == [("delivered", 1), ("offered", 2), ("signed_for", 3)]
    assert queued[1].actor == {"platform": "110", "site": "110", "agent": "2001"}
    assert {e.ticket_id for e in queued} == {ticket.id}
    assert site_b.notified == ["12345"] * 3
    assert site_b.emitted[-2:] == [(ticket.id, "offered"), (ticket.id, "signed_for")]


async def test_record_unknown_ticket_is_not_found(site_a: Site) -> None:
    with pytest.raises(NotFound) as info:
        await site_a.service.record(TID, "offered")
    assert info.value.details == {"ticket_id": TID}
    assert await site_a.outbox("110") == []


async def test_a_transition_from_the_wrong_platform_is_forbidden_and_changes_nothing(site_a: Site,
                                                                                     site_b: Site) -> None:
    ticket = await deliver(site_a, site_b)
    for site, etype in [(site_a, "signed_for"), (site_b, "closed"), (site_b, "cancelled")]:
        before = await site.snapshot(ticket.id)
        with pytest.raises(Forbidden) as info:
            await site.service.record(ticket.id, etype, agent="1001")
        assert info.value.status == 403 and info.value.details["event_type"] == etype
        assert await site.snapshot(ticket.id) == before


async def test_an_illegal_transition_conflicts_with_the_current_status(site_a: Site, site_b: Site) -> None:
    ticket = await deliver(site_a, site_b)
    before = await site_b.snapshot(ticket.id)
    with pytest.raises(Conflict) as info:
        await site_b.service.record(ticket.id, "resolved", payload={"result": "done"})
    assert info.value.status == 409
    assert info.value.details == {"status": "delivered", "event_type": "resolved"}
    assert await site_b.snapshot(ticket.id) == before


async def test_a_missing_payload_item_is_invalid_and_changes_nothing(site_a: Site, site_b: Site) -> None:
    ticket = await deliver(site_a, site_b)
    before = await site_b.snapshot(ticket.id)
    with pytest.raises(InvalidInput) as info:
        await site_b.service.record(ticket.id, "returned", payload={"reason": " "})
    assert info.value.details == {"field": "payload.reason"}
    assert await site_b.snapshot(ticket.id) == before


async def test_the_whole_loop_across_both_sites(site_a: Site, site_b: Site) -> None:
    ticket = await deliver(site_a, site_b)
    await site_b.service.record(ticket.id, "signed_for", agent="2001")
    await site_b.service.record(ticket.id, "accepted", agent="2001")
    await site_b.service.record(ticket.id, "resolved", agent="2001", payload={"result": "officers attended"})
    for event in await events_for(site_b, "12345"):
        assert (await site_a.service.apply_remote(event))[1] == "applied"
    await site_a.service.record(ticket.id, "followed_up", agent="1001", payload={"satisfaction": "satisfied"})
    closed = await site_a.service.record(ticket.id, "closed", agent="1001")
    assert (closed.status, closed.result, closed.satisfaction) == ("closed", "officers attended", "satisfied")
    assert await site_a.store.open_ids() == []
    for event in await events_for(site_a, "110"):
        assert (await site_b.service.apply_remote(event))[1] == "applied"
    at_b = await site_b.store.get(ticket.id)
    assert at_b is not None and at_b.status == "closed"
    assert [e.id for e in at_b.history] == [e.id for e in closed.history]
    assert await site_b.store.open_ids() == []


# ---- route_to ------------------------------------------------------------------------------------------

async def test_route_to_hands_the_ticket_down_to_the_county(site_a: Site, site_b: Site, site_c: Site) -> None:
    ticket = await deliver(site_a, site_b)
    routed = await site_b.service.route_to(ticket.id, COUNTY)
    assert routed.target == Party("110", COUNTY)
    assert routed.path == ["12345", "110", COUNTY]
    assert routed.status == "delivered"
    assert await site_b.store.get(ticket.id) == routed
    to_sender = await site_b.outbox("12345")
    assert [(m["kind"], m["body"]["type"]) for m in to_sender] == [("event", "delivered"), ("event", "routed")]
    assert to_sender[1]["body"]["payload"] == {"site": COUNTY, "reason": "division"}
    [to_county] = await site_b.outbox(COUNTY)
    assert to_county["kind"] == "ticket" and parse_ticket(to_county["body"]) == routed
    assert site_b.notified[-2:] == ["12345", COUNTY]
    assert site_b.emitted[-1] == (ticket.id, "routed")

    outcomes = [(await site_a.service.apply_remote(e))[1] for e in await events_for(site_b, "12345")]
    assert outcomes == ["applied", "applied"]
    at_a = await site_a.store.get(ticket.id)
    assert at_a is not None
    assert (at_a.target.site, at_a.path, at_a.status) == (COUNTY, ["12345", "110", COUNTY], "delivered")

    at_c, _ = await site_c.service.receive(parse_ticket(to_county["body"]), via="push")
    assert at_c.target.site == COUNTY
    await site_c.service.record(ticket.id, "signed_for", agent="3001")
    assert [e.type for e in await events_for(site_c, "110")] == ["delivered", "signed_for"]
    with pytest.raises(Forbidden):  # the city is a relay now: it can no longer decide for the county
        await site_b.service.record(ticket.id, "accepted", agent="2001")


async def test_route_to_is_refused_once_signed_for_and_from_the_sender(site_a: Site, site_b: Site) -> None:
    ticket = await deliver(site_a, site_b)
    with pytest.raises(Forbidden):
        await site_a.service.route_to(ticket.id, COUNTY)
    await site_b.service.record(ticket.id, "signed_for", agent="2001")
    before = await site_b.snapshot(ticket.id)
    with pytest.raises(Conflict) as info:
        await site_b.service.route_to(ticket.id, COUNTY)
    assert info.value.details["status"] == "signed_for"
    assert await site_b.snapshot(ticket.id) == before


# ---- apply_remote --------------------------------------------------------------------------------------

async def signed_at_b(site_a: Site, site_b: Site) -> tuple[Ticket, list[Event]]:
    """A ticket signed for at 110, with 110's events seq 1 (delivered), 2 (offered), 3 (signed_for)."""
    ticket = await deliver(site_a, site_b)
    await site_b.service.record(ticket.id, "offered", agent="2001")
    await site_b.service.record(ticket.id, "signed_for", agent="2001")
    events = await events_for(site_b, "12345")
    assert [(e.type, e.seq) for e in events] == [("delivered", 1), ("offered", 2), ("signed_for", 3)]
    return ticket, events


async def test_events_of_a_peer_are_applied_in_seq_order(site_a: Site, site_b: Site) -> None:
    ticket, (e1, e2, e3) = await signed_at_b(site_a, site_b)
    site_a.emitted.clear()

    t, outcome = await site_a.service.apply_remote(e1)
    assert (outcome, t.status, t.sequences["110"]) == ("applied", "delivered", 1)

    t, outcome = await site_a.service.apply_remote(e3)
    assert (outcome, t.status, t.sequences["110"]) == ("queued", "delivered", 1)
    stored = await site_a.store.get(ticket.id)
    assert stored is not None
    assert [e.id for e in stored.pending] == [e3.id]
    assert [e.type for e in stored.history] == ["created", "delivered"]
    assert site_a.emitted == [(ticket.id, "delivered")]  # nothing announced for a waiting event

    t, outcome = await site_a.service.apply_remote(e2)
    assert (outcome, t.status) == ("applied", "signed_for")
    stored = await site_a.store.get(ticket.id)
    assert stored == t
    assert [(e.type, e.seq) for e in stored.history] == [("created", 1), ("delivered", 1), ("offered", 2),
                                                         ("signed_for", 3)]
    assert [e.version for e in stored.history] == [1, 2, 3, 4]
    assert (stored.pending, stored.sequences) == ([], {"12345": 1, "110": 3})
    assert (stored.offered_to, stored.signed_for_by) == ("2001", "2001")
    assert site_a.emitted == [(ticket.id, "delivered"), (ticket.id, "offered"), (ticket.id, "signed_for")]
    assert await events_for(site_a, "110") == []  # a peer's events are not echoed back to it


async def test_a_duplicate_by_id_or_by_seq_changes_nothing(site_a: Site, site_b: Site) -> None:
    ticket, events = await signed_at_b(site_a, site_b)
    for event in events:
        assert (await site_a.service.apply_remote(event))[1] == "applied"
    before = await site_a.snapshot(ticket.id)

    same_id = parse_event(events[1].to_dict())
    t, outcome = await site_a.service.apply_remote(same_id)
    assert (outcome, t.version) == ("duplicate", 4)

    same_seq = Event(new_event_id(), ticket.id, "offered", "2026-01-01T12:00:09.000Z",
                     {"platform": "110", "site": "110", "agent": "2002"}, {}, seq=2)
    t, outcome = await site_a.service.apply_remote(same_seq)
    assert (outcome, t.offered_to) == ("duplicate", "2001")
    assert await site_a.snapshot(ticket.id) == before


async def test_a_waiting_event_sent_again_is_a_duplicate(site_a: Site, site_b: Site) -> None:
    ticket, (e1, _, e3) = await signed_at_b(site_a, site_b)
    await site_a.service.apply_remote(e1)
    assert (await site_a.service.apply_remote(e3))[1] == "queued"
    raw = await site_a.raw(ticket.id)
    assert (await site_a.service.apply_remote(parse_event(e3.to_dict())))[1] == "duplicate"
    assert await site_a.raw(ticket.id) == raw


async def test_a_remote_event_from_the_wrong_platform_is_forbidden(site_a: Site, site_b: Site) -> None:
    ticket = await deliver(site_a, site_b)
    before = await site_a.snapshot(ticket.id)
    wrong = Event(new_event_id(), ticket.id, "closed", "2026-01-01T12:00:09.000Z",
                  {"platform": "110", "site": "110", "agent": "2001"}, {}, seq=2)
    with pytest.raises(Forbidden):
        await site_a.service.apply_remote(wrong)
    stranger = Event(new_event_id(), ticket.id, "signed_for", "2026-01-01T12:00:09.000Z",
                     {"platform": "119", "site": "119", "agent": "3001"}, {}, seq=1)
    with pytest.raises(Forbidden):
        await site_a.service.apply_remote(stranger)
    assert await site_a.snapshot(ticket.id) == before


async def test_an_event_authored_here_cannot_come_back(site_a: Site, site_b: Site) -> None:
    ticket = await deliver(site_a, site_b)
    created = (await site_a.store.get(ticket.id)).history[0]  # type: ignore[union-attr]
    echo = Event(new_event_id(), ticket.id, "cancelled", created.at, dict(created.actor), {}, seq=2)
    before = await site_a.snapshot(ticket.id)
    with pytest.raises(Conflict):
        await site_a.service.apply_remote(echo)
    assert await site_a.snapshot(ticket.id) == before


async def test_a_crossing_peer_decision_is_kept_but_does_not_move_the_ticket(site_a: Site, site_b: Site) -> None:
    """12345 declares the transfer failed while 110 signs for it: each side keeps its own final word."""
    ticket, (e1, e2, e3) = await signed_at_b(site_a, site_b)
    await site_a.service.apply_remote(e1)
    await site_a.service.record(ticket.id, "transfer_failed", payload={"reason": "no answer"})
    for event in (e2, e3):
        t, outcome = await site_a.service.apply_remote(event)
        assert outcome == "applied"
    assert t.status == "transfer_failed"
    assert [e.type for e in t.history][-2:] == ["offered", "signed_for"]
    assert t.signed_for_by == ""


async def test_apply_remote_unknown_ticket_is_not_found(site_a: Site) -> None:
    event = Event(new_event_id(), TID, "offered", "2026-01-01T12:00:09.000Z", {"platform": "110", "site": "110"})
    with pytest.raises(NotFound):
        await site_a.service.apply_remote(event)


async def test_too_many_early_events_do_not_make_the_ticket_unreadable(site_a: Site, site_b: Site) -> None:
    ticket = await deliver(site_a, site_b)
    for seq in range(3, 54):  # 51 early events: seq 1 and 2 never arrive
        early = Event(new_event_id(), ticket.id, "offered", "2026-01-01T12:00:09.000Z",
                      {"platform": "110", "site": "110", "agent": "2001"}, {}, seq=seq)
        if seq < 53:
            assert (await site_a.service.apply_remote(early))[1] == "queued"
        else:  # the 51st is refused (the peer's outbox retries it later, in order) and nothing is stored
            with pytest.raises(Conflict):
                await site_a.service.apply_remote(early)
    stored = await site_a.store.get(ticket.id)
    assert stored is not None and stored.status == "created" and len(stored.pending) == 50


async def test_a_redelivered_event_of_a_site_that_since_became_a_relay_is_a_duplicate(site_a: Site,
                                                                                      site_b: Site) -> None:
    ticket = await deliver(site_a, site_b)
    await site_b.service.route_to(ticket.id, COUNTY)
    delivered, routed = await events_for(site_b, "12345")
    for event in (delivered, routed):
        assert (await site_a.service.apply_remote(event))[1] == "applied"
    raw = await site_a.raw(ticket.id)
    assert (await site_a.service.apply_remote(parse_event(routed.to_dict())))[1] == "duplicate"
    assert (await site_a.service.apply_remote(parse_event(delivered.to_dict())))[1] == "duplicate"
    assert await site_a.raw(ticket.id) == raw


# ---- neighbours and came_from --------------------------------------------------------------------------

def test_neighbours_and_came_from_on_a_three_site_path(configs: dict[str, SiteConfig]) -> None:
    ticket = plain_ticket()
    ticket.path = ["12345", "110", COUNTY]
    a, b, c = (TicketService(configs[n], None, TicketHooks()) for n in ("12345", "110", COUNTY))  # type: ignore[arg-type]
    assert (a.neighbours(ticket), b.neighbours(ticket), c.neighbours(ticket)) == (["110"], ["12345", COUNTY],
                                                                                  ["110"])
    assert b.neighbours(ticket, exclude="12345") == [COUNTY]
    assert b.came_from(ticket, "12345") == "12345" and b.came_from(ticket, COUNTY) == COUNTY
    assert a.came_from(ticket, COUNTY) == "110" and c.came_from(ticket, "12345") == "110"
    assert b.came_from(ticket, "110") is None
    assert b.came_from(ticket, "119") == "119"  # not on the path: taken as the sender itself
    ticket.path = []  # a ticket of before the path: source and target
    assert (a.neighbours(ticket), b.neighbours(ticket), c.neighbours(ticket)) == (["110"], ["12345"], [])


async def test_a_ticket_lock_lives_only_while_it_is_used(site_a: Site) -> None:
    import gc

    lock = site_a.service._lock(TID)
    async with lock:
        assert site_a.service._lock(TID) is lock  # a second user of the same ticket waits on the same lock
    del lock
    gc.collect()
    assert len(site_a.service.locks) == 0  # nothing kept per ticket once nobody holds or waits for it


async def test_a_peer_messages_replay_key_is_written_with_the_change_it_causes(site_a: Site) -> None:
    from telephony.tickets.store import ReplayMark

    redis = site_a.store.redis
    mark = ReplayMark("linkage:seen:110:m1", 3600)
    await site_a.store.put(plain_ticket("37080020260101120000000009", linkedid="1.9"))  # a write not handed it
    assert not mark.done and await redis.exists("linkage:seen:110:m1") == 0
    assert await site_a.store.put(plain_ticket(), [("110", {"kind": "event"})], replay=mark)
    assert mark.done and 3500 < await redis.ttl("linkage:seen:110:m1") <= 3600
    await redis.delete("linkage:seen:110:m1")
    assert await site_a.store.put(plain_ticket(content="second"), replay=mark)  # once per message
    assert await redis.exists("linkage:seen:110:m1") == 0
    refused = ReplayMark("linkage:seen:110:m2", 3600)
    assert await site_a.store.create(plain_ticket(), [], replay=refused) is False  # nothing written, nothing remembered
    assert not refused.done and await redis.exists("linkage:seen:110:m2") == 0


async def test_a_replayed_mark_refuses_the_write_and_changes_nothing(site_a: Site) -> None:
    from telephony.tickets.store import ReplayMark

    assert await site_a.store.put(plain_ticket())
    await site_a.store.redis.set("linkage:seen:110:m3", "1")
    mark = ReplayMark("linkage:seen:110:m3", 3600)
    with pytest.raises(Replayed):
        await site_a.store.put(plain_ticket(content="again"), [("110", {"kind": "event"})], replay=mark)
    stored = await site_a.store.get(TID)
    assert stored is not None and stored.content == "first" and not mark.done
    assert await site_a.store.redis.llen(outbox_key("110")) == 0


async def test_a_create_whose_reply_was_lost_is_not_taken_for_a_collision(site_a: Site) -> None:
    """The store sends a command again on a new connection when the old one died; if the first attempt had run,
    the create is refused (the id exists) but the ticket there is this attempt's own: one ticket, not two."""
    real = site_a.store.create
    attempts: list[str] = []

    async def ran_then_refused(ticket: Ticket, *args: Any, **kwargs: Any) -> bool:
        attempts.append(ticket.id)
        await real(ticket, *args, **kwargs)  # the first attempt ran...
        return False  # ...and its resend found the id taken

    site_a.store.create = ran_then_refused  # type: ignore[method-assign]
    ticket = await create(site_a)
    assert attempts == [ticket.id]  # no second id allocated
    assert [k async for k in site_a.redis.scan_iter(f"{PREFIX}ticket:*")] == [ticket_key(ticket.id).encode()]
    assert [m["body"]["id"] for m in await site_a.outbox("110")] == [ticket.id]
    assert site_a.notified == ["110"] and site_a.emitted == [(ticket.id, "created")]


async def test_a_real_collision_still_gets_a_new_id(site_a: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    taken = await create(site_a, linkedid="1767268800.8")
    ids = iter([taken.id, "37080020260101120000654321"])
    monkeypatch.setattr(services_module, "new_ticket_id", lambda division: next(ids))
    ticket = await create(site_a, linkedid="1767268800.9")
    assert ticket.id == "37080020260101120000654321"
    stored = await site_a.store.get(taken.id)
    assert stored is not None and stored.linkedid == "1767268800.8"  # the other call's ticket, untouched
