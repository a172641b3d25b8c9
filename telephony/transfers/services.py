"""Transfer decisions (FastAGI and HTTP) and the call-side facts recorded on tickets (AMI).

Sending side: a transfer key runs the `onekey` AGI on the agent's channel with the target's name. The controller
builds the ticket, stores it durably, and answers with the transfer extension `<dial>*<ticket id>`; the dialplan
does the BlindTransfer. The HTTP route `POST /v1/calls/{linkedid}/transfer` takes the same path and asks Asterisk
for the BlindTransfer over AMI. The push to the peer happens afterwards in the delivery worker.

Receiving side: the `route_in` AGI runs on the trunk channel. It makes sure the ticket is here (pushed, or
fetched by the Call-Info reference within a short timeout), then either names the agent to ring, or — on a city
site — passes the call on: down to the county site that owns the ticket's division, or up towards the target of
a county's ticket. AMI DialBegin/DialEnd on that channel become offered, signed_for (签收) and abandoned.
"""

from __future__ import annotations

import asyncio
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import structlog

from telephony.agi.server import AgiRequest
from telephony.calls.registry import Call, CallRegistry, endpoint_of
from telephony.config import SiteConfig, Target
from telephony.delivery.client import PeerClient, PeerError
from telephony.errors import Conflict, InvalidInput, LinkageError, NotFound
from telephony.ids import CALLER_NUMBER, CHANNEL, TICKET_ID, UNIQUEID
from telephony.tickets.models import Ticket, parse_ticket
from telephony.tickets.services import TicketService
from telephony.tickets.store import STORE_ERRORS
from telephony.waits import wait_event

log = structlog.get_logger("transfers")
CALL_INFO = re.compile(r"<(https?://[^>\s]{1,300})>")
FAILURE_REASONS = {
    "BUSY": "target busy",
    "NOANSWER": "no answer in time",
    "CHANUNAVAIL": "target unreachable (trunk or far PBX down)",
    "CONGESTION": "target congested or refused the call",
}
AmiSend = Any  # async callable taking an action dict
RECENT_LANDED = 256  # pushed tickets kept for the call that follows each


@dataclass(frozen=True)
class Route:
    dest: str
    relay: bool


