"""AMI adapter of the transfers context: the dial outcomes of a linked call on the receiving side.
DialBegin on the trunk channel is `offered`, DialEnd ANSWER is `signed_for` (签收), an unanswered end is
`abandoned`; a Hangup before any outcome forgets the call. The prepared transfers (sending side) hear an agent's
leg bridged, the dialplan's press (UserEvent LinkagePress, or LinkagePressFailed when Asterisk refused the
BlindTransfer) and the call's end."""

from __future__ import annotations

import time

import structlog

from telephony.calls.registry import endpoint_of
from telephony.lanes import Lanes
from telephony.transfers.metrics import TransferMetrics
from telephony.transfers.prepared import PreparedService
from telephony.transfers.receiving import ReceivingService


class TransferAmi:
    """The offered / signed_for / abandoned records run in the ticket's lane (telephony/lanes.py), not on the AMI
    event queue: in the order of their events, each ticket's apart from the others'."""

    def __init__(self, receiving: ReceivingService, metrics: TransferMetrics, lanes: Lanes | None = None) -> None:
        self.receiving = receiving
        self.metrics = metrics
        self.lanes = lanes or Lanes("dial_outcomes")

    async def on_event(self, event: dict[str, str]) -> None:
        name = event.get("Event")
        uniqueid = event.get("Uniqueid", "")
        if name == "Hangup":
            self.receiving.hung_up(uniqueid)
            return
        if name == "UserEvent" and event.get("UserEvent") == "LinkageArrived":
            self.metrics.published_routes.inc()
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
            await self.lanes.run(ticket_id, lambda: self._offered(ticket_id, agent))
        else:
            record = self.receiving.ended(uniqueid, ticket_id, agent, event.get("DialStatus", ""))
            if record is not None:
                await self.lanes.run(ticket_id, record)

    async def _offered(self, ticket_id: str, agent: str) -> None:
        began = time.monotonic()
        await self.receiving.dial_began(ticket_id, agent)  # the stream publishes the pop inside it
        self.metrics.screen_pop.observe(time.monotonic() - began)


class PreparedAmi:
    """The press's ticket write, the failure's record and the hang-up's drop run in lanes (telephony/lanes.py),
    not on the AMI event queue: a press's ticket and its failure in the ticket's lane, a hang-up in the call's."""

    def __init__(self, prepared: PreparedService, metrics: TransferMetrics, lanes: Lanes | None = None) -> None:
        self.prepared = prepared
        self.metrics = metrics
        self.lanes = lanes or Lanes("prepared")

    async def on_event(self, event: dict[str, str]) -> None:
        name = event.get("Event")
        if name == "BridgeEnter":
            await self.prepared.bridged(event.get("Linkedid", ""), event.get("Uniqueid", ""))
        elif name == "Hangup":
            linkedid = event.get("Linkedid", "")
            if self.prepared.reserved.of_call(linkedid) is not None:
                await self.lanes.run(linkedid, lambda: self.prepared.hung_up(linkedid))
        elif name == "UserEvent" and event.get("UserEvent") in ("LinkagePress", "LinkagePressRecorded"):
            ticket_id = event.get("Ticket", "")[:32]
            structlog.contextvars.bind_contextvars(ticket_id=ticket_id)
            work = self.prepared.press(event.get("Ticket", ""), event.get("Target", ""),
                                       recorded=event.get("UserEvent") == "LinkagePressRecorded")
            if work is not None:
                began = time.monotonic()

                async def timed() -> None:
                    try:
                        await work()
                    finally:
                        self.metrics.press.observe(time.monotonic() - began)

                await self.lanes.run(ticket_id, timed)
        elif name == "UserEvent" and event.get("UserEvent") == "LinkagePressFailed":
            ticket_id, linkedid = event.get("Ticket", "")[:32], event.get("Linkedid", "")
            await self.lanes.run(ticket_id, lambda: self.prepared.failed(ticket_id, linkedid))
