"""Prepared transfers on the sending side (transfers/prepared.py) against the real Redis: the reservation at bridge
time, the dialplan's press turned into the ticket, one ticket however many times a press is completed, the
reservation gone with an untransferred call, a press found after a restart from the AstDB record; and the far
side keeping facts about a ticket that has not landed yet."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from linkage_lab.lab.lab import PLANS, Lab
from telephony.calls.registry import CallRegistry
from telephony.security.sealing import Sealer
from telephony.tickets.hooks import TicketHooks
from telephony.tickets.services import TicketService, observed_key
from telephony.tickets.store import PREFIX, TicketStore, outbox_key
from telephony.transfers.arrivals import Arrivals
from telephony.transfers.drafts import DraftStore, draft_key
from telephony.transfers.prepared import PreparedService
from telephony.transfers.receiving import ReceivingService
from telephony.transfers.reservations import RESERVED, ReservationStore, Reserved
from telephony.transfers.sending import SendingService

REDIS_DB = 15  # the unit conftest's `redis` fixture gives this database, emptied
LINKEDID = "1795934017.10"
AGENT = "1795934017.11"


def _events(registry: CallRegistry) -> None:
    for uniqueid, channel, number in ((LINKEDID, "PJSIP/citizen-00000001", "13912345678"),
                                      (AGENT, "PJSIP/agent1001-00000002", "1001")):
        registry.on_event({"Event": "Newchannel", "Uniqueid": uniqueid, "Linkedid": LINKEDID, "Channel": channel,
                           "CallerIDNum": number, "ChannelStateDesc": "Up"})
    for uniqueid in (LINKEDID, AGENT):
        registry.on_event({"Event": "BridgeEnter", "Uniqueid": uniqueid, "Linkedid": LINKEDID})


class Pbx:
    """What the service asks of AMI: Setvar is noted, DBGet answers from `astdb`."""

    def __init__(self) -> None:
        self.actions: list[dict[str, str]] = []
        self.astdb: dict[str, str] = {}
        self.reads = 0  # DBGets asked

    async def send(self, action: dict[str, str]) -> Any:
        self.actions.append(action)
        return None

    async def send_list(self, action: dict[str, str]) -> list[dict[str, str]]:
        self.reads += action["Action"] == "DBGet"
        value = self.astdb.get(action["Key"])
        if value is None:
            return [{"Response": "Error", "Message": "Database entry not found"}]
        return [{"Response": "Success"}, {"Event": "DBGetResponse", "Key": action["Key"], "Val": value}]


def _build(tmp_path: Path, redis: aioredis.Redis, calls: CallRegistry, pbx: Pbx) -> PreparedService:
    config = Lab(rootfs=str(tmp_path)).site_config(PLANS["12345"])
    sealer = Sealer(())
    tickets = TicketService(config, TicketStore(redis, sealer), TicketHooks())
    reserved, store = Reserved(), ReservationStore(redis, sealer)
    sending = SendingService(config, calls, tickets, pbx.send, DraftStore(redis, sealer), reserved=reserved,
                             reservations=store)
    return PreparedService(config, calls, sending, store, reserved, pbx.send, pbx.send_list)


async def _reserve(prepared: PreparedService) -> str:
    res = await prepared.bridged(LINKEDID, AGENT)
    assert res is not None
    await prepared._reserved(LINKEDID)
    return res.ticket_id


async def test_a_bridged_agent_call_is_reserved_and_published(tmp_path: Path, redis: aioredis.Redis) -> None:
    calls, pbx = CallRegistry(), Pbx()
    _events(calls)
    prepared = _build(tmp_path, redis, calls, pbx)
    ticket_id = await _reserve(prepared)
    assert await redis.sismember(RESERVED, LINKEDID)
    assert await redis.hget(draft_key(LINKEDID), "_res") is not None
    slot = int(await redis.hget(draft_key(LINKEDID), "_slot"))
    assert pbx.actions == [{"Action": "Setvar", "Channel": "PJSIP/agent1001-00000002", "Variable": "LINKAGE_RES",
                            "Value": f"{ticket_id}-{slot}"}]
    assert await prepared.bridged(LINKEDID, AGENT) is None  # once per call
    assert await redis.zcard(f"{PREFIX}tickets") == 0  # nothing is a ticket before the press


async def test_the_press_makes_the_ticket_with_the_draft_once(tmp_path: Path, redis: aioredis.Redis) -> None:
    calls, pbx = CallRegistry(), Pbx()
    _events(calls)
    prepared = _build(tmp_path, redis, calls, pbx)
    ticket_id = await _reserve(prepared)
    await prepared.sending.set_draft(LINKEDID, {"content": "邻居家中传出呼救声", "category": "report"})
    first, second = await asyncio.gather(prepared.pressed(ticket_id, "110"), prepared.pressed(ticket_id, "110"))
    assert first is not None and first.id == ticket_id and first.content == "邻居家中传出呼救声"
    assert first.caller_number == "13912345678" and first.agent_id == "1001" and first.linkedid == LINKEDID
    assert second is not None and second.id == ticket_id
    assert prepared.reserved.of_ticket(ticket_id) is None  # spent: a resync finds nothing to complete
    assert await redis.zcard(f"{PREFIX}tickets") == 1
    assert await redis.llen(outbox_key("110")) == 1  # one push
    assert not await redis.exists(draft_key(LINKEDID))
    await prepared.store.flush()
    assert not await redis.sismember(RESERVED, LINKEDID)
    call = calls.get(LINKEDID)
    assert call is not None and call.transferring and call.ticket_id == ticket_id


async def test_an_untransferred_call_leaves_nothing(tmp_path: Path, redis: aioredis.Redis) -> None:
    calls, pbx = CallRegistry(), Pbx()
    _events(calls)
    prepared = _build(tmp_path, redis, calls, pbx)
    await _reserve(prepared)
    await prepared.sending.set_draft(LINKEDID, {"content": "咨询"})
    await prepared.hung_up(LINKEDID)  # still live: kept
    assert await redis.exists(draft_key(LINKEDID))
    for uniqueid in (AGENT, LINKEDID):
        calls.on_event({"Event": "Hangup", "Uniqueid": uniqueid, "Linkedid": LINKEDID})
    await prepared.hung_up(LINKEDID)
    assert not await redis.exists(draft_key(LINKEDID)) and not await redis.sismember(RESERVED, LINKEDID)
    assert prepared.reserved.of_call(LINKEDID) is None
    assert pbx.reads == 0  # a call reserved and ended while heard: its press would have been heard, no AMI read


async def test_a_press_missed_by_a_dead_controller_is_found_after_the_restart(
        tmp_path: Path, redis: aioredis.Redis) -> None:
    calls, pbx = CallRegistry(), Pbx()
    _events(calls)
    before = _build(tmp_path, redis, calls, pbx)
    ticket_id = await _reserve(before)
    await before.sending.set_draft(LINKEDID, {"content": "按键时控制器已停止", "address": "济宁市某小区"})
    slot = int(await redis.hget(draft_key(LINKEDID), "_slot"))
    # the controller dies; the dialplan records the press in AstDB and the caller moves; the call then ends
    pbx.astdb[str(slot)] = f"{ticket_id}:110"
    after = _build(tmp_path, redis, CallRegistry(), pbx)
    await after.load()
    await after.resync()
    ticket = await after.sending.tickets.store.get(ticket_id)
    assert ticket is not None and ticket.content == "按键时控制器已停止" and ticket.address == "济宁市某小区"
    assert ticket.caller_number == "13912345678" and ticket.status == "created"
    assert await redis.llen(outbox_key("110")) == 1
    await after.resync()  # again: nothing more
    assert await redis.zcard(f"{PREFIX}tickets") == 1


async def test_a_press_recorded_after_the_restarts_resync_is_completed(tmp_path: Path, redis: aioredis.Redis) -> None:
    """CI, 2026-12-02: the controller was back and had resynced before the agent's leg ended, so the AstDB
    record (written by that leg's hangup handler) was not there yet; the reservation was then dropped at the
    call's end and the press lost. Now the record's own UserEvent completes it, and the hang-up reads the
    record before it drops anything."""
    for via_event in (True, False):
        await redis.flushdb()
        calls, pbx = CallRegistry(), Pbx()
        _events(calls)
        before = _build(tmp_path, redis, calls, pbx)
        ticket_id = await _reserve(before)
        await before.sending.set_draft(LINKEDID, {"content": "记录晚于重同步"})
        slot = int(await redis.hget(draft_key(LINKEDID), "_slot"))
        after = _build(tmp_path, redis, calls, pbx)  # restarted while the call lasts: no record yet
        await after.load()
        await after.resync()
        assert after.reserved.of_ticket(ticket_id) is not None and await redis.zcard(f"{PREFIX}tickets") == 0
        pbx.astdb[str(slot)] = f"{ticket_id}:110"  # the agent's leg ends: its hangup handler writes the record
        if via_event:
            work = after.press(ticket_id, "110", recorded=True)
            assert work is not None
            await work()
        for uniqueid in (AGENT, LINKEDID):
            calls.on_event({"Event": "Hangup", "Uniqueid": uniqueid, "Linkedid": LINKEDID})
        await after.hung_up(LINKEDID)
        ticket = await after.sending.tickets.store.get(ticket_id)
        assert ticket is not None and ticket.content == "记录晚于重同步", via_event
        assert await redis.zcard(f"{PREFIX}tickets") == 1 and await redis.llen(outbox_key("110")) == 1
        assert after.reserved.of_call(LINKEDID) is None
        assert after.press(ticket_id, "110", recorded=True) is None  # the record's event after the ticket: nothing


async def test_a_reservation_of_a_call_that_ended_unpressed_goes_at_the_resync(
        tmp_path: Path, redis: aioredis.Redis) -> None:
    calls, pbx = CallRegistry(), Pbx()
    _events(calls)
    await _reserve(_build(tmp_path, redis, calls, pbx))
    after = _build(tmp_path, redis, CallRegistry(), pbx)
    await after.load()
    await after.resync()
    assert not await redis.exists(draft_key(LINKEDID)) and await redis.zcard(f"{PREFIX}tickets") == 0


async def test_the_agi_key_on_a_reserved_call_uses_the_reserved_id(tmp_path: Path, redis: aioredis.Redis) -> None:
    """The Setvar had not landed (or the controller restarted before it): the AGI path makes the same ticket."""
    calls, pbx = CallRegistry(), Pbx()
    _events(calls)
    prepared = _build(tmp_path, redis, calls, pbx)
    ticket_id = await _reserve(prepared)
    exten = await prepared.sending.key(LINKEDID, "110", AGENT, "PJSIP/agent1001-00000002", _no_number)
    assert exten is not None and exten.endswith(f"*{ticket_id}")
    await prepared.store.flush()
    assert prepared.reserved.of_call(LINKEDID) is None and not await redis.sismember(RESERVED, LINKEDID)
    assert await prepared.pressed(ticket_id, "110") is None  # a stray press event: no second ticket
    assert await redis.zcard(f"{PREFIX}tickets") == 1


async def _no_number() -> str:
    return ""


async def test_a_trunk_call_is_not_reserved(tmp_path: Path, redis: aioredis.Redis) -> None:
    calls, pbx = CallRegistry(), Pbx()
    for uniqueid, channel in ((LINKEDID, "PJSIP/trunk-110-00000001"), (AGENT, "PJSIP/agent1001-00000002")):
        calls.on_event({"Event": "Newchannel", "Uniqueid": uniqueid, "Linkedid": LINKEDID, "Channel": channel,
                        "CallerIDNum": "110"})
    assert await _build(tmp_path, redis, calls, pbx).bridged(LINKEDID, AGENT) is None
    assert pbx.actions == []


async def test_facts_before_the_ticket_land_on_it(tmp_path: Path, redis: aioredis.Redis, redis_url: str) -> None:
    """Far side: the call rang and was answered before its ticket came (the sender's controller was down)."""
    calls, pbx = CallRegistry(), Pbx()
    _events(calls)
    sender = _build(tmp_path, redis, calls, pbx)
    ticket_id = await _reserve(sender)
    made = await sender.pressed(ticket_id, "110")
    assert made is not None
    far_config = Lab(rootfs=str(tmp_path)).site_config(PLANS["110"])
    far_redis = aioredis.from_url(redis_url.rsplit("/", 1)[0] + "/14")  # the receiver's own database
    await far_redis.flushdb()
    try:
        far = TicketService(far_config, TicketStore(far_redis), TicketHooks())
        assert await far.observe(ticket_id, "offered", "2001") is None
        assert await far.observe(ticket_id, "offered", "2002") is None  # one per type: ring-all rings two
        assert await far.observe(ticket_id, "signed_for", "2001") is None
        assert await far_redis.exists(observed_key(ticket_id))
        _, stored = await far.receive(made, via="push")
        assert stored
        held = await far.store.get(ticket_id)
        assert held is not None
        assert [e.type for e in held.history] == ["created", "delivered", "offered", "signed_for"]
        assert held.offered_to == "2001" and held.signed_for_by == "2001" and held.status == "signed_for"
        assert not await far_redis.exists(observed_key(ticket_id))
    finally:
        await far_redis.flushdb()
        await far_redis.aclose()


async def test_a_stored_push_publishes_its_route(tmp_path: Path, redis: aioredis.Redis, redis_url: str) -> None:
    """Far side's fast path: the ticket stored here names the agent for its call in a PBX global; the call that
    takes it is then known by its trunk channel (for offered / signed_for)."""
    calls, pbx = CallRegistry(), Pbx()
    _events(calls)
    sender = _build(tmp_path, redis, calls, pbx)
    made = await sender.pressed(await _reserve(sender), "110")
    assert made is not None
    far_config = Lab(rootfs=str(tmp_path)).site_config(PLANS["110"])
    far_redis = aioredis.from_url(redis_url.rsplit("/", 1)[0] + "/14")
    await far_redis.flushdb()
    far_pbx, far_calls = Pbx(), CallRegistry()
    receiving: ReceivingService | None = None
    hooks = TicketHooks(changed=(lambda t, e: receiving.on_change(t, e) if receiving else None,))
    try:
        far = TicketService(far_config, TicketStore(far_redis), hooks)
        receiving = ReceivingService(far_config, far_calls, far, {}, Arrivals(0.1), far_pbx.send)
        await far.receive(made, via="push")
        await asyncio.gather(*receiving.tasks)
        first = far_config.accounts.agents[0].id
        assert far_pbx.actions == [{"Action": "Setvar", "Variable": f"LINKAGE_ROUTE_{made.id}",
                                    "Value": f"PJSIP/agent{first}"}]
        receiving.fast_arrived(made.id, "1795935000.5", "1795935000.5")
        assert receiving.ticket_of("1795935000.5") == made.id and made.id not in receiving.published
        await receiving.dial_began(made.id, first)
        held = await far.store.get(made.id)
        assert held is not None and held.offered_to == first
    finally:
        await far_redis.flushdb()
        await far_redis.aclose()
