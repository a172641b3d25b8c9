"""Prepared transfers: the work of a key press done before the key is pressed.

When an agent's leg of a fresh call is bridged (AMI BridgeEnter), `bridged` reserves the ticket: a durable
reservation (transfers/reservations.py) and, over AMI, `LINKAGE_RES=<ticket id>-<slot>` on the agent's channel.
The transfer key then needs no controller: the dialplan (`[linkage-onekey]`) emits the UserEvent `LinkagePress`
and does the BlindTransfer at once; the press is recorded in AstDB (`linkage-press/<slot>`) by a hangup handler
of the agent's leg, which ends right after (`[linkage-press-record]`), and told again then (UserEvent
`LinkagePressRecorded`). `pressed` (on the first event) turns the reservation into the created ticket and its push
leaves. A press the controller did not hear (killed, AMI cut) is found from the AstDB record: by `resync` after the
next AMI login when the record is written by then, else on the record's own event or, failing that, at the call's
hang-up (`hung_up` reads the record before it drops a reservation). The ticket is made once, with the reserved id,
whether the call still lasts or not.

A call with no reservation (bridged while the controller was down, a linked call that came in over a trunk, a
caller recalled after a failed transfer) has no `LINKAGE_RES`: its key takes the FastAGI path (`onekey`) as
before. A reservation of a call that ends untransferred is removed with its draft at hang-up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog

from telephony.ami import AmiSend
from telephony.calls.registry import Call, CallRegistry
from telephony.calls.state import IDLE
from telephony.config import SiteConfig
from telephony.errors import LinkageError
from telephony.ids import CHANNEL, TICKET_ID
from telephony.tickets.models import Ticket, new_ticket_id
from telephony.tickets.store import STORE_ERRORS
from telephony.transfers.reservations import Reservation, ReservationStore, Reserved
from telephony.transfers.sending import SendingService
from telephony.waits import raise_if_cancelled, wait_event

log = structlog.get_logger("transfers")
AmiList = Callable[[dict[str, str]], Awaitable[list[dict[str, str]]]]  # AmiSession.ask
PRESS_FAMILY = "linkage-press"  # AstDB family the dialplan records presses in
RETRY_EVERY = 1.0  # seconds between attempts to complete a press whose ticket could not be stored


class PreparedService:
    def __init__(self, config: SiteConfig, calls: CallRegistry, sending: SendingService, store: ReservationStore,
                 reserved: Reserved, ami_send: AmiSend, ami_list: AmiList | None = None) -> None:
        """`ami_list` sends an action answered by a response or a list of events (DBGet): AmiSession.ask."""
        self.config = config
        self.calls = calls
        self.sending = sending
        self.store = store
        self.reserved = reserved
        self.ami_send = ami_send
        self.ami_list = ami_list
        self.completing: dict[str, asyncio.Future[Ticket | None]] = {}  # ticket id -> its completion
        self.unstored: dict[str, str] = {}  # ticket id -> target: pressed, the store was away; retried
        self.reserving: dict[str, asyncio.Task[None]] = {}  # linkedid -> its reservation being written
        self.unheard: set[str] = set()  # ticket ids reserved before a login: pressed maybe while not heard

    # ---- bridge time -------------------------------------------------------------------------------
    def _eligible(self, call: Call, uniqueid: str) -> bool:
        """A fresh call of this site with an agent: not linked in from a trunk, not handed over, no ticket."""
        leg = call.legs.get(uniqueid)
        if (leg is None or not leg.endpoint.startswith("agent") or not CHANNEL.match(leg.channel)
                or call.ticket_id is not None or call.handover != IDLE or call.linkedid in self.calls.received
                or self.reserved.of_call(call.linkedid) is not None or not self.config.targets):
            return False
        others = [g for g in call.legs.values() if g.uniqueid != uniqueid]
        return bool(others) and not any(g.endpoint.startswith(("trunk-", "agent")) for g in others)

    async def bridged(self, linkedid: str, uniqueid: str) -> Reservation | None:
        call = self.calls.get(linkedid)
        if call is None or not self._eligible(call, uniqueid):
            return None
        leg = call.legs[uniqueid]
        caller = next(g for g in call.legs.values() if g.uniqueid != uniqueid)
        agent = leg.endpoint.removeprefix("agent")
        res = Reservation(ticket_id=new_ticket_id(self.config.site.division), linkedid=linkedid,
                          caller_number=self.calls.caller_of(call), agent_id=agent if agent.isdigit() else "",
                          agent_uniqueid=uniqueid, agent_channel=leg.channel, uniqueids=sorted(call.legs),
                          recording=f"linkage-{caller.uniqueid}.wav", reserved_at=time.time())
        self.reserved.keep(res)  # first: a hang-up or an AGI press during the write must find it
        # off the AMI event queue: the durable write and the Setvar's answer must not hold up the events behind
        # (a press before the Setvar landed just takes the AGI path, which uses the reserved id)
        task = asyncio.create_task(self._reserve(res))
        self.reserving[linkedid] = task
        task.add_done_callback(lambda _: self.reserving.pop(linkedid, None))
        return res

    async def _reserve(self, res: Reservation) -> None:
        try:
            await self.store.reserve(res)
        except STORE_ERRORS as exc:
            self.reserved.pop(res.linkedid)
            log.warning("reservation.not_stored", error=exc.__class__.__name__, call_id=res.linkedid)
            return
        try:
            await self.ami_send({"Action": "Setvar", "Channel": res.agent_channel, "Variable": "LINKAGE_RES",
                                 "Value": res.press_var})
        except (TimeoutError, ConnectionError) as exc:
            log.warning("reservation.not_published", error=str(exc), call_id=res.linkedid)
            return
        log.info("reservation.made", ticket_id=res.ticket_id, agent=res.agent_id, call_id=res.linkedid)

    async def _reserved(self, linkedid: str) -> None:
        """The reservation's own write is done (so a completion or a drop comes after it, never before)."""
        task = self.reserving.get(linkedid)
        if task is not None:
            await asyncio.shield(task)

    def close(self) -> None:
        for task in list(self.reserving.values()):
            task.cancel()

    # ---- the press -----------------------------------------------------------------------------------
    async def pressed(self, ticket_id: str, target_name: str) -> Ticket | None:
        """UserEvent LinkagePress: the dialplan moved the call; make the ticket."""
        res = self.reserved.of_ticket(ticket_id) if TICKET_ID.match(ticket_id) else None
        if res is None:
            log.warning("press.unknown_reservation", ticket_id=ticket_id[:32])
            return None
        return await self.complete(res, target_name)

    def press(self, ticket_id: str, target_name: str,
              recorded: bool = False) -> Callable[[], Awaitable[Ticket | None]] | None:
        """UserEvent LinkagePress, off the AMI event queue (transfers/ami.py): the completion is claimed now —
        so a Hangup or a LinkagePressFailed handled next finds it in the making — and its writes are the
        returned work, which the adapter runs in the ticket's lane. None: nothing to do.
        `recorded`: UserEvent LinkagePressRecorded, sent by the hangup handler once the press's AstDB record is
        written; usually the press's own event has made the ticket already and there is nothing left to do."""
        res = self.reserved.of_ticket(ticket_id) if TICKET_ID.match(ticket_id) else None
        if res is None:
            if not recorded:
                log.warning("press.unknown_reservation", ticket_id=ticket_id[:32])
            return None
        if res.ticket_id in self.completing:
            return None  # the same press completed by another path (the resync, its own event) already
        if recorded:
            log.info("press.found_recorded", ticket_id=res.ticket_id)
        done = self._claim(res)
        return lambda: self._finish(res, target_name, done)

    async def complete(self, res: Reservation, target_name: str) -> Ticket | None:
        """The reservation becomes the created ticket (once, however many ask at the same time)."""
        running = self.completing.get(res.ticket_id)
        if running is not None:
            return await asyncio.shield(running)
        return await self._finish(res, target_name, self._claim(res))

    def _claim(self, res: Reservation) -> asyncio.Future[Ticket | None]:
        done: asyncio.Future[Ticket | None] = asyncio.get_running_loop().create_future()
        self.completing[res.ticket_id] = done
        return done

    async def _finish(self, res: Reservation, target_name: str, done: asyncio.Future[Ticket | None]) -> Ticket | None:
        ticket = None
        try:
            ticket = await self._complete(res, target_name)
        finally:
            done.set_result(ticket)
            self.completing.pop(res.ticket_id, None)
            self.unheard.discard(res.ticket_id)
        return ticket

    async def _complete(self, res: Reservation, target_name: str) -> Ticket | None:
        target = self.config.target(target_name)
        if target is None:
            log.warning("press.unknown_target", target=target_name[:32])
            return None
        structlog.contextvars.bind_contextvars(ticket_id=res.ticket_id, call_id=res.linkedid)
        await self._reserved(res.linkedid)
        try:
            ticket = await self.sending.prepared(res, target)
        except STORE_ERRORS as exc:
            self.unstored[res.ticket_id] = target.name
            log.error("press.store_unavailable", error=exc.__class__.__name__)
            return None
        except LinkageError as exc:
            log.warning("press.refused", reason=exc.message)
            return None
        self.unstored.pop(res.ticket_id, None)
        self.reserved.pop(res.linkedid)
        self.store.forget(res.linkedid)
        return ticket

    async def settled(self, ticket_id: str, wait: float = 1.0) -> None:
        """Before a dial outcome is recorded on a ticket that may still be in the making (the far PBX refused
        at once, and the AGI `transfer_failed` outran the press's event): wait for its completion — up to `wait`
        seconds for one to start, as long as it runs once started."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while (ticket_id not in self.completing and self.reserved.of_ticket(ticket_id) is not None
               and ticket_id not in self.unstored and loop.time() < deadline):
            await asyncio.sleep(0.01)
        running = self.completing.get(ticket_id)
        if running is not None:
            await asyncio.shield(running)

    async def failed(self, ticket_id: str, linkedid: str) -> None:
        """UserEvent LinkagePressFailed: Asterisk refused the BlindTransfer; the caller is still with the agent."""
        await self.settled(ticket_id)
        try:
            await self.sending.failed(ticket_id, "CONGESTION", linkedid)
        except STORE_ERRORS as exc:
            log.error("press.failure_not_recorded", error=exc.__class__.__name__)

    # ---- hang-up and resync --------------------------------------------------------------------------
    async def hung_up(self, linkedid: str) -> None:
        res = self.reserved.of_call(linkedid)
        if res is None or self.calls.get(linkedid) is not None or res.ticket_id in self.completing:
            return
        if res.ticket_id in self.unstored:
            return  # pressed: the ticket is still to be made
        await self._reserved(linkedid)
        if self.reserved.of_call(linkedid) is not res or res.ticket_id in self.completing:
            return  # taken meanwhile (a press's event came while its write finished)
        if res.ticket_id in self.unheard:  # reserved before the last login: maybe pressed while this
            try:  # controller was away, recorded after its resync (the agent's leg ended later)
                target = await self._press_record(res)
            except (TimeoutError, ConnectionError) as exc:
                log.warning("press.record_unreadable", error=str(exc))
                return  # kept: the next login's resync reads it again
            if target is not None:
                log.info("press.found_at_hangup", ticket_id=res.ticket_id)
                await self.complete(res, target)
                return
            if self.reserved.of_call(linkedid) is not res or res.ticket_id in self.completing:
                return
        self.unheard.discard(res.ticket_id)
        self.reserved.pop(linkedid)
        self.sending.drafts.stored(linkedid)
        try:
            await self.store.drop(linkedid)
        except STORE_ERRORS as exc:
            log.warning("reservation.not_dropped", error=exc.__class__.__name__)

    async def load(self) -> None:
        for res in await self.store.load():
            self.reserved.keep(res)
        log.info("reservations.loaded", count=len(self.reserved.by_linkedid))

    async def _press_record(self, res: Reservation) -> str | None:
        """The target of the press AstDB holds for this reservation's slot, if it is this reservation's."""
        if self.ami_list is None or res.slot < 0:
            return None
        replies = await self.ami_list({"Action": "DBGet", "Family": PRESS_FAMILY, "Key": str(res.slot)})
        for reply in replies:
            ticket_id, _, target = str(reply.get("Val", "")).partition(":")
            if ticket_id == res.ticket_id:
                return target
        return None

    async def resync(self) -> None:
        """After an AMI login and the registry's resync: presses this run did not hear are completed; the
        reservations of calls that ended unpressed go."""
        for res in self.reserved.all():
            if res.ticket_id in self.completing:
                continue
            try:
                target = await self._press_record(res)
            except (TimeoutError, ConnectionError) as exc:
                log.warning("press.record_unreadable", error=str(exc))
                return
            if target is not None:
                log.info("press.found_in_resync", ticket_id=res.ticket_id)
                self.unheard.discard(res.ticket_id)
                await self.complete(res, target)
            else:  # a press of this call may be recorded only as its agent's leg ends: read again then
                self.unheard.add(res.ticket_id)
                if self.calls.get(res.linkedid) is None:
                    await self.hung_up(res.linkedid)

    async def run(self, login: asyncio.Event) -> None:
        """Owned task: load the reservations, then after every AMI login (once the registry is rebuilt)
        resync; presses whose ticket could not be stored are tried again every RETRY_EVERY seconds."""
        while True:
            try:
                await self.load()
                break
            except STORE_ERRORS as exc:
                log.warning("reservations.not_loaded", error=exc.__class__.__name__)
                await asyncio.sleep(RETRY_EVERY)
        while True:
            raise_if_cancelled()
            if await wait_event(login, RETRY_EVERY):
                login.clear()
                for _ in range(50):  # the registry's own resync runs on the same login
                    if self.calls.live:
                        break
                    await asyncio.sleep(0.1)
                await self.resync()
            try:
                await self.store.flush()
            except STORE_ERRORS:
                pass  # kept for the next round
            for ticket_id, target in list(self.unstored.items()):
                res = self.reserved.of_ticket(ticket_id)
                if res is None:
                    self.unstored.pop(ticket_id, None)
                else:
                    await self.complete(res, target)
