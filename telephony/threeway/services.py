"""The three-way call and its negotiation.

The agent's key runs the `threeway` AGI: the ticket is stored (mode threeway), then over AMI the caller and the
agent are redirected into a ConfBridge named after the ticket and the other platform is dialled into it over the
trunk with the ticket (Local/<dial>*<id>@linkage-conf-out: the same headers and push as a one-key transfer).

Inside the conference either agent may press "my platform takes it" (the other agent is released) or "I leave".
The plan's rules decide when the agents do not: if both agents leave, or `decide_seconds` pass, the platform that
first received the call keeps the caller — unless the matter is an emergency, when the emergency platform
(`threeway.emergency_platform`, 110) keeps it. The outcome, who decided and which rule applied are a `decided`
event on the ticket, which the other side receives too. The rules are in `rules.py`, the room's and the
consultation's states in `state.py`; this module runs them against Asterisk.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterable
from typing import Any

import structlog

from telephony.ami import AmiSend
from telephony.calls import state as call_state
from telephony.calls.registry import CallRegistry
from telephony.config import SiteConfig
from telephony.errors import Conflict, InvalidInput, LinkageError
from telephony.ids import CHANNEL, TICKET_ID, UNIQUEID
from telephony.threeway import rules
from telephony.threeway.state import CONSULTING, RESERVED, SLOT_SECONDS, Consult, Room, can, move
from telephony.tickets.models import Ticket
from telephony.tickets.services import TicketService
from telephony.transfers.sending import SendingService
from telephony.waits import wait_event

log = structlog.get_logger("threeway")
HOOK_SETTLE = 0.2  # the longest wait for a key's Gosub to return before the channels are moved anyway
MAX_HOOKS = 1000  # hook-done marks kept for keys whose AGI answer has not been seen yet
FAR = re.compile(r"^(Local/[0-9*]+@linkage-conf-out-[0-9a-f]+;1|PJSIP/trunk-[0-9A-Za-z_-]+-[0-9a-f]+)$")


class ThreewayService:
    def __init__(self, config: SiteConfig, calls: CallRegistry, tickets: TicketService,
                 sending: SendingService, ami_send: AmiSend) -> None:
        self.config = config
        self.calls = calls
        self.tickets = tickets
        self.sending = sending
        self.ami_send = ami_send
        self.policy = rules.Policy(frozenset(config.threeway.emergency_categories),
                                   config.threeway.emergency_platform)
        self.rooms: dict[str, Room] = {}  # ticket id (= conference name) -> room, until closed or deserted
        self.consults: dict[str, Consult] = {}  # ticket id -> consultation, until it completes, cancels or expires
        self.tasks: set[asyncio.Task[Any]] = set()
        # agent uniqueid -> set when that channel's key Gosub returned (UserEvent LinkageHookDone / the prepared
        # LinkageThreeway, emitted by the dialplan right before its Return)
        self.hooks_done: dict[str, asyncio.Event] = {}

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)  # owned until done; cancelled on shutdown by close()
        task.add_done_callback(self.tasks.discard)
        return task

    def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()

    # ---- starting -----------------------------------------------------------------------------------
    def hook_done(self, agent_uniqueid: str) -> None:
        """The feature's Gosub on this agent channel is returning: a Redirect no longer lands inside it."""
        if len(self.hooks_done) > MAX_HOOKS:
            self.hooks_done = {k: v for k, v in self.hooks_done.items() if not v.is_set()}
        self.hooks_done.setdefault(agent_uniqueid, asyncio.Event()).set()

    async def _hook_returned(self, agent_uniqueid: str) -> None:
        """Wait until the key's Gosub returned (its UserEvent), at most HOOK_SETTLE: an async goto landing inside
        it drops the agent ("An async goto just messed up our execution location")."""
        try:
            await wait_event(self.hooks_done.setdefault(agent_uniqueid, asyncio.Event()), HOOK_SETTLE)
        finally:
            self.hooks_done.pop(agent_uniqueid, None)

    async def prepared_key(self, linkedid: str, agent_uniqueid: str) -> None:
        """UserEvent LinkageThreeway: the three-way key of a prepared call (no AGI: the dialplan told us and
        returned). The ticket takes the reserved id; the conference is assembled at once."""
        self.hook_done(agent_uniqueid)
        await self.key(linkedid, agent_uniqueid)

    async def key(self, linkedid: str, agent_uniqueid: str) -> None:
        """The three-way key on the agent's channel; a refusal keeps the call as it is."""
        try:
            await self.start(linkedid, agent_uniqueid)
        except LinkageError as exc:
            log.warning("threeway.refused", reason=exc.message)

    async def http_threeway(self, linkedid: str, agent: str) -> Ticket:
        """The console's three-way button: the same path as the key."""
        leg = self.calls.agent_leg(self.calls.active(linkedid), agent)
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
        ticket, exten = await self.sending.start(call, agent_uniqueid, target, mode="threeway")
        room = Room(ticket.id, caller_leg.channel, agent_leg.channel, ticket.agent_id, exten)
        self.rooms[ticket.id] = room
        self._spawn(self._assemble(room, agent_uniqueid))
        return ticket

    async def _assemble(self, room: Room, agent_uniqueid: str) -> None:
        structlog.contextvars.bind_contextvars(ticket_id=room.ticket_id)
        if not (CHANNEL.match(room.caller) and CHANNEL.match(room.agent)):
            return
        # The agent's channel is still inside the feature's Gosub when the AGI answers: wait for its return
        # (the dialplan's UserEvent right before it), not a fixed time. The console's button has no Gosub: the
        # wait then runs out (HOOK_SETTLE), as before.
        await self._hook_returned(agent_uniqueid)
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
        if can(room, rules.TIMEOUT):
            await self._by_rule(room, rules.TIMEOUT)

    # ---- attended (consultative) transfer ------------------------------------------------------------
    async def consult(self, linkedid: str, agent_uniqueid: str) -> None:
        """The consult key: the ticket is stored (mode attended), then Asterisk's attended transfer takes the
        agent to the other platform while the caller hears music. Hanging up (or the complete key) completes
        it; the abort key cancels it and brings the caller back — the ticket records which. A refusal keeps
        the call as it is."""
        try:
            await self.start_consult(linkedid, agent_uniqueid)
        except LinkageError as exc:
            log.warning("consult.refused", reason=exc.message)

    async def http_consult(self, linkedid: str, agent: str) -> Ticket:
        """The console's consult button: the same path as the key, but a refusal is raised for the console to
        show, not only logged."""
        leg = self.calls.agent_leg(self.calls.active(linkedid), agent)
        return await self.start_consult(linkedid, leg.uniqueid)

    def _free_slot(self) -> str | None:
        now = time.monotonic()
        for stale in [c for c in self.consults.values() if c.state == RESERVED and now - c.taken >= SLOT_SECONDS]:
            move(stale, "expired")  # the consultation never dialled
            self.consults.pop(stale.ticket_id, None)
        taken = {c.slot for c in self.consults.values() if c.state == RESERVED}
        return next((f"{n:04d}" for n in range(1000, 10000) if f"{n:04d}" not in taken), None)

    async def start_consult(self, linkedid: str, agent_uniqueid: str) -> Ticket:
        call = self.calls.get(linkedid) if UNIQUEID.match(linkedid) else None
        target = self.config.target(self.config.threeway.target)
        leg = call.legs.get(agent_uniqueid) if call else None
        if call is None or leg is None:
            raise InvalidInput("a consultation needs a call with this agent on it", linkedid=linkedid)
        if target is None or target.phone is not None:
            raise InvalidInput("the consultation's target must be a platform with a controller")
        if self._free_slot() is None:  # checked before the ticket is stored, and again once it is
            raise Conflict("no free consultation slot: too many consultations are dialling", linkedid=linkedid)
        ticket, exten = await self.sending.start(call, agent_uniqueid, target, mode="attended")
        slot = self._free_slot()
        if slot is None:
            raise Conflict("no free consultation slot: too many consultations are dialling", ticket_id=ticket.id)
        self.consults[ticket.id] = Consult(ticket.id, leg.channel, exten, slot, time.monotonic())
        self._spawn(self._consult(ticket.id, leg.channel, slot, agent_uniqueid))
        return ticket

    async def _consult(self, ticket_id: str, agent_channel: str, slot: str, agent_uniqueid: str) -> None:
        structlog.contextvars.bind_contextvars(ticket_id=ticket_id)
        await self._hook_returned(agent_uniqueid)
        if CHANNEL.match(agent_channel):
            await self.ami_send({"Action": "Atxfer", "Channel": agent_channel, "Exten": slot,
                                 "Context": "linkage-consult-out"})
            log.info("consult.started")

    def consult_dialled(self, slot: str, channel: str) -> str | None:
        """The consultation call (its Local channel) asks which ticket its 4-digit slot stands for: the
        extension to dial, or None for a slot nobody reserved (see linkage-consult-out)."""
        consult = next((c for c in self.consults.values() if c.state == RESERVED and c.slot == slot), None)
        if consult is None:
            log.warning("consult.unknown_slot")
            return None
        consult.local = channel.rsplit(";", 1)[0]  # Local/<slot>@linkage-consult-out-N
        move(consult, "dialled")
        return consult.exten

    @property
    def consulting(self) -> bool:
        return any(c.state == CONSULTING for c in self.consults.values())

    def _consults_on(self, channels: Iterable[str], transferers: Iterable[str] = ()) -> list[Consult]:
        """The running consultations an event is about: it names their Local channel (either half), or
        their agent transferred."""
        names, by = list(channels), set(transferers)
        return [c for c in self.consults.values() if c.state == CONSULTING
                and (any(n.startswith(c.local + ";") for n in names) or c.agent in by)]

    async def consult_transferred(self, success: bool, transferers: tuple[str, str], channels: Iterable[str]) -> None:
        """Asterisk's attended transfer ended: a success completes the consultation it is about."""
        for consult in self._consults_on(channels, transferers):
            if not success:
                continue
            structlog.contextvars.bind_contextvars(ticket_id=consult.ticket_id)
            move(consult, "completed")
            self.consults.pop(consult.ticket_id, None)
            await self._record_consult(consult.ticket_id, "transferred", {"mode": "attended", "result": "completed"})

    async def consult_hung_up(self, channel: str, uniqueid: str, channels: Iterable[str]) -> None:
        """A channel hung up: the consultation's own Local channel (;1) hanging up cancels it, and the caller
        is back with the agent."""
        for consult in self._consults_on(channels):
            if not channel.endswith(";1"):
                continue
            structlog.contextvars.bind_contextvars(ticket_id=consult.ticket_id)
            move(consult, "cancelled")
            self.consults.pop(consult.ticket_id, None)
            call = self.calls.call_of(uniqueid)
            if call is not None:
                call_state.move(call, "consult_cancelled")
            await self._record_consult(consult.ticket_id, "cancelled",
                                       {"reason": "the consultation ended without a transfer; the caller "
                                                  "is back with the agent"})

    async def _record_consult(self, ticket_id: str, event_type: str, payload: dict[str, str]) -> None:
        try:
            ticket = await self.tickets.record(ticket_id, event_type, "", payload)
            log.info("consult.outcome", outcome=event_type, status=ticket.status)
        except LinkageError as exc:
            log.warning("consult.not_recorded", reason=exc.message)

    # ---- negotiation --------------------------------------------------------------------------------
    async def conf_key(self, action: str, ticket_id: str, uniqueid: str) -> None:
        """A key pressed inside the conference `ticket_id` by the channel `uniqueid`."""
        room = self.rooms.get(ticket_id) if TICKET_ID.match(ticket_id) else None
        if room is None or action != "accept" or not can(room, rules.ACCEPTED):
            log.warning("threeway.key_ignored", action=action, reason="no open negotiation")
            return
        channel = next((c for c, u in room.members.items() if u == uniqueid), "")
        who = rules.presser(channel, room.agent, room.far)
        if who == rules.OURS:
            await self._decide(room, rules.Facts(rules.ACCEPTED, accepted_by=self.config.site.platform,
                                                 by=f"{self.config.site.name}/{room.agent_id}"))
        elif who == rules.THEIRS:
            target = self.config.target(self.config.threeway.target)
            await self._decide(room, rules.Facts(rules.ACCEPTED, accepted_by=target.platform if target else "",
                                                 by=target.name if target else ""))
        else:
            log.warning("threeway.key_ignored", reason="pressed by a channel that is not an agent")

    async def _by_rule(self, room: Room, why: str) -> None:
        ticket = await self.tickets.store.get(room.ticket_id)
        if ticket is None:
            return
        await self._decide(room, rules.Facts(why, category=ticket.category, first_receiver=ticket.source.platform))

    async def _decide(self, room: Room, facts: rules.Facts) -> None:
        if not can(room, facts.trigger):  # decided meanwhile (a key, the deadline and a departure can cross)
            return
        move(room, facts.trigger)
        if room.timer is not None and room.timer is not asyncio.current_task():
            room.timer.cancel()
        outcome = rules.decide(facts, self.policy)
        await self._record(room, outcome.payload())
        log.info("threeway.decided", keeper=outcome.keeper, rule=outcome.rule, by=outcome.by)
        ours = outcome.keeper == self.config.site.platform
        release = rules.release(ours, room.agent, room.far, room.members)
        if release:
            await self.ami_send({"Action": "ConfbridgeKick", "Conference": room.ticket_id, "Channel": release})
        # the keeper's agent already left: bring the caller to that platform instead of leaving them alone
        rescue = rules.rescue(ours, room.agent, room.far, room.caller, room.members)
        if rescue == rules.HERE:
            await self.ami_send({"Action": "Redirect", "Channel": room.caller, "Context": "linkage-ring",
                                 "Exten": room.ticket_id, "Priority": "1"})
        elif rescue == rules.THERE:
            await self.ami_send({"Action": "Redirect", "Channel": room.caller, "Context": "linkage-out",
                                 "Exten": room.far_dial, "Priority": "1"})

    def joined(self, conference: str, channel: str, uniqueid: str) -> None:
        """A channel entered a conference: the other platform's leg, when it is the far one."""
        room = self.rooms.get(conference)
        if room is None:
            return
        structlog.contextvars.bind_contextvars(ticket_id=room.ticket_id)
        room.members[channel] = uniqueid
        if FAR.match(channel):
            room.far = channel
            if can(room, "far_joined"):
                move(room, "far_joined")

    async def left(self, conference: str, channel: str) -> None:
        """A channel left a conference: the caller leaving ends it; both agents leaving decides it by rule."""
        room = self.rooms.get(conference)
        if room is None:
            return
        structlog.contextvars.bind_contextvars(ticket_id=room.ticket_id)
        room.members.pop(channel, None)
        if channel in (room.agent, room.far):
            room.agents_left.add(channel)
        if channel == room.caller:
            undecided = room.open
            move(room, rules.CALLER_LEFT)
            if undecided:
                if room.timer is not None:
                    room.timer.cancel()
                await self._record(room, rules.decide(rules.Facts(rules.CALLER_LEFT), self.policy).payload())
            self.rooms.pop(room.ticket_id, None)
            return
        if room.open and rules.both_agents_left(room.agent, room.far, room.agents_left):
            await self._by_rule(room, rules.BOTH_LEFT)
        if not room.members and can(room, "emptied"):
            move(room, "emptied")
            self.rooms.pop(room.ticket_id, None)

    async def _record(self, room: Room, payload: dict[str, str]) -> None:
        try:
            await self.tickets.record(room.ticket_id, "decided", "", payload)
        except LinkageError as exc:
            log.warning("threeway.not_recorded", reason=exc.message)
