"""The three-way service against its states and rules: AMI actions recorded, tickets on the real Redis.

Asterisk itself is the lab's business (the threeway_* and attended_transfer_* scenarios); these check that the
service moves the room, the consultation and the call as the tables say, and records the rules' outcome."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar, cast

import msgspec
import pytest
import redis.asyncio as aioredis

from linkage_lab.lab.lab import PLANS, Lab
from telephony.agi.server import AgiRequest
from telephony.calls import state as call_state
from telephony.calls.registry import CallRegistry
from telephony.errors import Conflict, InvalidInput, NotFound
from telephony.threeway import services as threeway_services
from telephony.threeway import state
from telephony.threeway.agi import ThreewayAgi
from telephony.threeway.ami import ThreewayAmi
from telephony.threeway.services import ThreewayService
from telephony.tickets.hooks import TicketHooks
from telephony.tickets.models import Ticket
from telephony.tickets.services import TicketService
from telephony.tickets.store import TicketStore
from telephony.transfers.sending import SendingService

REDIS_DB = 14  # the unit conftest's `redis` fixture gives this database, emptied
LINKEDID, AGENT_UID = "1795934017.10", "1795934017.11"
CALLER, AGENT = "PJSIP/citizen-00000001", "PJSIP/agent1001-00000002"
FAR = "PJSIP/trunk-110-0000000a"


class Request:
    """The part of an AGI request the service reads and sets."""

    def __init__(self, *args: str, uniqueid: str = AGENT_UID, channel: str = AGENT) -> None:
        self.args, self.uniqueid, self.channel = list(args), uniqueid, channel
        self.variables: dict[str, str] = {}

    def arg(self, index: int) -> str:
        return self.args[index] if index < len(self.args) else ""

    async def set_variable(self, name: str, value: str) -> None:
        self.variables[name] = value


class Desk:
    made: ClassVar[list[Desk]] = []

    def __init__(self, tmp_path: Path, redis: aioredis.Redis, decide: float, emergency: str = "110") -> None:
        config = Lab(rootfs=str(tmp_path)).site_config(PLANS["12345"])
        tw = msgspec.structs.replace(config.threeway, decide_seconds=decide, emergency_platform=emergency)
        self.config = msgspec.structs.replace(config, threeway=tw)
        self.calls = CallRegistry()
        self.tickets = TicketService(self.config, TicketStore(redis), TicketHooks())
        self.transfers = SendingService(self.config, self.calls, self.tickets, self._ami)
        self.actions: list[dict[str, str]] = []
        self.service = ThreewayService(self.config, self.calls, self.tickets, self.transfers, self._ami)
        self.agi = ThreewayAgi(self.service)  # the keys reach the service as the dialplan's FastAGI requests
        self.ami = ThreewayAmi(self.service)  # and the conference's events as AMI events
        Desk.made.append(self)

    async def _ami(self, action: dict[str, str]) -> None:
        self.actions.append(action)

    def answered(self, linkedid: str = LINKEDID, agent_uid: str = AGENT_UID, agent: str = AGENT) -> None:
        for uid, channel in ((linkedid, CALLER), (agent_uid, agent)):
            self.calls.on_event({"Event": "Newchannel", "Uniqueid": uid, "Linkedid": linkedid, "Channel": channel,
                                 "CallerIDNum": "13912345678"})
        self.calls.on_event({"Event": "BridgeEnter", "Uniqueid": linkedid, "Linkedid": linkedid})

    async def conf(self, name: str, ticket: Ticket, channel: str, uniqueid: str) -> None:
        await self.ami.on_event({"Event": f"Confbridge{name}", "Conference": ticket.id,
                                         "Channel": channel, "Uniqueid": uniqueid})

    async def room(self, category: str = "") -> Ticket:
        """An answered call put into a three-way room, with the caller, the agent and the far leg in it."""
        self.answered()
        if category:
            await self.transfers.set_draft(LINKEDID, {"category": category})
        ticket = await self.service.start(LINKEDID, AGENT_UID)
        await asyncio.sleep(0.01)  # the room is assembled
        for channel, uid in ((CALLER, LINKEDID), (AGENT, AGENT_UID), (FAR, "1795934017.12")):
            await self.conf("Join", ticket, channel, uid)
        return ticket

    async def decision(self, ticket: Ticket) -> dict[str, str]:
        stored = await self.tickets.store.get(ticket.id)
        assert stored is not None
        return stored.decision


@pytest.fixture(autouse=True)
async def no_settle(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    monkeypatch.setattr(threeway_services, "HOOK_SETTLE", 0.0)
    yield
    while Desk.made:  # deadlines still running when a test ends
        Desk.made.pop().service.close()
    await asyncio.sleep(0)


def _kicks(desk: Desk) -> list[str]:
    return [a["Channel"] for a in desk.actions if a["Action"] == "ConfbridgeKick"]


def _redirects(desk: Desk) -> list[str]:
    return [a["Context"] for a in desk.actions if a["Action"] == "Redirect" and "ExtraChannel" not in a]


async def test_our_agent_accepts_and_their_agent_is_released(tmp_path: Path, redis: aioredis.Redis) -> None:
    desk = Desk(tmp_path, redis, decide=30)
    ticket = await desk.room()
    room = desk.service.rooms[ticket.id]
    assert room.state == state.JOINED and desk.calls.calls[LINKEDID].handover == call_state.THREEWAY
    await desk.agi.conf_key(cast(AgiRequest, Request("accept", ticket.id, AGENT_UID)))
    assert await desk.decision(ticket) == {"keeper": "12345", "rule": "agreed", "by": "12345/1001"}
    assert room.state == state.DECIDED and _kicks(desk) == [FAR] and _redirects(desk) == []
    assert room.timer is not None and room.timer.cancelled()
    await desk.agi.conf_key(cast(AgiRequest, Request("accept", ticket.id, "1795934017.12")))  # too late
    assert await desk.decision(ticket) == {"keeper": "12345", "rule": "agreed", "by": "12345/1001"}
    await desk.conf("Leave", ticket, CALLER, LINKEDID)
    assert ticket.id not in desk.service.rooms and room.state == state.CLOSED


async def test_their_agent_accepts(tmp_path: Path, redis: aioredis.Redis) -> None:
    desk = Desk(tmp_path, redis, decide=30)
    ticket = await desk.room()
    await desk.agi.conf_key(cast(AgiRequest, Request("accept", ticket.id, "1795934017.12")))
    assert await desk.decision(ticket) == {"keeper": "110", "rule": "agreed", "by": "110"}
    assert _kicks(desk) == [AGENT]


async def test_the_callers_key_decides_nothing(tmp_path: Path, redis: aioredis.Redis) -> None:
    desk = Desk(tmp_path, redis, decide=30)
    ticket = await desk.room()
    await desk.agi.conf_key(cast(AgiRequest, Request("accept", ticket.id, LINKEDID)))
    assert desk.service.rooms[ticket.id].state == state.JOINED and await desk.decision(ticket) == {}


async def test_an_emergency_past_the_deadline_stays_with_the_configured_platform(
        tmp_path: Path, redis: aioredis.Redis) -> None:
    desk = Desk(tmp_path, redis, decide=0.05, emergency="119")
    ticket = await desk.room(category="report")
    await asyncio.sleep(0.2)
    assert await desk.decision(ticket) == {"keeper": "119", "rule": "emergency_110", "by": "timeout"}
    assert _kicks(desk) == [AGENT]  # not ours: our agent is released


async def test_both_agents_leave_and_the_caller_is_rung_here(tmp_path: Path, redis: aioredis.Redis) -> None:
    desk = Desk(tmp_path, redis, decide=30)
    ticket = await desk.room()
    await desk.conf("Leave", ticket, AGENT, AGENT_UID)
    assert await desk.decision(ticket) == {}  # one agent leaving decides nothing
    await desk.conf("Leave", ticket, FAR, "1795934017.12")
    assert await desk.decision(ticket) == {"keeper": "12345", "rule": "first_receiver", "by": "both_left"}
    assert _kicks(desk) == [] and _redirects(desk) == ["linkage-ring"]


async def test_the_caller_leaving_undecided_ends_the_room(tmp_path: Path, redis: aioredis.Redis) -> None:
    desk = Desk(tmp_path, redis, decide=30)
    ticket = await desk.room()
    room = desk.service.rooms[ticket.id]
    await desk.conf("Leave", ticket, CALLER, LINKEDID)
    assert await desk.decision(ticket) == {"keeper": "", "rule": "caller_left", "by": "caller"}
    assert ticket.id not in desk.service.rooms and room.state == state.CLOSED
    assert room.timer is not None and room.timer.cancelled()


async def test_a_room_emptied_before_a_decision_is_still_decided_by_its_deadline(
        tmp_path: Path, redis: aioredis.Redis) -> None:
    desk = Desk(tmp_path, redis, decide=0.1)
    desk.answered()
    ticket = await desk.service.start(LINKEDID, AGENT_UID)
    await asyncio.sleep(0.01)
    room = desk.service.rooms[ticket.id]
    await desk.conf("Join", ticket, AGENT, AGENT_UID)
    await desk.conf("Leave", ticket, AGENT, AGENT_UID)
    assert ticket.id not in desk.service.rooms and room.state == state.DESERTED
    await asyncio.sleep(0.25)
    assert await desk.decision(ticket) == {"keeper": "12345", "rule": "first_receiver", "by": "timeout"}
    assert room.state == state.CLOSED


async def _consulting(desk: Desk) -> tuple[state.Consult, Request]:
    desk.answered()
    await desk.agi.consult(cast(AgiRequest, Request(LINKEDID)))
    (consult,) = desk.service.consults.values()
    assert consult.state == state.RESERVED and consult.slot == "1000"
    await asyncio.sleep(0.01)
    assert next(a for a in desk.actions if a["Action"] == "Atxfer")["Exten"] == "1000"
    out = Request("1000", channel="Local/1000@linkage-consult-out-00000001;2")
    await desk.agi.consult_out(cast(AgiRequest, out))
    assert consult.state == state.CONSULTING and out.variables == {"LINKAGE_CONSULT": consult.exten}
    assert desk.calls.calls[LINKEDID].handover == call_state.CONSULTING
    return consult, out


async def test_a_consultation_that_hangs_up_brings_the_caller_back(tmp_path: Path, redis: aioredis.Redis) -> None:
    desk = Desk(tmp_path, redis, decide=30)
    consult, _ = await _consulting(desk)
    local = "Local/1000@linkage-consult-out-00000001;1"
    desk.calls.on_event({"Event": "Newchannel", "Uniqueid": "1795934017.14", "Linkedid": LINKEDID, "Channel": local})
    await desk.ami.on_event({"Event": "Hangup", "Channel": local, "Uniqueid": "1795934017.14"})
    assert consult.state == state.CANCELLED and desk.service.consults == {}
    assert desk.calls.calls[LINKEDID].handover == call_state.IDLE
    stored = await desk.tickets.store.get(consult.ticket_id)
    assert stored is not None and stored.status == "cancelled"


async def test_a_completed_consultation_records_the_transfer(tmp_path: Path, redis: aioredis.Redis) -> None:
    desk = Desk(tmp_path, redis, decide=30)
    consult, _ = await _consulting(desk)
    await desk.ami.on_event({"Event": "AttendedTransfer", "Result": "Success",
                                     "OrigTransfererChannel": AGENT})
    assert consult.state == state.COMPLETED and desk.service.consults == {}
    stored = await desk.tickets.store.get(consult.ticket_id)
    assert stored is not None and stored.history[-1].type == "transferred"
    assert desk.calls.calls[LINKEDID].handover == call_state.CONSULTING  # handed over: stays until it ends


async def test_an_unknown_slot_and_a_stale_one(tmp_path: Path, redis: aioredis.Redis) -> None:
    desk = Desk(tmp_path, redis, decide=30)
    desk.answered()
    await desk.agi.consult(cast(AgiRequest, Request(LINKEDID)))
    (first,) = desk.service.consults.values()
    out = Request("1001")
    await desk.agi.consult_out(cast(AgiRequest, out))
    assert out.variables == {} and first.state == state.RESERVED
    first.taken -= state.SLOT_SECONDS  # it never dialled: the next consultation frees its slot
    desk.answered("1795934017.20", "1795934017.21", "PJSIP/agent1002-00000005")
    await desk.agi.consult(cast(AgiRequest, Request("1795934017.20", uniqueid="1795934017.21",
                                                            channel="PJSIP/agent1002-00000005")))
    (second,) = desk.service.consults.values()
    assert first.state == state.EXPIRED and second.slot == "1000" and second.ticket_id != first.ticket_id


def test_the_service_reads_its_policy_from_the_config(tmp_path: Path) -> None:
    config = Lab(rootfs=str(tmp_path)).site_config(PLANS["12345"])
    service = ThreewayService(config, CallRegistry(), cast(Any, None), cast(Any, None), None)
    assert service.policy.emergency_platform == "110"
    assert service.policy.emergency_categories == frozenset(config.threeway.emergency_categories)


async def test_the_consoles_consult_is_the_keys_path_and_says_why_it_refuses(
        tmp_path: Path, redis: aioredis.Redis) -> None:
    desk = Desk(tmp_path, redis, decide=30)
    with pytest.raises(NotFound):
        await desk.service.http_consult(LINKEDID, "1001")
    desk.answered()
    with pytest.raises(InvalidInput, match="agent 1002 is not on that call"):
        await desk.service.http_consult(LINKEDID, "1002")
    ticket = await desk.service.http_consult(LINKEDID, "1001")
    assert ticket.mode == "attended" and desk.service.consults[ticket.id].state == state.RESERVED
    await asyncio.sleep(0.01)
    assert next(a for a in desk.actions if a["Action"] == "Atxfer")["Channel"] == AGENT
    with pytest.raises(Conflict):  # the call is already being handed over: the key would only log this
        await desk.service.http_consult(LINKEDID, "1001")
    assert list(desk.service.consults) == [ticket.id]


async def test_no_free_slot_is_refused_before_a_ticket_is_stored(
        tmp_path: Path, redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    desk = Desk(tmp_path, redis, decide=30)
    desk.answered()
    monkeypatch.setattr(desk.service, "_free_slot", lambda: None)
    with pytest.raises(Conflict, match="no free consultation slot"):
        await desk.service.http_consult(LINKEDID, "1001")
    await desk.agi.consult(cast(AgiRequest, Request(LINKEDID)))  # the key logs the same refusal
    assert desk.service.consults == {} and await desk.tickets.store.open_ids() == []
