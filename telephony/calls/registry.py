"""Call tracking by Linkedid from AMI events (Newchannel, Newstate, BridgeEnter, Hangup).

Only values Asterisk produced are kept, and each is checked against a strict pattern before use, so an
event carrying odd text (a caller-chosen caller-id name, say) cannot leak into later AMI actions.

What an agent's leg goes through (its phone rings, it is bridged to the caller, it hangs up) is told, after
the registry applied it, to the `on_change` callable given at construction (the controller wires the console
stream there): a `CallChange`, a snapshot of the call at that moment. The call's ticket rides along (`ticket_of`): the
one the sending side created, else the one a linked call arrived with (`arrived`, from the receiving side).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from telephony.calls.state import IDLE
from telephony.errors import InvalidInput, NotFound
from telephony.ids import CALLER_NUMBER, CHANNEL, UNIQUEID


@dataclass
class Leg:
    uniqueid: str
    channel: str
    caller_number: str
    endpoint: str
    created: float
    state: str = ""
    bridged: bool = False  # entered a bridge (told once as "answered")


@dataclass
class Call:
    linkedid: str
    legs: dict[str, Leg] = field(default_factory=dict)
    bridged_at: float | None = None
    ticket_id: str | None = None
    handover: str = IDLE  # moved only by telephony.calls.state.move
    recovered: bool = False  # first seen in a resync: an earlier run of the controller may hold its ticket
    started_at: float = field(default_factory=time.time)
    caller_number: str = ""  # the number of the leg that started the call (the citizen, or the trunk from a peer)

    @property
    def transferring(self) -> bool:
        """Being handed over (or handed over already): a new transfer, three-way or consult is refused."""
        return self.handover != IDLE


@dataclass(frozen=True)
class CallChange:
    """An agent's leg of a call rang, was answered (bridged) or ended."""
    state: str  # ringing | answered | ended
    agent: str
    linkedid: str
    caller_number: str
    started_at: float
    bridged_at: float | None
    ticket_id: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"linkedid": self.linkedid, "caller_number": self.caller_number, "agent": self.agent,
                "started_at": self.started_at, "bridged_at": self.bridged_at, "ticket_id": self.ticket_id}


OnChange = Callable[[CallChange], None]


def _nothing(_: CallChange) -> None:
    return None


def endpoint_of(channel: str) -> str:
    """PJSIP/agent1001-0000002a -> agent1001."""
    if not channel.startswith("PJSIP/"):
        return ""
    return channel[6:].rsplit("-", 1)[0]