class TransferService:
    def __init__(self, config: SiteConfig, calls: CallRegistry, tickets: TicketService,
                 peers: dict[str, PeerClient], ami_send: AmiSend = None) -> None:
        self.config = config
        self.calls = calls
        self.tickets = tickets
        self.peers = peers
        self.ami_send = ami_send
        self.drafts: dict[str, dict[str, str]] = {}
        self.inbound: dict[str, str] = {}  # trunk channel uniqueid -> ticket id, on the receiving side
        self.arrivals: dict[str, asyncio.Event] = {}  # ticket id -> set when its push lands here
        self.landed: dict[str, Ticket] = {}  # ticket id -> the pushed ticket, for the route_in waiting on it
        # The last pushed tickets that landed here, for the call that follows each within milliseconds: it takes
        # its ticket from here instead of reading it back from Redis. Bounded: memory stays flat.
        self.recent: OrderedDict[str, Ticket] = OrderedDict()
        tickets.landing.append(self._on_landing)

    def _on_landing(self, ticket: Ticket) -> None:
        """A peer's ticket is verified and about to be stored: a route_in waiting for it goes on with it now
        (it only reads where the ticket goes; anything that changes the ticket waits for the write)."""
        self.recent[ticket.id] = ticket
        self.recent.move_to_end(ticket.id)
        while len(self.recent) > RECENT_LANDED:
            self.recent.popitem(last=False)
        waiting = self.arrivals.get(ticket.id)
        if waiting is not None:
            self.landed[ticket.id] = ticket
            waiting.set()

    # ---- sending side -------------------------------------------------------------------------------
    async def start_transfer(self, call: Call, agent_uniqueid: str, target: Target,
                             mode: str = "transfer") -> tuple[Ticket, str]:
        """Build and store the ticket; returns it and the transfer extension. Shared by key and HTTP."""
        if call.transferring:
            raise Conflict("this call is already being transferred", ticket_id=call.ticket_id or "")
        agent_leg = call.legs.get(agent_uniqueid)
        if agent_leg is None or not agent_leg.endpoint.startswith("agent"):
            raise InvalidInput("that channel is not an agent's leg of the call")
        agent_id = agent_leg.endpoint.removeprefix("agent")
        caller = next((leg for leg in call.legs.values() if leg.uniqueid != agent_uniqueid), None)
        caller_number = caller.caller_number if caller and CALLER_NUMBER.match(caller.caller_number) else ""
        path = [self.config.site.name, target.via, target.name] if target.via else [self.config.site.name, target.name]
        call.transferring = True
        try:
            resumed = await self._resume(call, target, mode) if call.recovered and call.ticket_id is None else None
            if resumed is not None:
                return resumed
            ticket = await self.tickets.create(
                target_site=target.name, target_platform=target.platform, caller_number=caller_number,
                agent_id=agent_id if agent_id.isdigit() else "", linkedid=call.linkedid,
                uniqueids=sorted(call.legs), draft=self.drafts.pop(call.linkedid, {}), path=path, mode=mode,
                recording=f"linkage-{caller.uniqueid}.wav" if caller else "")
        except Exception:
            call.transferring = False
            raise
        call.ticket_id = ticket.id
        structlog.contextvars.bind_contextvars(ticket_id=ticket.id)
        log.info("transfer.started", target=target.name)
        return ticket, f"{target.dial}*{ticket.id}"

    async def _resume(self, call: Call, target: Target, mode: str) -> tuple[Ticket, str] | None:
        """A call this run of the controller learnt from Asterisk after a restart: if the previous run stored a
        ticket for it and died before the call moved (killed between the write and the AGI answer), the agent's
        next press sends that ticket again instead of making a second one. Anything past `delivered` is a new
        transfer (a failed one was recalled, say), as before the restart."""
        ticket_id = await self.tickets.store.by_linkedid(call.linkedid)
        ticket = await self.tickets.store.get(ticket_id) if ticket_id else None
        if (ticket is None or ticket.source.site != self.config.site.name or ticket.target.site != target.name
                or ticket.mode != mode or {e.type for e in ticket.history} - {"created", "delivered"}):
            return None
        call.ticket_id = ticket.id
        structlog.contextvars.bind_contextvars(ticket_id=ticket.id)
        log.info("transfer.resumed", target=target.name)
        return ticket, f"{target.dial}*{ticket.id}"

    async def agi_onekey(self, request: AgiRequest) -> None:
        linkedid, target_name = request.arg(0), request.arg(1) or (
            self.config.targets[0].name if self.config.targets else "")
        structlog.contextvars.bind_contextvars(call_id=linkedid)
        call = self.calls.get(linkedid) if UNIQUEID.match(linkedid) else None
        target = self.config.target(target_name)
        if call is None and target is not None and not self.calls.live:
            # AMI is down (or has not resynced yet): the AGI request itself tells us enough to transfer. The
            # agent's channel's own caller ID is the agent; the citizen is its connected line.
            call = self.calls.adopt(linkedid, request.uniqueid, request.channel,
                                    await request.get_variable("${CONNECTEDLINE(num)}"))
            if call is not None:
                log.warning("onekey.call_adopted", reason="call not seen on AMI")
        if call is None or target is None:
            log.warning("onekey.unknown_call", reason="no such call" if target else "no such target")
            return  # LINKAGE_XFER stays empty: the dialplan keeps the call with the agent
        try:
            _, exten = await self.start_transfer(call, request.uniqueid, target)
        except LinkageError as exc:
            log.warning("onekey.refused", reason=exc.message)
            return
        except STORE_ERRORS as exc:  # nothing stored, so the call stays with the agent, who can press again
            log.error("onekey.store_unavailable", error=exc.__class__.__name__)
            return
        await request.set_variable("LINKAGE_XFER", exten)

    async def http_transfer(self, linkedid: str, target_name: str, agent: str) -> Ticket:
        """The console's transfer button: the same ticket path as the key, then BlindTransfer over AMI."""
        call = self.calls.get(linkedid)
        if call is None:
            raise NotFound("no active call with that linkedid", linkedid=linkedid)
        if call.transferring:  # first: once transferred the agent's leg is gone, and this is the clearer answer
            raise Conflict("this call is already being transferred", ticket_id=call.ticket_id or "")
        target = self.config.target(target_name)
        if target is None:
            raise InvalidInput(f"unknown transfer target {target_name!r}",
                               targets=[t.name for t in self.config.targets])
        leg = next((g for g in call.legs.values() if g.endpoint == f"agent{agent}"), None)
        if leg is None:
            raise InvalidInput(f"agent {agent} is not on that call", linkedid=linkedid)
        if call.bridged_at is None:
            raise Conflict("the call is not answered yet", linkedid=linkedid)
        ticket, exten = await self.start_transfer(call, leg.uniqueid, target)
        if not CHANNEL.match(leg.channel) or self.ami_send is None:
            raise Conflict("cannot reach the PBX for this transfer")
        reply = await self.ami_send({"Action": "BlindTransfer", "Channel": leg.channel, "Exten": exten,
                                     "Context": "linkage-out"})
        if getattr(reply, "success", True) is False:
            call.transferring = False
            await self.tickets.record(ticket.id, "transfer_failed", agent,
                                      {"reason": "the PBX refused the transfer"})
            raise Conflict("the PBX refused the transfer", ticket_id=ticket.id)
        return ticket

    async def agi_transfer_failed(self, request: AgiRequest) -> None:
        """The caller's Dial to the target ended without an answer: mark the ticket transfer_failed with a
        discrepancy record and name who gets the caller back (the agent who pressed, if still free)."""
        ticket_id, dial_status, linkedid = request.arg(0), request.arg(1).upper(), request.arg(2)
        structlog.contextvars.bind_contextvars(call_id=linkedid, ticket_id=ticket_id)
        call = self.calls.get(linkedid) if UNIQUEID.match(linkedid) else None
        if call is not None:
            call.transferring = False
        ticket = await self.tickets.store.get(ticket_id) if TICKET_ID.match(ticket_id) else None
        if ticket is None:
            log.warning("recall.unknown_ticket")
            return  # the dialplan rings all agents
        reason = FAILURE_REASONS.get(dial_status, f"the transfer ended with {dial_status.lower() or 'no status'}")
        busy = {leg.endpoint for c in self.calls.calls.values() for leg in c.legs.values()}
        agent = ticket.agent_id if ticket.agent_id and f"agent{ticket.agent_id}" not in busy else ""
        payload = {"reason": reason, "dial_status": dial_status.lower()[:32], "target": ticket.target.site,
                   "recalled_to": f"agent {agent}" if agent else "all agents",
                   "discrepancy": f"transfer to {ticket.target.site} failed ({reason}); caller recalled"}
        try:
            await self.tickets.record(ticket_id, "transfer_failed", "", payload)
        except LinkageError as exc:
            log.warning("recall.not_recorded", reason=exc.message)
        log.warning("transfer.failed", dial_status=dial_status, recalled_to=payload["recalled_to"])
        if agent:
            await request.set_variable("LINKAGE_RECALL", f"PJSIP/agent{agent}")

    def set_draft(self, linkedid: str, draft: dict[str, str]) -> dict[str, str]:
        if self.calls.get(linkedid) is None:
            raise NotFound("no active call with that linkedid", linkedid=linkedid)
        if len(self.drafts) > 1000:  # drafts of calls that ended without a transfer
            self.drafts = {k: v for k, v in self.drafts.items() if k in self.calls.calls}
        merged = {**self.drafts.get(linkedid, {}), **draft}
        self.drafts[linkedid] = merged
        return merged

    # ---- receiving side -----------------------------------------------------------------------------
    async def agi_route_in(self, request: AgiRequest) -> None:
        ticket_id = request.arg(0)
        structlog.contextvars.bind_contextvars(call_id=request.arg(1), ticket_id=ticket_id)
        ticket = None
        if TICKET_ID.match(ticket_id):
            ticket = await self._local_or_pushed(ticket_id)
            if ticket is None:
                ticket = await self._fetch_by_reference(request, ticket_id)
        else:
            log.warning("route_in.no_ticket_header")
        route = await self._route(ticket)
        if route.relay:
            await request.set_variable("LINKAGE_RELAY", "1")
        elif ticket is not None:
            self.inbound[request.uniqueid] = ticket.id
        await request.set_variable("LINKAGE_DEST", route.dest)

    async def _route(self, ticket: Ticket | None) -> Route:
        if ticket is not None and ticket.target.site != self.config.site.name:
            hop = self.tickets.neighbours(ticket, exclude=self.tickets.came_from(ticket, ticket.source.site))
            peer = self.config.peer(hop[0]) if hop else None
            if peer is not None:
                log.info("route_in.relay", to=peer.name)
                return Route(f"PJSIP/{peer.dial}@trunk-{peer.name}", True)
        if ticket is not None and self.config.site.level == "city" and ticket.division:
            county = next((p for p in self.config.peers if p.level == "county" and p.division == ticket.division
                           and p.platform == self.config.site.platform), None)
            if county is not None:
                await self._route_down(ticket, county.name)
                return Route(f"PJSIP/{county.dial}@trunk-{county.name}", True)
        return Route(f"PJSIP/agent{self._pick_agent()}", False)

    async def _route_down(self, ticket: Ticket, county: str) -> None:
        """市级互转: the city hands the ticket to the county that owns its division; the ticket goes first."""
        try:
            await self.tickets.route_to(ticket.id, county)
            log.info("route_in.pushed_down", to=county)
        except LinkageError as exc:
            log.warning("route_in.push_down_failed", error=exc.message)

    async def agi_overflow(self, request: AgiRequest) -> None:
        """Nobody here answered a linked call. An emergency goes on to the overflow group (county seats), once;
        anything else ends here and the sender recalls its caller."""
        ticket_id, status = request.arg(0), request.arg(1).upper()
        structlog.contextvars.bind_contextvars(ticket_id=ticket_id)
        peer = self.config.peer(self.config.transfer.overflow) if self.config.transfer.overflow else None
        if peer is None or status not in ("BUSY", "NOANSWER", "CHANUNAVAIL", "CONGESTION"):
            return
        ticket = await self.tickets.store.get(ticket_id) if TICKET_ID.match(ticket_id) else None
        if ticket is None or ticket.target.site != self.config.site.name or peer.name in ticket.path:
            return
        if ticket.category not in self.config.threeway.emergency_categories:
            log.info("overflow.not_emergency", dial_status=status)
            return
        try:
            await self.tickets.route_to(ticket_id, peer.name, reason=f"overflow: {status.lower()}")
        except LinkageError as exc:
            log.warning("overflow.refused", reason=exc.message)
            return
        log.warning("overflow.routed", to=peer.name, dial_status=status)
        self.inbound.pop(request.uniqueid, None)
        await request.set_variable("LINKAGE_RELAY", "1")
        await request.set_variable("LINKAGE_DEST", f"PJSIP/{peer.dial}@trunk-{peer.name}")

    def _pick_agent(self) -> str:
        """The first agent, in configured order, with no live call leg; the first agent if all are busy."""
        busy = {leg.endpoint for call in self.calls.calls.values() for leg in call.legs.values()}
        for agent in self.config.accounts.agents:
            if f"agent{agent.id}" not in busy:
                return agent.id
        return self.config.accounts.agents[0].id

    async def _local_or_pushed(self, ticket_id: str) -> Ticket | None:
        """The ticket as stored here, or the push that lands within `transfer.push_wait`: the INVITE often
        outruns the push sent at the same moment, and waiting a few milliseconds for it is cheaper than asking
        the sender (busy with the same transfer) for the ticket. The wait is registered before the first look,
        so a push landing in between is not missed."""
        landed = self.recent.pop(ticket_id, None)
        if landed is not None:
            return landed  # the push landed just before the call: no need to read it back
        if self.config.transfer.push_wait <= 0 or len(self.arrivals) > 1000:
            return await self.tickets.store.get(ticket_id)
        arrived = self.arrivals.setdefault(ticket_id, asyncio.Event())
        try:
            ticket = await self.tickets.store.get(ticket_id)
            if ticket is None:
                await wait_event(arrived, self.config.transfer.push_wait)
                ticket = self.landed.pop(ticket_id, None) or await self.tickets.store.get(ticket_id)
                if ticket is not None:
                    log.info("route_in.push_arrived")
            return ticket
        finally:
            self.arrivals.pop(ticket_id, None)
            self.landed.pop(ticket_id, None)

    async def _fetch_by_reference(self, request: AgiRequest, ticket_id: str) -> Ticket | None:
        ref = await request.get_variable("${PJSIP_HEADER(read,Call-Info)}")
        match = CALL_INFO.search(ref)
        if not match:
            log.warning("route_in.ticket_missing_no_reference")
            return None
        url = match.group(1)
        client = next((c for c in self.peers.values() if url.startswith(c.peer.url + "/")), None)
        if client is None or not url.endswith("/" + ticket_id):
            log.warning("route_in.reference_refused")
            return None
        try:
            data = await asyncio.wait_for(client.fetch_ticket(url), self.config.transfer.fetch_timeout)
            ticket, _ = await self.tickets.receive(parse_ticket(data), via="reference")
            log.info("route_in.fetched_by_reference")
            return ticket
        except (PeerError, LinkageError, TimeoutError) as exc:
            log.warning("route_in.fetch_failed", error=str(exc))
            return None

    async def on_ami_event(self, event: dict[str, str]) -> None:
        name = event.get("Event")
        if name == "Hangup":  # a linked call that ended before any dial outcome
            self.inbound.pop(event.get("Uniqueid", ""), None)
            return
        if name not in ("DialBegin", "DialEnd"):
            return
        ticket_id = self.inbound.get(event.get("Uniqueid", ""))
        if ticket_id is None:
            return
        agent = endpoint_of(event.get("DestChannel", "")).removeprefix("agent")
        agent = agent if agent.isdigit() else ""
        structlog.contextvars.bind_contextvars(ticket_id=ticket_id, call_id=event.get("Linkedid", ""))
        status = event.get("DialStatus", "")
        try:
            if name == "DialBegin":
                await self.tickets.record(ticket_id, "offered", agent)
            elif status == "ANSWER":
                self.inbound.pop(event.get("Uniqueid", ""), None)
                await self.tickets.record(ticket_id, "signed_for", agent)
            elif status in ("CANCEL", "NOANSWER", "BUSY", "CONGESTION", "CHANUNAVAIL"):
                self.inbound.pop(event.get("Uniqueid", ""), None)
                reason = "caller hung up while the phone rang" if status == "CANCEL" else "not answered"
                await self.tickets.record(ticket_id, "abandoned", agent,
                                          {"reason": reason, "dial_status": status.lower()})
        except LinkageError as exc:
            log.warning("transfer.record_failed", error=exc.message)
