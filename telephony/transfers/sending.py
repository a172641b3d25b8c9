"""The sending side of a transfer: the ticket is built and stored durably before the call moves.

A transfer key (FastAGI `onekey`, see transfers/agi.py) and the console's button (transfers/http.py) take the same
path: `start` stores the ticket and names the transfer extension `<dial>*<ticket id>`; the dialplan (key) or an
AMI BlindTransfer (button) moves the caller. The push to the peer leaves afterwards from the delivery worker.
When the caller's Dial to the target ends without an answer, `failed` marks the ticket transfer_failed with a
discrepancy record and names who gets the caller back. The draft typed while the caller talks is kept in Redis
(transfers/drafts.py) and taken into the ticket by the same write that stores it. A referral (`refer`) is a
ticket for a matter that reached us through a network channel (web, app, letter …): no call, the same ticket
path and lifecycle. Each ticket made from what the agent typed records the scope advice for it (advice/
services.py `record`: what was advised, whether the agent followed it); the draft's save computes it first, so
the key press finds it ready.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog

from telephony.advice.services import AdviceService
from telephony.ami import AmiSend
from telephony.calls import state as call_state
from telephony.calls.registry import Call, CallRegistry
from telephony.config import SiteConfig, Target
from telephony.errors import Conflict, InvalidInput, LinkageError, NotFound
from telephony.ids import CALLER_NUMBER, CHANNEL, INTAKE_CHANNELS, TICKET_ID, UNIQUEID
from telephony.tickets.advised import Advised
from telephony.tickets.models import Ticket
from telephony.tickets.services import TicketService
from telephony.tickets.store import STORE_ERRORS
from telephony.transfers.drafts import DraftStore, draft_key
from telephony.transfers.reservations import Reservation, ReservationStore, Reserved
from telephony.transfers.returns import ReturnService

log = structlog.get_logger("transfers")
FAILURE_REASONS = {
    "BUSY": "target busy",
    "NOANSWER": "no answer in time",
    "CHANUNAVAIL": "target unreachable (trunk or far PBX down)",
    "CONGESTION": "target congested or refused the call",
}
REFERRAL_CHANNELS = tuple(c for c in INTAKE_CHANNELS if c != "call")  # a call is transferred with its call


class SendingService:
    def __init__(self, config: SiteConfig, calls: CallRegistry, tickets: TicketService, ami_send: AmiSend,
                 drafts: DraftStore | None = None, returns: ReturnService | None = None,
                 advisor: AdviceService | None = None, reserved: Reserved | None = None,
                 reservations: ReservationStore | None = None) -> None:
        """`drafts` defaults to a store in the ticket store's Redis, sealed with its Sealer; without `advisor`
        tickets carry no advice. `reserved` / `reservations`: the prepared transfers' reservations (memory and
        store, transfers/prepared.py): a ticket made here for a call with one takes its id and consumes it."""
        self.config = config
        self.calls = calls
        self.tickets = tickets
        self.ami_send = ami_send
        self.drafts = drafts or DraftStore(tickets.store.redis, tickets.store.sealer)
        self.returns = returns
        self.advisor = advisor
        self.reserved = reserved or Reserved()
        self.reservations = reservations or ReservationStore(tickets.store.redis, tickets.store.sealer)
        # the three-way call a press turns into when the target already returned this matter (no ping-pong):
        # ThreewayService.start, set by the composition root (the three-way context is built on this one)
        self.escalate: Callable[[str, str], Awaitable[Ticket]] | None = None

    async def start(self, call: Call, agent_uniqueid: str, target: Target,
                    mode: str = "transfer") -> tuple[Ticket, str]:
        """Build and store the ticket; returns it and the transfer extension. Shared by key, button, three-way
        and attended transfer (`mode`)."""
        call_state.check(call, call_state.start_event(mode))
        agent_leg = call.legs.get(agent_uniqueid)
        if agent_leg is None or not agent_leg.endpoint.startswith("agent"):
            raise InvalidInput("that channel is not an agent's leg of the call")
        agent_id = agent_leg.endpoint.removeprefix("agent")
        caller = next((leg for leg in call.legs.values() if leg.uniqueid != agent_uniqueid), None)
        caller_number = caller.caller_number if caller and CALLER_NUMBER.match(caller.caller_number) else ""
        path = self._path(target)
        call_state.move(call, call_state.start_event(mode))
        try:
            resumed = await self._resume(call, target, mode) if call.recovered and call.ticket_id is None else None
            if resumed is not None:
                return resumed
            res = self.reserved.of_call(call.linkedid)
            draft = await self.drafts.for_call(call.linkedid, call.recovered or (res is not None and res.recovered))
            parent = call.ticket_id or self.calls.received.get(call.linkedid, "")
            ticket = await self.tickets.create(
                target_site=target.name, target_platform=target.platform, caller_number=caller_number,
                agent_id=agent_id if agent_id.isdigit() else "", linkedid=call.linkedid,
                uniqueids=sorted(call.legs), draft=draft, path=path, mode=mode,
                recording=f"linkage-{caller.uniqueid}.wav" if caller else "",
                consume=draft_key(call.linkedid) if draft or res else "", parent=parent,
                advice=self._advice(draft, target, mode), ticket_id=res.ticket_id if res else "")
        except Exception:
            call_state.move(call, "not_stored")
            raise
        self.drafts.stored(call.linkedid)
        if res is not None:
            await self._taken(res, mode)
        call.ticket_id = ticket.id
        structlog.contextvars.bind_contextvars(ticket_id=ticket.id)
        log.info("transfer.started", target=target.name)
        return ticket, f"{target.dial}*{ticket.id}"

    async def _taken(self, res: Reservation, mode: str) -> None:
        """A reserved call's ticket was made by another path (the AGI key, the button, three-way, consult): the
        reservation is spent. An agent who stays on the call (three-way, consult) must not press it again."""
        self.reserved.pop(res.linkedid)
        self.reservations.forget(res.linkedid)
        if mode != "transfer" and CHANNEL.match(res.agent_channel):
            try:
                await self.ami_send({"Action": "Setvar", "Channel": res.agent_channel, "Variable": "LINKAGE_RES",
                                     "Value": ""})
            except (TimeoutError, ConnectionError) as exc:
                log.warning("reservation.not_cleared", error=str(exc))

    async def prepared(self, res: Reservation, target: Target) -> Ticket:
        """A press of a prepared transfer: the dialplan moved the call already (no AGI); the ticket is made
        from the reservation, with the draft as saved, under the reserved id (so a second completion of the
        same press, by the resync, finds it and makes nothing)."""
        call = self.calls.get(res.linkedid)
        if call is not None and call_state.allowed(call.handover, "transfer"):
            call_state.move(call, "transfer")
        draft = await self.drafts.for_call(res.linkedid, res.recovered or (call is not None and call.recovered))
        ticket = await self.tickets.create(
            target_site=target.name, target_platform=target.platform, caller_number=res.caller_number,
            agent_id=res.agent_id, linkedid=res.linkedid, uniqueids=res.uniqueids, draft=draft,
            path=self._path(target), mode="transfer", recording=res.recording, consume=draft_key(res.linkedid),
            advice=self._advice(draft, target, "transfer"), ticket_id=res.ticket_id, early=True)
        self.drafts.stored(res.linkedid)
        if call is not None:
            call.ticket_id = ticket.id
        structlog.contextvars.bind_contextvars(ticket_id=ticket.id)
        log.info("transfer.started", target=target.name, prepared=True)
        return ticket

    async def _instead(self, call: Call, agent_uniqueid: str, target: Target) -> Ticket | None:
        """What a press toward `target` is when it is not a transfer: the return of a linked call to the
        platform it came from (退回), or — when that platform already returned this matter — the three-way call
        with it (no ping-pong). None: a transfer."""
        if self.returns is None:
            return None
        leg = call.legs.get(agent_uniqueid)
        agent = leg.endpoint.removeprefix("agent") if leg is not None and leg.endpoint.startswith("agent") else ""
        received = await self.returns.returnable(call, target)
        if received is not None:
            return await self.returns.give_back(call, agent, received)
        bounced = await self.returns.bounced(call, target)
        threeway = self.config.target(self.config.threeway.target)  # "" names the first target
        if bounced is not None and self.escalate is not None and threeway is not None and threeway.name == target.name:
            log.info("transfer.bounced_to_threeway", target=target.name, parent=bounced.id)
            return await self.escalate(call.linkedid, agent_uniqueid)
        return None

    def _advice(self, draft: dict[str, str], target: Target, mode: str) -> Advised | None:
        if self.advisor is None:
            return None
        return self.advisor.record(draft.get("content", ""), draft.get("category", ""), target.platform, mode)

    def _path(self, target: Target) -> list[str]:
        here = self.config.site.name
        return [here, target.via, target.name] if target.via else [here, target.name]

    async def _resume(self, call: Call, target: Target, mode: str) -> tuple[Ticket, str] | None:
        """A call this run of the controller learnt from Asterisk after a restart: if the previous run stored a
        ticket for it and died before the call moved (between the write and the AGI answer), the agent's next
        press sends that ticket again instead of making a second one. Anything past `delivered` is a new
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

    async def key(self, linkedid: str, target_name: str, agent_uniqueid: str, agent_channel: str,
                  connected_line: Callable[[], Awaitable[str]]) -> str | None:
        """A transfer key on the agent's channel: the transfer extension, or None to keep the call with the
        agent (who can press again). `connected_line` reads the citizen's number from the channel, only needed
        when AMI has not told us about the call."""
        target = self.config.target(target_name or (self.config.targets[0].name if self.config.targets else ""))
        call = self.calls.get(linkedid) if UNIQUEID.match(linkedid) else None
        if call is None and target is not None and not self.calls.live:
            # AMI is down (or has not resynced yet): the key press itself tells us enough to transfer. The
            # agent's channel's own caller ID is the agent; the citizen is its connected line.
            call = self.calls.adopt(linkedid, agent_uniqueid, agent_channel, await connected_line())
            if call is not None:
                log.warning("onekey.call_adopted", reason="call not seen on AMI")
        if call is None or target is None:
            log.warning("onekey.unknown_call", reason="no such call" if target else "no such target")
            return None
        try:
            if await self._instead(call, agent_uniqueid, target) is not None:
                return None  # returned, or a three-way: the call stays where it is for now
            _, exten = await self.start(call, agent_uniqueid, target)
        except LinkageError as exc:
            log.warning("onekey.refused", reason=exc.message)
            return None
        except STORE_ERRORS as exc:  # nothing stored, so the call stays with the agent, who can press again
            log.error("onekey.store_unavailable", error=exc.__class__.__name__)
            return None
        return exten

    async def button(self, linkedid: str, target_name: str, agent: str) -> Ticket:
        """The console's transfer button: the same ticket path as the key, then BlindTransfer over AMI."""
        call = self.calls.active(linkedid)
        call_state.check(call, "transfer")  # first: once transferred the agent's leg is gone; this is clearer
        target = self.config.target(target_name)
        if target is None:
            raise InvalidInput(f"unknown transfer target {target_name!r}",
                               targets=[t.name for t in self.config.targets])
        leg = self.calls.agent_leg(call, agent)
        if call.bridged_at is None:
            raise Conflict("the call is not answered yet", linkedid=linkedid)
        instead = await self._instead(call, leg.uniqueid, target)
        if instead is not None:
            return instead
        ticket, exten = await self.start(call, leg.uniqueid, target)
        if not CHANNEL.match(leg.channel):
            raise Conflict("cannot reach the PBX for this transfer")
        reply = await self.ami_send({"Action": "BlindTransfer", "Channel": leg.channel, "Exten": exten,
                                     "Context": "linkage-out"})
        if getattr(reply, "success", True) is False:
            call_state.move(call, "pbx_refused")
            await self.tickets.record(ticket.id, "transfer_failed", agent,
                                      {"reason": "the PBX refused the transfer"})
            raise Conflict("the PBX refused the transfer", ticket_id=ticket.id)
        return ticket

    async def failed(self, ticket_id: str, dial_status: str, linkedid: str) -> str:
        """The caller's Dial to the target ended without an answer: the ticket becomes transfer_failed with a
        discrepancy record. Returns the agent who gets the caller back ('' = the site's queue): the one who pressed,
        if still free."""
        call = self.calls.get(linkedid) if UNIQUEID.match(linkedid) else None
        if call is not None:
            call_state.move(call, "recalled")
        ticket = await self.tickets.store.get(ticket_id) if TICKET_ID.match(ticket_id) else None
        if ticket is None:
            log.warning("recall.unknown_ticket")
            return ""
        reason = FAILURE_REASONS.get(dial_status, f"the transfer ended with {dial_status.lower() or 'no status'}")
        busy = self.calls.busy()
        agent = ticket.agent_id if ticket.agent_id and f"agent{ticket.agent_id}" not in busy else ""
        payload = {"reason": reason, "dial_status": dial_status.lower()[:32], "target": ticket.target.site,
                   "recalled_to": f"agent {agent}" if agent else "the queue",
                   "discrepancy": f"transfer to {ticket.target.site} failed ({reason}); caller recalled"}
        try:
            await self.tickets.record(ticket_id, "transfer_failed", "", payload)
        except LinkageError as exc:
            log.warning("recall.not_recorded", reason=exc.message)
        log.warning("transfer.failed", dial_status=dial_status, recalled_to=payload["recalled_to"])
        return agent

    async def set_draft(self, linkedid: str, draft: dict[str, str]) -> dict[str, str]:
        """Merge what the agent typed (validated) into the active call's draft; returns the whole draft."""
        if self.calls.get(linkedid) is None:
            raise NotFound("no active call with that linkedid", linkedid=linkedid)
        self.drafts.prune(self.calls.calls)
        saved = await self.drafts.put(linkedid, draft)
        if self.advisor is not None and saved.get("content", "").strip():
            self.advisor.advise(saved["content"], saved.get("category", ""))  # ready for the key press
        return saved

    async def draft(self, linkedid: str) -> dict[str, str]:
        """The active call's draft as saved (the console reloads its form from it)."""
        if self.calls.get(linkedid) is None:
            raise NotFound("no active call with that linkedid", linkedid=linkedid)
        return await self.drafts.get(linkedid)

    async def refer(self, target_name: str, channel: str, agent: str, caller_number: str,
                    fields: dict[str, str]) -> Ticket:
        """A referral (网络渠道转办): a matter that reached this platform over a network channel goes to the
        target as a ticket without a call. `fields` are draft fields, validated; `agent` may be '' (the
        console)."""
        if channel not in REFERRAL_CHANNELS:
            raise InvalidInput(f"field 'channel' must be one of {', '.join(REFERRAL_CHANNELS)}", field="channel")
        target = self.config.target(target_name)
        if target is None:
            raise InvalidInput(f"unknown transfer target {target_name!r}", field="target",
                               targets=[t.name for t in self.config.targets])
        path = self._path(target)
        ticket = await self.tickets.create(
            target_site=target.name, target_platform=target.platform, caller_number=caller_number,
            agent_id=agent, linkedid="", uniqueids=[], draft=fields, path=path, mode="referral", channel=channel,
            advice=self._advice(fields, target, "referral"))
        structlog.contextvars.bind_contextvars(ticket_id=ticket.id)
        log.info("referral.created", target=target.name, channel=channel)
        return ticket
