"""退回 in the services, tickets on the real Redis, AMI actions recorded: the receiving side returns the ticket a
linked call arrived with instead of making a new one, refuses what is not a return, and the sending side takes
its caller back with two AMI actions. Asterisk itself is the lab's business (tests/scenarios/return_*.yaml)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from linkage_lab.lab.lab import PLANS, Lab
from telephony.calls import state as call_state
from telephony.calls.registry import CallRegistry
from telephony.errors import Conflict, InvalidInput
from telephony.tickets.hooks import TicketHooks
from telephony.tickets.models import Event, Ticket, new_event_id, now_iso
from telephony.tickets.services import TicketService
from telephony.tickets.store import TicketStore
from telephony.transfers.returns import KEY_REASON, ReturnService
from telephony.transfers.sending import SendingService

TRUNK_UID, AGENT_UID = "1795934017.20", "1795934017.21"
CITIZEN_UID, CITIZEN_AGENT_UID, OUT_UID = "1795934017.30", "1795934017.31", "1795934017.32"
REDIS_DB = 4  # the unit conftest's `redis` fixture gives this database, emptied


class Side:
    """One site's services as the controller wires them, with the AMI actions it sent."""

    def __init__(self, tmp_path: Path, redis: aioredis.Redis, site: str) -> None:
        self.config = Lab(rootfs=str(tmp_path)).site_config(PLANS[site])
        self.calls = CallRegistry()
        self.tickets = TicketService(self.config, TicketStore(redis), TicketHooks())
        self.actions: list[dict[str, str]] = []
        self.returns = ReturnService(self.config, self.calls, self.tickets, self._ami)
        self.sending = SendingService(self.config, self.calls, self.tickets, self._ami, returns=self.returns)
        self.escalated: list[tuple[str, str]] = []

    async def _ami(self, action: dict[str, str]) -> None:
        self.actions.append(action)

    def channel(self, uniqueid: str, linkedid: str, channel: str) -> None:
        self.calls.on_event({"Event": "Newchannel", "Uniqueid": uniqueid, "Linkedid": linkedid, "Channel": channel,
                             "CallerIDNum": "13912345678"})

    async def connected(self) -> str:
        return "13912345678"


async def _received(tmp_path: Path, redis: aioredis.Redis) -> tuple[Side, Ticket]:
    """110 with a linked call from 12345 answered by agent 2001: the ticket arrived with it (route_in)."""
    sender = TicketService(Lab(rootfs=str(tmp_path)).site_config(PLANS["12345"]), TicketStore(redis), TicketHooks())
    ticket = await sender.create(target_site="110", target_platform="110", caller_number="13912345678",
                                 agent_id="1001", linkedid=CITIZEN_UID, uniqueids=[CITIZEN_UID], draft={})
    await redis.delete(f"linkage:ticket:{ticket.id}")  # one db: the far side stores its own copy
    far = Side(tmp_path, redis, "110")
    await far.tickets.receive(ticket, via="push")
    far.channel(TRUNK_UID, TRUNK_UID, "PJSIP/trunk-12345-00000001")
    far.channel(AGENT_UID, TRUNK_UID, "PJSIP/agent2001-00000002")
    far.calls.on_event({"Event": "BridgeEnter", "Uniqueid": AGENT_UID, "Linkedid": TRUNK_UID})
    far.calls.arrived(TRUNK_UID, ticket.id)
    await far.tickets.record(ticket.id, "signed_for", "2001")
    return far, ticket


async def _press(side: Side, linkedid: str, uid: str, channel: str) -> str | None:
    return await side.sending.key(linkedid, side.config.targets[0].name, uid, channel, side.connected)


