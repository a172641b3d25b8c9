"""One-key transfer decisions (FastAGI) and the call-side facts recorded on tickets (AMI).

Sending side: the `onekey` AGI runs on the agent's channel when the feature code is pressed. It builds the
ticket, stores it durably, and answers with the transfer extension `<dial>*<ticket id>`; the dialplan does the
BlindTransfer. The HTTP push to the peer happens afterwards in the delivery worker, never on this path.

Receiving side: the `route_in` AGI runs on the trunk channel. It makes sure the ticket is here (pushed, or
fetched by the Call-Info reference within a short timeout) and names the agent to ring. AMI DialBegin/DialEnd
on that channel become the ticket's offered (振铃), signed_for (签收) and abandoned facts.
"""

from __future__ import annotations

import re
from typing import Any

import structlog

from telephony.agi.server import AgiRequest
from telephony.calls.registry import NUMBER, UNIQUEID, CallRegistry, endpoint_of
from telephony.config import SiteConfig
from telephony.delivery.client import PeerClient, PeerError
from telephony.errors import InvalidInput, LinkageError
from telephony.tickets.models import TICKET_ID, parse_ticket
from telephony.tickets.services import TicketService

log = structlog.get_logger("transfers")
CALL_INFO = re.compile(r"<(https?://[^>\s]{1,300})>")


class TransferService:
    def __init__(self, config: SiteConfig, calls: CallRegistry, tickets: TicketService,
                 peers: dict[str, PeerClient]) -> None:
        self.config = config
        self.calls = calls
        self.tickets = tickets
        self.peers = peers
        self.drafts: dict[str, dict[str, str]] = {}
        self.inbound: dict[str, str] = {}  # trunk channel uniqueid -> ticket id, on the receiving side

    # ---- sending side -------------------------------------------------------------------------------
    async def agi_onekey(self, request: AgiRequest) -> None:
        linkedid = request.arg(0)
        target = self.config.peers[0] if self.config.peers else None
        structlog.contextvars.bind_contextvars(call_id=linkedid)
        call = self.calls.get(linkedid) if UNIQUEID.match(linkedid) else None
        if call is None or target is None:
            log.warning("onekey.unknown_call", reason="no such call" if target else "no peer configured")
            return  # LINKAGE_XFER stays empty: the dialplan keeps the call with the agent
        if call.transferring:
            log.warning("onekey.already_transferring", ticket_id=call.ticket_id)
            return
        agent_leg = call.legs.get(request.uniqueid)
        agent_id = agent_leg.endpoint.removeprefix("agent") if agent_leg else ""
        caller = next((leg for leg in call.legs.values() if leg.uniqueid != request.uniqueid), None)
        caller_number = caller.caller_number if caller and NUMBER.match(caller.caller_number) else ""
        call.transferring = True
        try:
            ticket = await self.tickets.create(
                target_site=target.name, target_platform=target.platform, caller_number=caller_number,
                agent_id=agent_id if agent_id.isdigit() else "", linkedid=linkedid,
                uniqueids=sorted(call.legs), draft=self.drafts.pop(linkedid, {}))
        except Exception:
            call.transferring = False
            raise
        call.ticket_id = ticket.id
        structlog.contextvars.bind_contextvars(ticket_id=ticket.id)
        await request.set_variable("LINKAGE_XFER", f"{target.dial}*{ticket.id}")
        log.info("onekey.transfer", target=target.name)

    def set_draft(self, linkedid: str, draft: dict[str, str]) -> dict[str, str]:
        if self.calls.get(linkedid) is None:
            raise InvalidInput("no active call with that linkedid", linkedid=linkedid)
        merged = {**self.drafts.get(linkedid, {}), **draft}
        self.drafts[linkedid] = merged
        return merged

    # ---- receiving side -----------------------------------------------------------------------------
    async def agi_route_in(self, request: AgiRequest) -> None:
        ticket_id = request.arg(0)
        structlog.contextvars.bind_contextvars(call_id=request.arg(1), ticket_id=ticket_id)
        agent = self._pick_agent()
        if TICKET_ID.match(ticket_id):
            have = await self.tickets.store.get(ticket_id)
            if have is None:
                await self._fetch_by_reference(request, ticket_id)
            self.inbound[request.uniqueid] = ticket_id
        else:
            log.warning("route_in.no_ticket_header")
        await request.set_variable("LINKAGE_DEST", f"PJSIP/agent{agent}")

    def _pick_agent(self) -> str:
        """The first agent, in configured order, with no live call leg; the first agent if all are busy."""
        busy = {leg.endpoint for call in self.calls.calls.values() for leg in call.legs.values()}
        for agent in self.config.agents:
            if f"agent{agent.id}" not in busy:
                return agent.id
        return self.config.agents[0].id

    async def _fetch_by_reference(self, request: AgiRequest, ticket_id: str) -> None:
        ref = await request.get_variable("${PJSIP_HEADER(read,Call-Info)}")
        match = CALL_INFO.search(ref)
        if not match:
            log.warning("route_in.ticket_missing_no_reference")
            return
        url = match.group(1)
        client = next((c for c in self.peers.values() if url.startswith(c.peer.url + "/")), None)
        if client is None or not url.endswith("/" + ticket_id):
            log.warning("route_in.reference_refused")
            return
        try:
            data = await self._bounded_fetch(client, url)
            await self.tickets.receive(parse_ticket(data), via="reference")
            log.info("route_in.fetched_by_reference")
        except (PeerError, LinkageError, TimeoutError) as exc:
            log.warning("route_in.fetch_failed", error=str(exc))

    async def _bounded_fetch(self, client: PeerClient, url: str) -> dict[str, Any]:
        import asyncio

        return await asyncio.wait_for(client.fetch_ticket(url), self.config.fetch_timeout)

    async def on_ami_event(self, event: dict[str, str]) -> None:
        name = event.get("Event")
        if name not in ("DialBegin", "DialEnd"):
            return
        ticket_id = self.inbound.get(event.get("Uniqueid", ""))
        if ticket_id is None:
            return
        agent = endpoint_of(event.get("DestChannel", "")).removeprefix("agent")
        agent = agent if agent.isdigit() else ""
        structlog.contextvars.bind_contextvars(ticket_id=ticket_id, call_id=event.get("Linkedid", ""))
        try:
            if name == "DialBegin":
                await self.tickets.record(ticket_id, "offered", agent)
            elif event.get("DialStatus") == "ANSWER":
                await self.tickets.record(ticket_id, "signed_for", agent)
                self.inbound.pop(event.get("Uniqueid", ""), None)
            elif event.get("DialStatus") in ("CANCEL", "NOANSWER", "BUSY", "CONGESTION", "CHANUNAVAIL"):
                reason = {"CANCEL": "caller hung up while the phone rang"}.get(
                    event.get("DialStatus", ""), "not answered")
                status = event.get("DialStatus", "")
                await self.tickets.record(ticket_id, "abandoned", agent,
                                          {"reason": reason, "dial_status": status.lower()})
                self.inbound.pop(event.get("Uniqueid", ""), None)
        except LinkageError as exc:
            log.warning("transfer.record_failed", error=exc.message)