class CallRegistry:
    def __init__(self, max_calls: int = 10000, on_change: OnChange = _nothing) -> None:
        self.calls: dict[str, Call] = {}
        self.by_uniqueid: dict[str, str] = {}
        self.max_calls = max_calls
        self.on_change = on_change
        self.live = False  # True while the AMI link is up and this registry was rebuilt from Asterisk since
        # receiving side: linkedid -> the ticket a linked call arrived with over the trunk, while the call lasts
        self.received: dict[str, str] = {}

    def on_event(self, event: dict[str, str]) -> Call | None:
        name = event.get("Event", "")
        uniqueid = event.get("Uniqueid", "")
        linkedid = event.get("Linkedid", "")
        if not UNIQUEID.match(uniqueid) or not UNIQUEID.match(linkedid):
            return None
        if name == "Newchannel":
            channel = event.get("Channel", "")
            if not CHANNEL.match(channel) or len(self.by_uniqueid) >= self.max_calls * 4:
                return None
            number = event.get("CallerIDNum", "")
            new = self.calls.setdefault(linkedid, Call(linkedid))
            new.legs[uniqueid] = Leg(uniqueid, channel, number if CALLER_NUMBER.match(number) else "",
                                      endpoint_of(channel), time.time(), event.get("ChannelStateDesc", ""))
            if uniqueid == linkedid:
                new.caller_number = new.legs[uniqueid].caller_number
            self.by_uniqueid[uniqueid] = linkedid
            return new
        call = self.calls.get(linkedid)
        if call is None:
            return None
        leg = call.legs.get(uniqueid)
        ticket_id = self.ticket_of(call)  # read before a hang-up forgets the call
        told = ""
        if name == "BridgeEnter":
            if call.bridged_at is None:
                call.bridged_at = time.time()
            if leg is not None and not leg.bridged:
                leg.bridged, told = True, "answered"
        elif name == "Newstate" and leg is not None:
            state = event.get("ChannelStateDesc", "")
            told = "ringing" if state == "Ringing" and leg.state != "Ringing" else ""
            leg.state = state
        elif name == "Hangup":
            call.legs.pop(uniqueid, None)
            self.by_uniqueid.pop(uniqueid, None)
            if not call.legs:
                self.calls.pop(linkedid, None)
                self.received.pop(linkedid, None)
            told = "ended" if leg is not None else ""
        if told and leg is not None and leg.endpoint.startswith("agent"):
            self.on_change(CallChange(told, leg.endpoint.removeprefix("agent"), linkedid, self.caller_of(call),
                                      call.started_at, call.bridged_at, ticket_id))
        return call

    def arrived(self, linkedid: str, ticket_id: str) -> None:
        """A linked call was routed to an agent here with this ticket (the receiving side)."""
        if UNIQUEID.match(linkedid) and len(self.received) < self.max_calls:
            self.received[linkedid] = ticket_id

    def ticket_of(self, call: Call) -> str | None:
        """The call's ticket: the one sent from here, else the one it arrived with."""
        return call.ticket_id or self.received.get(call.linkedid)

    @staticmethod
    def caller_of(call: Call) -> str:
        """The number of whoever started the call; if that leg was not seen, the first other non-agent leg's."""
        if call.caller_number:
            return call.caller_number
        return next((leg.caller_number for leg in sorted(call.legs.values(), key=lambda g: g.created)
                     if not leg.endpoint.startswith("agent") and leg.caller_number), "")

    def resync(self, channels: list[dict[str, str]]) -> int:
        """Replace what we know with Asterisk's own list (CoreShowChannel events), after a reconnect or a
        controller restart. What we knew of calls that still exist (their ticket, a transfer in progress) is kept;
        calls that vanished meanwhile are dropped, so nothing stays "in transfer" forever."""
        old = self.calls
        self.clear()
        for ch in channels:
            uniqueid, linkedid, channel = ch.get("Uniqueid", ""), ch.get("Linkedid", ""), ch.get("Channel", "")
            if not (UNIQUEID.match(uniqueid) and UNIQUEID.match(linkedid) and CHANNEL.match(channel)):
                continue
            number = ch.get("CallerIDNum", "")
            call = self.calls.setdefault(linkedid, Call(linkedid, recovered=linkedid not in old or
                                                         old[linkedid].recovered))
            call.legs[uniqueid] = Leg(uniqueid, channel, number if CALLER_NUMBER.match(number) else "",
                                      endpoint_of(channel), time.time(), ch.get("ChannelStateDesc", ""),
                                      bridged=bool(ch.get("BridgeId")))
            if uniqueid == linkedid:
                call.caller_number = call.legs[uniqueid].caller_number
            self.by_uniqueid[uniqueid] = linkedid
            if ch.get("BridgeId") and call.bridged_at is None:
                call.bridged_at = time.time()
            if linkedid in old:
                call.ticket_id, call.handover = old[linkedid].ticket_id, old[linkedid].handover
        self.received = {k: v for k, v in self.received.items() if k in self.calls}
        return len(self.calls)

    def adopt(self, linkedid: str, agent_uniqueid: str, agent_channel: str, caller_number: str) -> Call | None:
        """A key press on a call we never heard of (the AMI link was down when it started): take what the AGI
        request says — the agent's leg, the call's linkedid, which is the citizen's own channel id, and the
        agent channel's connected line (the citizen's number) — so the transfer does not wait for AMI. The next resync
        replaces it with Asterisk's full picture."""
        if not (UNIQUEID.match(linkedid) and UNIQUEID.match(agent_uniqueid) and CHANNEL.match(agent_channel)):
            return None
        now = time.time()
        number = caller_number if CALLER_NUMBER.match(caller_number) else ""
        call = Call(linkedid, bridged_at=now, recovered=True, started_at=now, caller_number=number)
        call.legs[linkedid] = Leg(linkedid, "", number, "", now)
        call.legs[agent_uniqueid] = Leg(agent_uniqueid, agent_channel, "", endpoint_of(agent_channel), now, "Up",
                                        bridged=True)
        self.calls[linkedid] = call
        self.by_uniqueid[linkedid] = self.by_uniqueid[agent_uniqueid] = linkedid
        return call

    def busy(self) -> set[str]:
        """The endpoints (agent1001, trunk-110 …) with a live leg on some call."""
        return {leg.endpoint for c in self.calls.values() for leg in c.legs.values()}

    def get(self, linkedid: str) -> Call | None:
        return self.calls.get(linkedid)

    def active(self, linkedid: str) -> Call:
        """The live call a console names (404 otherwise)."""
        call = self.calls.get(linkedid)
        if call is None:
            raise NotFound("no active call with that linkedid", linkedid=linkedid)
        return call

    @staticmethod
    def agent_leg(call: Call, agent: str) -> Leg:
        """The leg of `agent` on the call a console names (400 when that agent is not on it)."""
        leg = next((g for g in call.legs.values() if g.endpoint == f"agent{agent}"), None)
        if leg is None:
            raise InvalidInput(f"agent {agent} is not on that call", linkedid=call.linkedid)
        return leg

    def call_of(self, uniqueid: str) -> Call | None:
        linkedid = self.by_uniqueid.get(uniqueid)
        return self.calls.get(linkedid) if linkedid else None

    def clear(self) -> None:
        self.calls.clear()
        self.by_uniqueid.clear()
