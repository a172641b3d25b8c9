"""The three-way call and its negotiation.

The agent's key runs the `threeway` AGI: the ticket is stored (mode threeway), then over AMI the caller and the
agent are redirected into a ConfBridge named after the ticket and the other platform is dialled into it over the
trunk with the ticket (Local/<dial>*<id>@linkage-conf-out: the same headers and push as a one-key transfer).

Inside the conference either agent may press "my platform takes it" (the other agent is released) or "I leave".
The plan's rules decide when the agents do not: if both agents leave, or `decide_seconds` pass, the platform that
first received the call keeps the caller — unless the matter is an emergency, when 110 keeps it. The outcome,
who decided and which rule applied are a `decided` event on the ticket, which the other side receives too.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from typing import Any

import structlog

from telephony.agi.server import AgiRequest
from telephony.calls.registry import CallRegistry
from telephony.config import SiteConfig
from telephony.errors import Conflict, InvalidInput, LinkageError, NotFound
from telephony.ids import CHANNEL, TICKET_ID, UNIQUEID
from telephony.tickets.models import Ticket
from telephony.tickets.services import TicketService
from telephony.transfers.services import AmiSend, TransferService

log = structlog.get_logger("threeway")
HOOK_SETTLE = 0.2
FAR = re.compile(r"^(Local/[0-9*]+@linkage-conf-out-[0-9a-f]+;1|PJSIP/trunk-[0-9A-Za-z_-]+-[0-9a-f]+)$")


@dataclass
class Room:
    ticket_id: str
    caller: str  # channel names
    agent: str
    agent_id: str
    far_dial: str
    members: dict[str, str] = field(default_factory=dict)  # channel -> uniqueid, while in the conference
    far: str = ""
    decided: bool = False
    agents_left: set[str] = field(default_factory=set)
    timer: asyncio.Task[None] | None = None


class ThreewayService:
    def __init__(self, config: SiteConfig, calls: CallRegistry, tickets: TicketService,
                 transfers: TransferService, ami_send: AmiSend) -> None:
        self.config = config
        self.calls = calls
        self.tickets = tickets
        self.transfers = transfers
        self.ami_send = ami_send
        self.rooms: dict[str, Room] = {}
        self.consults: dict[str, str] = {}  # ticket id -> the consultation's Local channel (once it dials)
        self.slots: dict[str, tuple[str, str, float]] = {}  # 4-digit slot -> (<dial>*<ticket id>, ticket id, when)
        self.consult_agents: dict[str, str] = {}  # ticket id -> the consulting agent's channel
        self.tasks: set[asyncio.Task[Any]] = set()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)  # owned until done; cancelled on shutdown by close()
        task.add_done_callback(self.tasks.discard)
        return task

    def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()

    # ---- starting -----------------------------------------------------------------------------------
    async def agi_threeway(self, request: AgiRequest) -> None:
        linkedid = request.arg(0)
        structlog.contextvars.bind_contextvars(call_id=linkedid)
        try:
            await self.start(linkedid, request.uniqueid)
        except LinkageError as exc:
            log.warning("threeway.refused", reason=exc.message)

    async def http_threeway(self, linkedid: str, agent: str) -> Ticket:
        """The console's three-way button: the same path as the key."""
        call = self.calls.get(linkedid)
        if call is None:
            raise NotFound("no active call with that linkedid", linkedid=linkedid)
        leg = next((g for g in call.legs.values() if g.endpoint == f"agent{agent}"), None)
        if leg is None:
            raise InvalidInput(f"agent {agent} is not on that call", linkedid=linkedid)
        return await self.start(linkedid, leg.uniqueid)

    async def start(self, linkedid: str, agent_uniqueid: str) -> Ticket:
        call = self.calls.get(linkedid) if UNIQUEID.match(linkedid) else None
        target = self.config.target(self.config.threeway.target)
        agent_leg = call.legs.get(agent_uniqueid) if call else None
        caller_leg = next((g for g in call.legs.values() if g.uniqueid != agent_uniqueid), None) if call else None
        if call is None or agent_leg is None or caller_leg is None:
            raise InvalidInput("a three-way call needs an answered call between a caller and this agent")
        if target is None or target.phone is not None:
            raise InvalidInput("the three-way target must be a platform with a controller")
        if call.bridged_at is None:
            raise Conflict("the call is not answered yet", linkedid=linkedid)
        ticket, exten = await self.transfers.start_transfer(call, agent_uniqueid, target, mode="threeway")
        room = Room(ticket.id, caller_leg.channel, agent_leg.channel, ticket.agent_id, exten)
        self.rooms[ticket.id] = room
        self._spawn(self._assemble(room))
        return ticket

    async def _assemble(self, room: Room) -> None:
        structlog.contextvars.bind_contextvars(ticket_id=room.ticket_id)
        if not (CHANNEL.match(room.caller) and CHANNEL.match(room.agent)):
            return
        # The agent's channel is still inside the feature's Gosub when the AGI answers; an async goto landing
        # there drops the agent ("An async goto just messed up our execution location"). The hook returns within
        # milliseconds of the AGI, so wait a little before moving both channels.
        await asyncio.sleep(HOOK_SETTLE)
        await self.ami_send({"Action": "Redirect", "Channel": room.caller, "Context": "linkage-conf-caller",
                             "Exten": room.ticket_id, "Priority": "1", "ExtraChannel": room.agent,
                             "ExtraContext": "linkage-conf-agent", "ExtraExten": room.ticket_id,
                             "ExtraPriority": "1"})
        # Only config values and the digits-only ticket id reach Originate (CVE-2024-42365).
        await self.ami_send({"Action": "Originate", "Channel": f"Local/{room.far_dial}@linkage-conf-out",
                             "Context": "linkage-conf-agent", "Exten": room.ticket_id, "Priority": "1",
                             "Timeout": str(self.config.transfer.ring_timeout * 1000), "Async": "true"})
        log.info("threeway.started", far=room.far_dial.split("*")[0])
        room.timer = self._spawn(self._deadline(room))

    async def _deadline(self, room: Room) -> None:
        await asyncio.sleep(self.config.threeway.decide_seconds)
        if not room.decided:
            await self._by_rule(room, "timeout")

    # ---- attended (consultative) transfer ------------------------------------------------------------
    async def agi_consult(self, request: AgiRequest) -> None:
        """The consult key: the ticket is stored (mode attended), then Asterisk's attended transfer takes the
        agent to the other platform while the caller hears music. Hanging up (or the complete key) completes
        it; the abort key cancels it and brings the caller back — the ticket records which."""
        linkedid = request.arg(0)
        structlog.contextvars.bind_contextvars(call_id=linkedid)
        call = self.calls.get(linkedid) if UNIQUEID.match(linkedid) else None
        target = self.config.target(self.config.threeway.target)
        leg = call.legs.get(request.uniqueid) if call else None
        if call is None or leg is None or target is None or target.phone is not None:
            log.warning("consult.refused", reason="unknown call, agent or target")
            return
        try:
            ticket, exten = await self.transfers.start_transfer(call, request.uniqueid, target, mode="attended")
        except LinkageError as exc:
            log.warning("consult.refused", reason=exc.message)
            return
        self.consult_agents[ticket.id] = leg.channel
        now = time.monotonic()
        self.slots = {k: v for k, v in self.slots.items() if now - v[2] < 120}  # consultations never dialled
        slot = next((f"{n:04d}" for n in range(1000, 10000) if f"{n:04d}" not in self.slots), None)
        if slot is None:
            log.warning("consult.refused", reason="no free consultation slot")
            return
        self.slots[slot] = (exten, ticket.id, now)
        self._spawn(self._consult(ticket.id, leg.channel, slot))

    async def _consult(self, ticket_id: str, agent_channel: str, slot: str) -> None:
        structlog.contextvars.bind_contextvars(ticket_id=ticket_id)
        await asyncio.sleep(HOOK_SETTLE)
        if CHANNEL.match(agent_channel):
            await self.ami_send({"Action": "Atxfer", "Channel": agent_channel, "Exten": slot,
                                 "Context": "linkage-consult-out"})
            log.info("consult.started")

    async def agi_consult_out(self, request: AgiRequest) -> None:
        """The consultation call asks which ticket its 4-digit slot stands for (see linkage-consult-out)."""
        found = self.slots.pop(request.arg(0), None)
        if found is None:
            log.warning("consult.unknown_slot")
            return
        exten, ticket_id, _ = found
        self.consults[ticket_id] = request.channel.rsplit(";", 1)[0]  # Local/<slot>@linkage-consult-out-N
        await request.set_variable("LINKAGE_CONSULT", exten)

    async def _on_consult_event(self, event: dict[str, str]) -> None:
        name = event.get("Event", "")
        for ticket_id, local in list(self.consults.items()):
            agent = self.consult_agents.get(ticket_id, "")
            ours = any(v.startswith(local + ";") for v in event.values()) or (
                name == "AttendedTransfer" and agent in (event.get("OrigTransfererChannel"),
                                                          event.get("SecondTransfererChannel")))
            if not ours:
                continue
            structlog.contextvars.bind_contextvars(ticket_id=ticket_id)
            if name == "AttendedTransfer" and event.get("Result") == "Success":
                self.consults.pop(ticket_id, None)
                self.consult_agents.pop(ticket_id, None)
                await self._record_consult(ticket_id, "transferred", {"mode": "attended", "result": "completed"})
            elif name == "Hangup" and event.get("Channel", "").endswith(";1"):
                self.consults.pop(ticket_id, None)
                self.consult_agents.pop(ticket_id, None)
                call = self.calls.call_of(event.get("Uniqueid", ""))
                if call is not None:
                    call.transferring = False
                await self._record_consult(ticket_id, "cancelled",
                                           {"reason": "the consultation ended without a transfer; the caller "
                                                      "is back with the agent"})

    async def _record_consult(self, ticket_id: str, event_type: str, payload: dict[str, str]) -> None:
        try:
            ticket = await self.tickets.record(ticket_id, event_type, "", payload)
            log.info("consult.outcome", outcome=event_type, status=ticket.status)
        except LinkageError as exc:
            log.warning("consult.not_recorded", reason=exc.message)

    # ---- negotiation --------------------------------------------------------------------------------
    async def agi_conf_key(self, request: AgiRequest) -> None:
        action, ticket_id, uniqueid = request.arg(0), request.arg(1), request.arg(2)
        room = self.rooms.get(ticket_id) if TICKET_ID.match(ticket_id) else None
        structlog.contextvars.bind_contextvars(ticket_id=ticket_id)
        if room is None or action != "accept" or room.decided:
            log.warning("threeway.key_ignored", action=action, reason="no open negotiation")
            return
        channel = next((c for c, u in room.members.items() if u == uniqueid), "")
        if channel == room.agent:
            await self._decide(room, self.config.site.platform, "agreed", f"{self.config.site.name}/{room.agent_id}")
        elif channel and channel == room.far:
            target = self.config.target(self.config.threeway.target)
            await self._decide(room, target.platform if target else "", "agreed", f"{target.name if target else ''}")
        else:
            log.warning("threeway.key_ignored", reason="pressed by a channel that is not an agent")

    def _emergency(self, category: str) -> bool:
        return category in self.config.threeway.emergency_categories

    async def _by_rule(self, room: Room, why: str) -> None:
        ticket = await self.tickets.store.get(room.ticket_id)
        if ticket is None:
            return
        if self._emergency(ticket.category):
            keeper, rule = "110", "emergency_110"  # 110及时派警先行处置
        else:
            keeper, rule = ticket.source.platform, "first_receiver"  # 首接先行受理
        await self._decide(room, keeper, rule, why)

    async def _decide(self, room: Room, keeper: str, rule: str, by: str) -> None:
        if room.decided:
            return
        room.decided = True
        if room.timer is not None and room.timer is not asyncio.current_task():
            room.timer.cancel()
        await self._record(room, {"keeper": keeper, "rule": rule, "by": by})
        log.info("threeway.decided", keeper=keeper, rule=rule, by=by)
        ours = keeper == self.config.site.platform
        release = room.far if ours else room.agent
        if release and release in room.members:
            await self.ami_send({"Action": "ConfbridgeKick", "Conference": room.ticket_id, "Channel": release})
        keeper_present = (room.agent if ours else room.far) in room.members
        if not keeper_present and room.caller in room.members:
            # the keeper's agent already left: bring the caller to that platform instead of leaving them alone
            if ours:
                await self.ami_send({"Action": "Redirect", "Channel": room.caller, "Context": "linkage-ring",
                                     "Exten": room.ticket_id, "Priority": "1"})
            else:
                await self.ami_send({"Action": "Redirect", "Channel": room.caller, "Context": "linkage-out",
                                     "Exten": room.far_dial, "Priority": "1"})

    async def on_ami_event(self, event: dict[str, str]) -> None:
        name = event.get("Event", "")
        if self.consults and name in ("AttendedTransfer", "Hangup"):
            await self._on_consult_event(event)
        if name not in ("ConfbridgeJoin", "ConfbridgeLeave"):
            return
        room = self.rooms.get(event.get("Conference", ""))
        if room is None:
            return
        channel, uniqueid = event.get("Channel", ""), event.get("Uniqueid", "")
        structlog.contextvars.bind_contextvars(ticket_id=room.ticket_id)
        if name == "ConfbridgeJoin":
            room.members[channel] = uniqueid
            if FAR.match(channel):
                room.far = channel
            return
        room.members.pop(channel, None)
        if channel in (room.agent, room.far):
            room.agents_left.add(channel)
        if channel == room.caller:
            if not room.decided:
                room.decided = True
                if room.timer is not None:
                    room.timer.cancel()
                await self._record(room, {"keeper": "", "rule": "caller_left", "by": "caller"})
            self.rooms.pop(room.ticket_id, None)
        elif not room.decided and room.far and room.agent in room.agents_left and room.far in room.agents_left:
            await self._by_rule(room, "both_left")
        if not room.members:
            self.rooms.pop(room.ticket_id, None)

    async def _record(self, room: Room, payload: dict[str, str]) -> None:
        try:
            await self.tickets.record(room.ticket_id, "decided", "", payload)
        except LinkageError as exc:
            log.warning("threeway.not_recorded", reason=exc.message)
