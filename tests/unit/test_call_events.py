"""Call events on the console stream, from recorded AMI events: the agent's phone rings, the agent is bridged
to the caller, the leg hangs up; each reaches that agent's stream and the site's, with the caller's number, and
nothing of it reaches the logs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from structlog.testing import capture_logs
from test_route_in_wait import _pushed, _sites

from telephony.api.stream import StreamHub, Subscriber
from telephony.calls.registry import CallRegistry
from telephony.transfers.receiving import ReceivingService

REDIS_DB = 13  # the unit conftest's `redis` fixture gives this database, emptied
LINKEDID = "1795934017.10"
CITIZEN = {"Uniqueid": LINKEDID, "Linkedid": LINKEDID, "Channel": "PJSIP/trunk-12345-00000001"}
AGENT = {"Uniqueid": "1795934017.11", "Linkedid": LINKEDID, "Channel": "PJSIP/agent2001-00000002"}
TRANSCRIPT = [
    {"Event": "Newchannel", **CITIZEN, "CallerIDNum": "13912345678", "ChannelStateDesc": "Ring"},
    {"Event": "Newchannel", **AGENT, "CallerIDNum": "2001", "ChannelStateDesc": "Down"},
    {"Event": "Newstate", **AGENT, "ChannelStateDesc": "Ringing"},
    {"Event": "Newstate", **AGENT, "ChannelStateDesc": "Ringing"},  # told again by Asterisk: one message
    {"Event": "Newstate", **AGENT, "ChannelStateDesc": "Up"},
    {"Event": "BridgeEnter", **CITIZEN, "BridgeUniqueid": "b1"},
    {"Event": "BridgeEnter", **AGENT, "BridgeUniqueid": "b1"},
    {"Event": "Hangup", **CITIZEN, "Cause": "16"},
    {"Event": "Hangup", **AGENT, "Cause": "16"},
]


def drain(sub: Subscriber) -> list[dict[str, Any]]:
    out = []
    while not sub.queue.empty():
        out.append(sub.queue.get_nowait())
    return out


def test_an_agents_call_rings_is_answered_and_ends_on_its_stream_and_the_sites() -> None:
    hub = StreamHub("110")
    calls = CallRegistry(on_change=hub.publish_call)
    agent, other, site = hub.subscribe("2001"), hub.subscribe("2002"), hub.subscribe(None)
    with capture_logs() as logs:
        for event in TRANSCRIPT:
            calls.on_event(event)
    messages = drain(agent)
    assert [(m["type"], m["site"], m["state"]) for m in messages] == [
        ("call", "110", "ringing"), ("call", "110", "answered"), ("call", "110", "ended")]
    ringing, answered, ended = (m["call"] for m in messages)
    assert set(ringing) == {"linkedid", "caller_number", "agent", "started_at", "bridged_at", "ticket_id"}
    assert (ringing["linkedid"], ringing["caller_number"], ringing["agent"]) == (LINKEDID, "13912345678", "2001")
    assert ringing["bridged_at"] is None and ringing["ticket_id"] is None
    assert isinstance(ringing["started_at"], float)
    assert answered["bridged_at"] is not None and answered["bridged_at"] >= ringing["started_at"]
    assert ended["caller_number"] == "13912345678"  # the caller hung up first: the number is still known
    assert drain(site) == messages and drain(other) == []
    assert "13912345678" not in repr(logs)
    assert calls.get(LINKEDID) is None


def test_the_ticket_of_the_call_rides_with_it() -> None:
    hub = StreamHub("12345")
    calls = CallRegistry(on_change=hub.publish_call)
    sub = hub.subscribe("2001")
    for event in TRANSCRIPT[:7]:
        calls.on_event(event)
    call = calls.get(LINKEDID)
    assert call is not None
    call.ticket_id = "37080020260101120000123456"  # what SendingService.start sets
    calls.on_event(TRANSCRIPT[-1])
    assert drain(sub)[-1]["call"]["ticket_id"] == "37080020260101120000123456"


def test_legs_that_are_not_agents_tell_nothing_and_nobody_listening_costs_nothing() -> None:
    hub = StreamHub("110")
    calls = CallRegistry(on_change=hub.publish_call)
    for event in TRANSCRIPT:
        calls.on_event(event)  # nobody subscribed: nothing rendered, nothing kept
    site = hub.subscribe(None)
    calls.on_event({"Event": "Newchannel", **CITIZEN, "CallerIDNum": "13912345678"})
    calls.on_event({"Event": "Newstate", **CITIZEN, "ChannelStateDesc": "Ringing"})
    calls.on_event({"Event": "Hangup", **CITIZEN})
    assert drain(site) == []


def test_a_registry_without_a_hook_works_as_before() -> None:
    calls = CallRegistry()
    for event in TRANSCRIPT[:7]:
        calls.on_event(event)
    call = calls.get(LINKEDID)
    assert call is not None and call.bridged_at is not None and call.caller_number == "13912345678"


async def _route_in(tmp_path: Path, redis: aioredis.Redis, calls: CallRegistry, trunk_uniqueid: str) -> str:
    """The receiving side (110) routes a linked call that arrives on `trunk_uniqueid` with its pushed ticket."""
    sender, far = _sites(tmp_path, redis)
    ticket = await _pushed(sender, redis, 7)
    await far.tickets.receive(ticket, via="push")
    receiving = ReceivingService(far.tickets.config, calls, far.tickets, {}, far.arrivals)
    route = await receiving.route(ticket.id, trunk_uniqueid, _no_call_info)
    assert route.dest.startswith("PJSIP/agent") and not route.relay
    return ticket.id


async def _no_call_info() -> str:
    return ""


async def test_a_linked_calls_messages_on_the_receiving_site_carry_its_ticket(
        tmp_path: Path, redis: aioredis.Redis) -> None:
    hub = StreamHub("110")
    calls = CallRegistry(on_change=hub.publish_call)
    agent = hub.subscribe("2001")
    calls.on_event(TRANSCRIPT[0])  # the trunk channel arrives; its dialplan runs route_in
    ticket_id = await _route_in(tmp_path, redis, calls, LINKEDID)
    for event in TRANSCRIPT[1:]:
        calls.on_event(event)
    messages = drain(agent)
    assert [m["state"] for m in messages] == ["ringing", "answered", "ended"]
    assert [m["call"]["ticket_id"] for m in messages] == [ticket_id] * 3


async def test_route_in_before_amis_newchannel_still_names_the_ticket(tmp_path: Path, redis: aioredis.Redis) -> None:
    """The FastAGI request outran the AMI event of the same channel: the ticket is kept by the call's linkedid
    and named as soon as the call is seen."""
    hub = StreamHub("110")
    calls = CallRegistry(on_change=hub.publish_call)
    site = hub.subscribe(None)
    ticket_id = await _route_in(tmp_path, redis, calls, LINKEDID)
    assert calls.get(LINKEDID) is None
    for event in TRANSCRIPT[:3]:
        calls.on_event(event)
    assert drain(site)[0]["call"]["ticket_id"] == ticket_id
    for event in TRANSCRIPT[3:]:
        calls.on_event(event)
    assert calls.received == {}  # forgotten with the call
    small = CallRegistry(max_calls=3)
    for n in range(10):  # ids told for calls that never show up are bounded
        small.arrived(f"1795934099.{n}", ticket_id)
    assert len(small.received) == 3
    small.arrived("not a uniqueid", ticket_id)
    assert "not a uniqueid" not in small.received