async def test_the_key_toward_the_platform_it_came_from_returns_the_same_ticket(
        tmp_path: Path, redis: aioredis.Redis) -> None:
    far, ticket = await _received(tmp_path, redis)
    assert await _press(far, TRUNK_UID, AGENT_UID, "PJSIP/agent2001-00000002") is None  # nothing is dialled here
    stored = await far.tickets.store.get(ticket.id)
    assert stored is not None and stored.status == "returned" and stored.return_reason == KEY_REASON
    assert stored.history[-1].payload == {"reason": KEY_REASON, "with_caller": True, "reason_pending": True}
    assert stored.history[-1].actor == {"platform": "110", "site": "110", "agent": "2001"}
    assert await far.tickets.store.by_linkedid(TRUNK_UID) is None  # no new ticket
    call = far.calls.get(TRUNK_UID)
    assert call is not None and call.handover == call_state.RETURNING and far.actions == []
    # twice at once: refused, nothing changes
    assert await _press(far, TRUNK_UID, AGENT_UID, "PJSIP/agent2001-00000002") is None
    again = await far.tickets.store.get(ticket.id)
    assert again is not None and [e.type for e in again.history] == [e.type for e in stored.history]
    with pytest.raises(Conflict, match="already being transferred"):
        await far.returns.http_return(TRUNK_UID, "2001", "非警务事项")


async def test_the_console_returns_with_a_reason_and_refuses_what_is_no_return(
        tmp_path: Path, redis: aioredis.Redis) -> None:
    far, ticket = await _received(tmp_path, redis)
    with pytest.raises(InvalidInput, match="at most 1000"):
        await far.returns.http_return(TRUNK_UID, "2001", "x" * 1001)
    call = far.calls.get(TRUNK_UID)
    assert call is not None and call.handover == call_state.IDLE  # nothing changed
    # a call that did not arrive as a linked call here: nothing to return
    far.channel("1795934017.40", "1795934017.40", "PJSIP/citizen-00000003")
    far.channel("1795934017.41", "1795934017.40", "PJSIP/agent2002-00000004")
    with pytest.raises(Conflict, match="did not arrive here as a linked call"):
        await far.returns.http_return("1795934017.40", "2002", "非警务事项")
    hostile = '<script>alert(1)</script>"><img onerror=x>'
    returned = await far.returns.http_return(TRUNK_UID, "2001", f"非警务事项：{hostile}")
    assert returned.id == ticket.id and returned.return_reason == f"非警务事项：{hostile}"  # stored as text
    assert "reason_pending" not in returned.history[-1].payload


def _returned_by_110(ticket: Ticket) -> Event:
    return Event(new_event_id(), ticket.id, "returned", now_iso(), {"platform": "110", "site": "110", "agent": "2001"},
                 {"reason": "非警务事项", "with_caller": True})


async def _sent(tmp_path: Path, redis: aioredis.Redis) -> tuple[Side, Ticket]:
    """12345 whose caller is on the trunk to 110 after agent 1001's transfer."""
    near = Side(tmp_path, redis, "12345")
    near.channel(CITIZEN_UID, CITIZEN_UID, "PJSIP/citizen-00000001")
    near.channel(CITIZEN_AGENT_UID, CITIZEN_UID, "PJSIP/agent1001-00000002")
    near.calls.on_event({"Event": "BridgeEnter", "Uniqueid": CITIZEN_UID, "Linkedid": CITIZEN_UID})
    near.calls.on_event({"Event": "BridgeEnter", "Uniqueid": CITIZEN_AGENT_UID, "Linkedid": CITIZEN_UID})
    exten = await _press(near, CITIZEN_UID, CITIZEN_AGENT_UID, "PJSIP/agent1001-00000002")
    assert exten is not None and exten.startswith("110*")
    near.calls.on_event({"Event": "Hangup", "Uniqueid": CITIZEN_AGENT_UID, "Linkedid": CITIZEN_UID})
    near.channel(OUT_UID, CITIZEN_UID, "PJSIP/trunk-110-00000003")
    ticket = await near.tickets.store.get(exten.split("*")[1])
    assert ticket is not None
    return near, ticket


async def test_the_sender_takes_its_caller_back_to_the_agent_who_sent_it(tmp_path: Path, redis: aioredis.Redis) -> None:
    near, ticket = await _sent(tmp_path, redis)
    near.returns.on_change(ticket, _returned_by_110(ticket))
    await asyncio.gather(*near.returns.tasks)
    assert near.actions == [
        {"Action": "Setvar", "Channel": "PJSIP/citizen-00000001", "Variable": "LINKAGE_RECALL",
         "Value": "PJSIP/agent1001"},
        {"Action": "Redirect", "Channel": "PJSIP/citizen-00000001", "Context": "linkage-ring", "Exten": ticket.id,
         "Priority": "1"}]
    call = near.calls.get(CITIZEN_UID)
    assert call is not None and call.handover == call_state.IDLE  # back here: the agent may act again


