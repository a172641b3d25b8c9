"""Returning a linked call to the platform it came from (退回), without a hairpin and without ping-pong.

Receiving side: an agent who presses the transfer key (or the console's button) toward the platform a linked
call came from, or the console's return button, returns it: the ticket the call arrived with moves to
`returned` with the reason and `with_caller`, and nothing is dialled here. The key alone gives a default reason
(`reason_pending`), which the agent's console asks to complete (a second `returned` with the full reason).

Sending side: when that event lands on the ticket this site sent, the controller takes its own caller back over
AMI: the caller's channel (still here, bridged to the trunk) is redirected to the agent who sent it when that
agent is free, else to the site's queue ahead of fresh calls, then every agent (linkage-ring). The trunk legs
on both PBXes are released by that redirect, so no media runs through the other platform afterwards.

No ping-pong: pressing toward a platform that already returned this matter is not a transfer but the three-way
call with both platforms (the plan's rule for unclear responsibility: a decision, or the first receiver keeps
it); `transfer.return_threeway` turns that off.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from telephony.ami import AmiSend
from telephony.calls import state as call_state
from telephony.calls.registry import Call, CallRegistry
from telephony.config import SiteConfig, Target
from telephony.errors import Conflict, InvalidInput
from telephony.ids import CHANNEL, TICKET_ID
from telephony.tickets.models import Event, Ticket
from telephony.tickets.services import TicketService

log = structlog.get_logger("transfers")
KEY_REASON = "坐席按键退回，原因待补充"  # the ticket's words for a return by the key alone (the console completes it)
REASON_LIMIT = 1000  # the ticket's return_reason
RETURNABLE = ("delivered", "signed_for")  # tickets/state.py: where `returned` moves a ticket from


class ReturnService:
    def __init__(self, config: SiteConfig, calls: CallRegistry, tickets: TicketService, ami_send: AmiSend) -> None:
        self.config = config
        self.calls = calls
        self.tickets = tickets
        self.ami_send = ami_send
        self.tasks: set[asyncio.Task[Any]] = set()

    # ---- receiving side: the agent gives the caller back ---------------------------------------------
    async def returnable(self, call: Call, target: Target) -> Ticket | None:
        """The ticket this call arrived with, when `target` is the platform it came from and the ticket can still
        be returned (delivered or signed for); else None — a ticket this platform accepted is its matter, and a
        press then is an onward transfer with `parent`."""
        ticket = await self._received(call)
        if ticket is None or ticket.status not in RETURNABLE:
            return None
        came_from = self.tickets.came_from(ticket, ticket.source.site)
        return ticket if target.name in (ticket.source.site, came_from) else None

    async def _received(self, call: Call) -> Ticket | None:
        ticket_id = self.calls.received.get(call.linkedid, "")
        ticket = await self.tickets.store.get(ticket_id) if TICKET_ID.match(ticket_id) else None
        return ticket if ticket is not None and ticket.target.site == self.config.site.name else None

    async def give_back(self, call: Call, agent: str, ticket: Ticket, reason: str = "") -> Ticket:
        """Record the return of the call's ticket, with the caller (the sender takes the caller back when the
        event reaches it). Refused (409) while the call is already being handed over; nothing changes then."""
        text = reason.strip()
        if len(text) > REASON_LIMIT:
            raise InvalidInput(f"field 'reason' is at most {REASON_LIMIT} characters", field="reason")
        call_state.move(call, "return")
        payload: dict[str, Any] = {"reason": text or KEY_REASON, "with_caller": True}
        if not text:
            payload["reason_pending"] = True
        try:
            returned = await self.tickets.record(ticket.id, "returned", agent, payload)
        except Exception:
            call_state.move(call, "not_stored")
            raise
        structlog.contextvars.bind_contextvars(ticket_id=ticket.id)
        log.info("return.sent", to=ticket.source.site, reason_pending=not text)
        return returned

    async def http_return(self, linkedid: str, agent: str, reason: str) -> Ticket:
        """The console's return button (退回, with a reason from the agent's list or typed)."""
        call = self.calls.active(linkedid)
        self.calls.agent_leg(call, agent)
        ticket = await self._received(call)
        if ticket is None:
            raise Conflict("this call did not arrive here as a linked call: there is nothing to return",
                           linkedid=linkedid)
        return await self.give_back(call, agent, ticket, reason)

    # ---- sending side: the caller comes back ----------------------------------------------------------
    def on_change(self, ticket: Ticket, event: Event) -> None:
        """TicketHooks.changed: a peer's return of a ticket sent from here, with the caller, takes it back."""
        if (event.type != "returned" or event.payload.get("with_caller") is not True
                or ticket.source.site != self.config.site.name or event.actor.get("site") == self.config.site.name):
            return
        task = asyncio.get_running_loop().create_task(self.take_back(ticket))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def take_back(self, ticket: Ticket) -> str | None:
        """Redirect the caller (still on this PBX, bridged to the trunk) to the agent who sent the ticket when
        that agent is free, else to the site's queue (linkage-ring). Returns the Dial string rung ('' = the
        queue), None when there is no caller on the trunk to take back (hung up, or already back)."""
        structlog.contextvars.bind_contextvars(ticket_id=ticket.id, call_id=ticket.linkedid)
        call = self.calls.get(ticket.linkedid)
        caller = call.legs.get(ticket.linkedid) if call is not None else None
        if call is None or caller is None or not CHANNEL.match(caller.channel) or not any(
                leg.endpoint.startswith("trunk-") for leg in call.legs.values()):
            log.info("return.no_caller_on_trunk")
            return None
        busy = self.calls.busy()
        agent = ticket.agent_id if ticket.agent_id and f"agent{ticket.agent_id}" not in busy else ""
        dial = f"PJSIP/agent{agent}" if agent else ""
        call_state.move(call, "returned")
        await self.ami_send({"Action": "Setvar", "Channel": caller.channel, "Variable": "LINKAGE_RECALL",
                             "Value": dial})
        reply = await self.ami_send({"Action": "Redirect", "Channel": caller.channel, "Context": "linkage-ring",
                                     "Exten": ticket.id, "Priority": "1"})
        if getattr(reply, "success", True) is False:
            log.warning("return.redirect_refused")
            return None
        log.info("return.taken_back", to=f"agent {agent}" if agent else "the queue")
        return dial

    def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()

    # ---- no ping-pong ---------------------------------------------------------------------------------
    async def bounced(self, call: Call, target: Target) -> Ticket | None:
        """The ticket of this call that `target` returned already (so another press would bounce the matter
        back and forth), when the three-way rule is on; else None."""
        if not self.config.transfer.return_threeway or call.ticket_id is None:
            return None
        ticket = await self.tickets.store.get(call.ticket_id)
        if (ticket is None or ticket.status != "returned" or ticket.source.site != self.config.site.name
                or ticket.target.site != target.name):
            return None
        return ticket
