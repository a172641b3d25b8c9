"""Call tracking by Linkedid from AMI events (Newchannel, Newstate, BridgeEnter, Hangup).

Only values Asterisk produced are kept, and each is checked against a strict pattern before use, so an
event carrying odd text (a caller-chosen caller-id name, say) cannot leak into later AMI actions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from telephony.calls.state import IDLE
from telephony.ids import CALLER_NUMBER, CHANNEL, UNIQUEID


@dataclass
class Leg:
    uniqueid: str
    channel: str
    caller_number: str
    endpoint: str
    created: float
    state: str = ""


@dataclass
class Call:
    linkedid: str
    legs: dict[str, Leg] = field(default_factory=dict)
    bridged_at: float | None = None
    ticket_id: str | None = None
    handover: str = IDLE  # moved only by telephony.calls.state.move
    recovered: bool = False  # first seen in a resync: an earlier run of the controller may hold its ticket

    @property
    def transferring(self) -> bool:
        """Being handed over (or handed over already): a new transfer, three-way or consult is refused."""
        return self.handover != IDLE


def endpoint_of(channel: str) -> str:
    """PJSIP/agent1001-0000002a -> agent1001."""
    if not channel.startswith("PJSIP/"):
        return ""
    return channel[6:].rsplit("-", 1)[0]


class CallRegistry:
    def __init__(self, max_calls: int = 10000) -> None:
        self.calls: dict[str, Call] = {}
        self.by_uniqueid: dict[str, str] = {}
        self.max_calls = max_calls
        self.live = False  # True while the AMI link is up and this registry was rebuilt from Asterisk since

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
            self.by_uniqueid[uniqueid] = linkedid
            return new
        call = self.calls.get(linkedid)
        if call is None:
            return None
        if name == "BridgeEnter" and call.bridged_at is None:
            call.bridged_at = time.time()
        elif name == "Newstate" and uniqueid in call.legs:
            call.legs[uniqueid].state = event.get("ChannelStateDesc", "")
        elif name == "Hangup":
            call.legs.pop(uniqueid, None)
            self.by_uniqueid.pop(uniqueid, None)
            if not call.legs:
                self.calls.pop(linkedid, None)
        return call

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
                                      endpoint_of(channel), time.time(), ch.get("ChannelStateDesc", ""))
            self.by_uniqueid[uniqueid] = linkedid
            if ch.get("BridgeId") and call.bridged_at is None:
                call.bridged_at = time.time()
            if linkedid in old:
                call.ticket_id, call.handover = old[linkedid].ticket_id, old[linkedid].handover
        return len(self.calls)

    def adopt(self, linkedid: str, agent_uniqueid: str, agent_channel: str, caller_number: str) -> Call | None:
        """A key press on a call we never heard of (the AMI link was down when it started): take what the AGI
        request says — the agent's leg, the call's linkedid, which is the citizen's own channel id, and the
        agent channel's connected line (the citizen's number) — so the transfer does not wait for AMI. The next resync
        replaces it with Asterisk's full picture."""
        if not (UNIQUEID.match(linkedid) and UNIQUEID.match(agent_uniqueid) and CHANNEL.match(agent_channel)):
            return None
        now = time.time()
        call = Call(linkedid, bridged_at=now, recovered=True)
        call.legs[linkedid] = Leg(linkedid, "", caller_number if CALLER_NUMBER.match(caller_number) else "", "", now)
        call.legs[agent_uniqueid] = Leg(agent_uniqueid, agent_channel, "", endpoint_of(agent_channel), now, "Up")
        self.calls[linkedid] = call
        self.by_uniqueid[linkedid] = self.by_uniqueid[agent_uniqueid] = linkedid
        return call

    def get(self, linkedid: str) -> Call | None:
        return self.calls.get(linkedid)

    def call_of(self, uniqueid: str) -> Call | None:
        linkedid = self.by_uniqueid.get(uniqueid)
        return self.calls.get(linkedid) if linkedid else None

    def clear(self) -> None:
        self.calls.clear()
        self.by_uniqueid.clear()