async def test_a_busy_sender_gets_all_agents_and_a_caller_gone_gets_nothing(tmp_path: Path,
                                                                            redis: aioredis.Redis) -> None:
    near, ticket = await _sent(tmp_path, redis)
    near.channel("1795934017.50", "1795934017.50", "PJSIP/citizen-00000009")  # 1001 took another call
    near.channel("1795934017.51", "1795934017.50", "PJSIP/agent1001-0000000a")
    assert await near.returns.take_back(ticket) == ""
    assert near.actions[0]["Value"] == ""  # linkage-ring: the queue, then every agent
    near.actions.clear()
    near.calls.on_event({"Event": "Hangup", "Uniqueid": OUT_UID, "Linkedid": CITIZEN_UID})  # the trunk is gone
    assert await near.returns.take_back(ticket) is None and near.actions == []
    # an event authored here, or without the caller, takes nothing back
    mine = Event(new_event_id(), ticket.id, "returned", now_iso(), {"platform": "12345", "site": "12345"},
                 {"reason": "x", "with_caller": True})
    near.returns.on_change(ticket, mine)
    near.returns.on_change(ticket, Event(new_event_id(), ticket.id, "returned", now_iso(),
                                         {"platform": "110", "site": "110"}, {"reason": "x"}))
    assert near.returns.tasks == set()


async def test_pressing_again_toward_the_platform_that_returned_it_is_the_threeway(
        tmp_path: Path, redis: aioredis.Redis) -> None:
    near, ticket = await _sent(tmp_path, redis)
    for event_type in ("delivered", "signed_for"):  # 110 had signed for it before it returned it
        await near.tickets.apply_remote(Event(new_event_id(), ticket.id, event_type, now_iso(),
                                              {"platform": "110", "site": "110", "agent": "2001"}), sender="110")
    await near.tickets.apply_remote(_returned_by_110(ticket), sender="110")
    near.returns.on_change(ticket, _returned_by_110(ticket))
    await asyncio.gather(*near.returns.tasks)
    near.channel("1795934017.33", CITIZEN_UID, "PJSIP/agent1001-00000004")  # the caller is back with 1001

    async def escalate(linkedid: str, agent_uniqueid: str) -> Any:
        near.escalated.append((linkedid, agent_uniqueid))
        return ticket

    near.sending.escalate = escalate
    assert await _press(near, CITIZEN_UID, "1795934017.33", "PJSIP/agent1001-00000004") is None
    assert near.escalated == [(CITIZEN_UID, "1795934017.33")]
    # with the rule off it is a transfer again, and the new ticket names the one it carries on from
    near.config = near.sending.config = near.returns.config = _rule_off(near)
    exten = await _press(near, CITIZEN_UID, "1795934017.33", "PJSIP/agent1001-00000004")
    assert exten is not None
    again = await near.tickets.store.get(exten.split("*")[1])
    assert again is not None and again.parent == ticket.id


def _rule_off(side: Side) -> Any:
    import msgspec

    return msgspec.structs.replace(side.config, transfer=msgspec.structs.replace(side.config.transfer,
                                                                                return_threeway=False))


async def test_a_ticket_accepted_here_is_not_returned_by_the_key_but_transferred_on(
        tmp_path: Path, redis: aioredis.Redis) -> None:
    far, ticket = await _received(tmp_path, redis)
    await far.tickets.record(ticket.id, "accepted", "2001")
    exten = await _press(far, TRUNK_UID, AGENT_UID, "PJSIP/agent2001-00000002")
    assert exten is not None and exten.startswith("12345*")  # an onward transfer, with the ticket it came from
    onward = await far.tickets.store.get(exten.split("*")[1])
    assert onward is not None and onward.parent == ticket.id
    kept = await far.tickets.store.get(ticket.id)
    assert kept is not None and kept.status == "accepted"
