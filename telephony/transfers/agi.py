"""FastAGI adapter of the transfers context (the contract is agi/README.md): reads the request's arguments and
channel variables, calls the sending or receiving service, and writes the answer back as dialplan variables.
An empty answer leaves the dialplan's own fallback in charge (the call stays with the agent, or rings all)."""

from __future__ import annotations

import structlog

from telephony.agi.server import AgiRequest, Handler
from telephony.transfers.prepared import PreparedService
from telephony.transfers.receiving import ReceivingService
from telephony.transfers.sending import SendingService


class TransferAgi:
    def __init__(self, sending: SendingService, receiving: ReceivingService,
                 prepared: PreparedService | None = None) -> None:
        self.sending = sending
        self.receiving = receiving
        self.prepared = prepared

    def routes(self) -> dict[str, Handler]:
        return {"onekey": self.onekey, "route_in": self.route_in, "transfer_failed": self.transfer_failed,
                "overflow": self.overflow}

    async def onekey(self, request: AgiRequest) -> None:
        """onekey(linkedid, target): LINKAGE_XFER = the transfer extension."""
        linkedid = request.arg(0)
        structlog.contextvars.bind_contextvars(call_id=linkedid)
        exten = await self.sending.key(linkedid, request.arg(1), request.uniqueid, request.channel,
                                       lambda: request.get_variable("${CONNECTEDLINE(num)}"))
        if exten is not None:
            await request.set_variable("LINKAGE_XFER", exten)

    async def transfer_failed(self, request: AgiRequest) -> None:
        """transfer_failed(ticket id, dial status, linkedid): LINKAGE_RECALL = the agent to ring back."""
        ticket_id, dial_status, linkedid = request.arg(0), request.arg(1).upper(), request.arg(2)
        structlog.contextvars.bind_contextvars(call_id=linkedid, ticket_id=ticket_id)
        if self.prepared is not None:  # a prepared press's ticket may still be in the making
            await self.prepared.settled(ticket_id)
        agent = await self.sending.failed(ticket_id, dial_status, linkedid)
        if agent:
            await request.set_variable("LINKAGE_RECALL", f"PJSIP/agent{agent}")

    async def route_in(self, request: AgiRequest) -> None:
        """route_in(ticket id, linkedid) on the trunk channel: LINKAGE_DEST, and LINKAGE_RELAY = 1 onward."""
        ticket_id = request.arg(0)
        structlog.contextvars.bind_contextvars(call_id=request.arg(1), ticket_id=ticket_id)
        route = await self.receiving.route(ticket_id, request.uniqueid,
                                           lambda: request.get_variable("${PJSIP_HEADER(read,Call-Info)}"),
                                           request.arg(1))
        if route.relay:
            await request.set_variable("LINKAGE_RELAY", "1")
        await request.set_variable("LINKAGE_DEST", route.dest)

    async def overflow(self, request: AgiRequest) -> None:
        """overflow(ticket id, dial status): LINKAGE_RELAY and LINKAGE_DEST when an emergency goes on."""
        ticket_id = request.arg(0)
        structlog.contextvars.bind_contextvars(ticket_id=ticket_id)
        route = await self.receiving.overflow(ticket_id, request.arg(1).upper(), request.uniqueid)
        if route is not None:
            await request.set_variable("LINKAGE_RELAY", "1")
            await request.set_variable("LINKAGE_DEST", route.dest)
