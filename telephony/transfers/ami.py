"""AMI adapter of the transfers context: the dial outcomes of a linked call on the receiving side.
DialBegin on the trunk channel is `offered`, DialEnd ANSWER is `signed_for` (签收), an unanswered end is
`abandoned`; a Hangup before any outcome forgets the call. The prepared transfers (sending side) hear an agent's
leg bridged, the dialplan's press (UserEvent LinkagePress, or LinkagePressFailed when Asterisk refused the
BlindTransfer) and the call's end."""

from __future__ import annotations

import time

import structlog

from telephony.calls.registry import endpoint_of
from telephony.transfers.metrics import TransferMetrics
from telephony.transfers.prepared import PreparedService
from telephony.transfers.receiving import ReceivingService


class TransferAmi:
    def __init__(self, receiving: ReceivingService, metrics: TransferMetrics) -> None:
        self.receiving = receiving
        self.metrics = metrics

    async def on_event(self, event: dict[str, str]) -> None:
        name = event.get("Event")
        uniqueid = event.get("Uniqueid", "")
        if name == "Hangup":
            self.receiving.hung_up(uniqueid)
            return
        if name == "UserEvent" and event.get("UserEvent") == "LinkageArrived":
            self.receiving.fast_arrived(event.get("Ticket", ""), uniqueid, event.get("Linkedid", ""))
            return
        if name not in ("DialBegin", "DialEnd"):
            return
        ticket_id = self.receiving.ticket_of(uniqueid)
        if ticket_id is None:
            return
        agent = endpoint_of(event.get("DestChannel", "")).removeprefix("agent")
        agent = agent if agent.isdigit() else ""
        structlog.contextvars.bind_contextvars(ticket_id=ticket_id, call_id=event.get("Linkedid", ""))
        if name == "DialBegin":
            began = time.monotonic()
            await self.receiving.dial_began(ticket_id, agent)  # the stream publishes the pop inside it
            self.metrics.screen_pop.observe(time.monotonic() - began)
        else:
            await self.receiving.dial_ended(uniqueid, ticket_id, agent, event.get("DialStatus", ""))


class PreparedAmi:
    def __init__(self, prepared: PreparedService) -> None:
        self.prepared = prepared

    async def on_event(self, event: dict[str, str]) -> None:
        name = event.get("Event")
        if name == "BridgeEnter":
            await self.prepared.bridged(event.get("Linkedid", ""), event.get("Uniqueid", ""))
        elif name == "Hangup":
            await self.prepared.hung_up(event.get("Linkedid", ""))
        elif name == "UserEvent" and event.get("UserEvent") == "LinkagePress":
            structlog.contextvars.bind_contextvars(ticket_id=event.get("Ticket", "")[:32])
            await self.prepared.pressed(event.get("Ticket", ""), event.get("Target", ""))
        elif name == "UserEvent" and event.get("UserEvent") == "LinkagePressFailed":
            await self.prepared.failed(event.get("Ticket", "")[:32], event.get("Linkedid", ""))
