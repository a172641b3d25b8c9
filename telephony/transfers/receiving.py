"""The receiving side of a transfer: where a linked call that arrives over the trunk goes, and what its ringing
means for the ticket.

`route` makes sure the ticket is here (pushed, or fetched by the Call-Info reference within
`transfer.fetch_timeout`; all of it within `transfer.route_budget`, after which the call rings an agent without
its ticket — never dropped under overload — and what happens to it is kept against its X-Linkage-Id until the
ticket lands), then names the agent to ring, or — on a city site — passes the call on: down to the
county site that owns the ticket's division (市级互转), or up towards the target of a county's ticket. The dial
outcomes on the trunk channel (transfers/ami.py) become offered, signed_for (签收) and abandoned.
`overflow` sends an unanswered emergency on to the overflow site (county seats), once.

Fast path: when a pushed ticket for this site is verified (its `delivered` applied, `on_landed`; its durable
write follows under the ticket's lock), the controller picks the agent at once and publishes the route to the
PBX as the global `LINKAGE_ROUTE_<ticket id>` (AMI Setvar). A call that finds it
dials without a FastAGI round trip (and tells us with the UserEvent LinkageArrived, `fast_arrived`); one that
finds nothing (its push has not landed yet, or the route is a relay or the queue) asks `route_in` as before.
Either way the ticket is held here (verified, as route_in's answer) before the agent's phone rings, and its
offered / signed_for records wait for its write. A route no call took is cleared after
ROUTE_TTL.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from telephony.ami import AmiSend
from telephony.calls.registry import CallRegistry
from telephony.config import SiteConfig
from telephony.delivery.client import PeerClient, PeerError
from telephony.errors import LinkageError
from telephony.ids import TICKET_ID
from telephony.tickets.models import Event, Ticket, parse_ticket
from telephony.tickets.services import TicketService
from telephony.transfers.arrivals import Arrivals

log = structlog.get_logger("transfers")
CALL_INFO = re.compile(r"<(https?://[^>\s]{1,300})>")
UNANSWERED = ("BUSY", "NOANSWER", "CHANUNAVAIL", "CONGESTION")
QUEUE = "queue"  # LINKAGE_DEST: no agent free, the call waits in the site's queue (linkage.conf)
ROUTE_VAR = "LINKAGE_ROUTE_"  # + ticket id: the PBX global of a landed ticket's route (the fast path)
ROUTE_TTL = 30.0  # seconds a published route waits for its call before it is cleared
RECENT_ROUTED = 256  # tickets remembered as routed by route_in (their call came before their push's write)
MIN_ROUTE_TIME = 0.2  # seconds a found ticket's routing (a city's push down) gets even when the budget is spent


@dataclass(frozen=True)
class Route:
    dest: str  # the Dial string
    relay: bool  # onward over a trunk (no agent here)


class ReceivingService:
    def __init__(self, config: SiteConfig, calls: CallRegistry, tickets: TicketService,
                 peers: Mapping[str, PeerClient], arrivals: Arrivals, ami_send: AmiSend | None = None) -> None:
        """Without `ami_send` no route is published (every linked call asks route_in)."""
        self.config = config
        self.calls = calls
        self.tickets = tickets
        self.peers = peers
        self.arrivals = arrivals
        self.ami_send = ami_send
        self.published: OrderedDict[str, float] = OrderedDict()  # ticket id -> when its route was published
        self.routed: OrderedDict[str, None] = OrderedDict()  # tickets whose call route_in routed, the latest
        self.offered_routes: OrderedDict[str, None] = OrderedDict()  # tickets whose route was published, the latest
        self.tasks: set[asyncio.Task[Any]] = set()
        self.inbound: dict[str, str] = {}  # trunk channel uniqueid -> ticket id, while its dial is open
        self.available: Callable[[str], bool] = lambda _: True  # in the queue and not paused (queues/)

    async def route(self, ticket_id: str, trunk_uniqueid: str,
                    call_info: Callable[[], Awaitable[str]], linkedid: str = "") -> Route:
        """Where the linked call on `trunk_uniqueid` goes. `call_info` reads the INVITE's Call-Info header, only
        needed when the ticket is neither here nor pushed in time. A call that stays here is remembered with its
        ticket by `linkedid` (its agent may return it, or transfer it onward)."""
        ticket = None
        deadline = asyncio.get_running_loop().time() + self.config.transfer.route_budget
        if TICKET_ID.match(ticket_id):
            try:
                async with asyncio.timeout_at(deadline):
                    ticket = await self._find(ticket_id, call_info)
            except TimeoutError:
                # overload (the push, the fetch or our own Redis too slow): the call rings without its ticket
                log.warning("route_in.ticket_late", budget=self.config.transfer.route_budget)
            self.routed[ticket_id] = None  # its call came first: no route to publish when the write is done
            while len(self.routed) > RECENT_ROUTED:
                self.routed.popitem(last=False)
        else:
            log.warning("route_in.no_ticket_header")
        try:
            async with asyncio.timeout_at(max(deadline, asyncio.get_running_loop().time() + MIN_ROUTE_TIME)):
                route = await self._route(ticket)
        except TimeoutError:
            log.warning("route_in.route_late", budget=self.config.transfer.route_budget)
            agent = self._pick_agent()
            route = Route(f"PJSIP/agent{agent}" if agent else QUEUE, False)
        if not route.relay and ticket is not None:
            self.inbound[trunk_uniqueid] = ticket.id
            self.calls.arrived(linkedid or trunk_uniqueid, ticket.id)
        elif ticket is None and TICKET_ID.match(ticket_id) and not route.relay:
            # the sender could not push it (its controller was down at the key press, or behind under load):
            # what happens to the call is kept against the header's id and put on the ticket once it lands
            # (TicketService.observe); the agent's call knows its ticket by that id
            self.inbound[trunk_uniqueid] = ticket_id
            self.calls.arrived(linkedid or trunk_uniqueid, ticket_id)
        return route

    async def _find(self, ticket_id: str, call_info: Callable[[], Awaitable[str]]) -> Ticket | None:
        ticket = await self.arrivals.ticket(ticket_id, self.tickets.store.get)
        if ticket is None:
            ticket = await self._fetch_by_reference(ticket_id, await call_info())
        return ticket

    # ---- fast path: the route published when the ticket lands -------------------------------------
    def on_landed(self, ticket: Ticket) -> None:
        """TicketHooks.landed: a pushed ticket for this site is verified, its `delivered` applied (the write
        follows under the ticket's lock, and anything that changes the ticket waits for it — route_in answers
        at this point too): publish where its call goes now, so the INVITE that follows finds it."""
        if ticket.history and ticket.history[-1].type == "delivered":
            self.on_change(ticket, ticket.history[-1])

    def on_change(self, ticket: Ticket, event: Event) -> None:
        """TicketHooks.changed: a pushed ticket for this site is stored (its `delivered` here): publish where
        its call goes, when that is an agent of this site — once, if `on_landed` did not already."""
        if (self.ami_send is None or event.type != "delivered" or ticket.target.site != self.config.site.name
                or event.actor.get("site") != self.config.site.name or not ticket.linkedid
                or not TICKET_ID.match(ticket.id) or self._goes_down(ticket)):
            return
        if ticket.id in self.arrivals.waiting or ticket.id in self.routed or event.payload.get("via") == "reference":
            return  # its call is here already (route_in waits for this push, or fetched it): nothing to publish
        if ticket.id in self.offered_routes:
            return  # published at its landing (or a second push of the same ticket)
        self.offered_routes[ticket.id] = None
        while len(self.offered_routes) > RECENT_ROUTED:
            self.offered_routes.popitem(last=False)
        agent = self._pick_agent()
        if not agent:
            return  # the queue: route_in decides when the call comes
        task = asyncio.get_running_loop().create_task(self._publish(ticket.id, f"PJSIP/agent{agent}"))
        self.tasks.add(task)  # owned until done; cancelled by close()
        task.add_done_callback(self.tasks.discard)

    async def _publish(self, ticket_id: str, dest: str) -> None:
        assert self.ami_send is not None
        now = time.monotonic()
        stale = [t for t, at in self.published.items() if now - at > ROUTE_TTL]
        self.published[ticket_id] = now
        try:
            await self.ami_send({"Action": "Setvar", "Variable": ROUTE_VAR + ticket_id, "Value": dest})
            for old in stale:  # routes no call took (the call failed before it reached us)
                self.published.pop(old, None)
                await self.ami_send({"Action": "Setvar", "Variable": ROUTE_VAR + old, "Value": ""})
        except (TimeoutError, ConnectionError) as exc:
            log.warning("route.not_published", error=str(exc))

    def fast_arrived(self, ticket_id: str, trunk_uniqueid: str, linkedid: str) -> None:
        """UserEvent LinkageArrived: a linked call took its published route (the dialplan cleared it)."""
        if not TICKET_ID.match(ticket_id):
            return
        self.published.pop(ticket_id, None)
        self.inbound[trunk_uniqueid] = ticket_id
        self.calls.arrived(linkedid or trunk_uniqueid, ticket_id)

    def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()

    def _goes_down(self, ticket: Ticket) -> bool:
        """A city site passes this ticket down to the county that owns its division (route_in does that)."""
        return self.config.site.level == "city" and bool(ticket.division) and any(
            p.level == "county" and p.division == ticket.division and p.platform == self.config.site.platform
            for p in self.config.peers)

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
        agent = self._pick_agent()
        return Route(f"PJSIP/agent{agent}" if agent else QUEUE, False)

    async def _route_down(self, ticket: Ticket, county: str) -> None:
        """市级互转: the city hands the ticket to the county that owns its division; the ticket goes first."""
        try:
            await self.tickets.route_to(ticket.id, county)
            log.info("route_in.pushed_down", to=county)
        except LinkageError as exc:
            log.warning("route_in.push_down_failed", error=exc.message)

    def _pick_agent(self) -> str:
        """The first agent, in configured order, in the queue (logged in, not paused) with no live call leg.
        With none free: "" (the call waits in the queue, ahead of fresh calls), unless the queue rings agents
        in calls (queue.ringinuse), when the first agent in the queue rings as before."""
        busy = self.calls.busy()
        ready = [a.id for a in self.config.accounts.agents if self.available(a.id)]
        for agent in ready:
            if f"agent{agent}" not in busy:
                return agent
        return ready[0] if ready and self.config.queue.ringinuse else ""

    async def _fetch_by_reference(self, ticket_id: str, ref: str) -> Ticket | None:
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
            async with asyncio.timeout(self.config.transfer.fetch_timeout):
                data = await client.fetch_ticket(url)
            ticket, _ = await self.tickets.receive(parse_ticket(data), via="reference")
            log.info("route_in.fetched_by_reference")
            return ticket
        except (PeerError, LinkageError, TimeoutError) as exc:
            log.warning("route_in.fetch_failed", error=str(exc))
            return None

    async def overflow(self, ticket_id: str, status: str, trunk_uniqueid: str) -> Route | None:
        """Nobody here answered a linked call. An emergency goes on to the overflow site, once; anything else
        ends here (None) and the sender recalls its caller."""
        peer = self.config.peer(self.config.transfer.overflow) if self.config.transfer.overflow else None
        if peer is None or status not in UNANSWERED:
            return None
        ticket = await self.tickets.store.get(ticket_id) if TICKET_ID.match(ticket_id) else None
        if ticket is None or ticket.target.site != self.config.site.name or peer.name in ticket.path:
            return None
        if ticket.category not in self.config.threeway.emergency_categories:
            log.info("overflow.not_emergency", dial_status=status)
            return None
        try:
            await self.tickets.route_to(ticket_id, peer.name, reason=f"overflow: {status.lower()}")
        except LinkageError as exc:
            log.warning("overflow.refused", reason=exc.message)
            return None
        log.warning("overflow.routed", to=peer.name, dial_status=status)
        self.inbound.pop(trunk_uniqueid, None)
        return Route(f"PJSIP/{peer.dial}@trunk-{peer.name}", True)

    # ---- dial outcomes on the trunk channel (from AMI) ----------------------------------------------
    def hung_up(self, trunk_uniqueid: str) -> None:
        """A linked call that ended before any dial outcome."""
        self.inbound.pop(trunk_uniqueid, None)

    def ticket_of(self, trunk_uniqueid: str) -> str | None:
        return self.inbound.get(trunk_uniqueid)

    async def dial_began(self, ticket_id: str, agent: str) -> None:
        await self._record(ticket_id, "offered", agent)

    async def dial_ended(self, trunk_uniqueid: str, ticket_id: str, agent: str, status: str) -> None:
        record = self.ended(trunk_uniqueid, ticket_id, agent, status)
        if record is not None:
            await record()

    def ended(self, trunk_uniqueid: str, ticket_id: str, agent: str,
              status: str) -> Callable[[], Awaitable[None]] | None:
        """A dial outcome: the call is forgotten now (the in-memory part, on the AMI event queue); the returned
        work records it on the ticket (transfers/ami.py runs it in the ticket's lane). None: not an outcome."""
        if status == "ANSWER":
            self.inbound.pop(trunk_uniqueid, None)
            return lambda: self._record(ticket_id, "signed_for", agent)
        if status in ("CANCEL", *UNANSWERED):
            self.inbound.pop(trunk_uniqueid, None)
            reason = "caller hung up while the phone rang" if status == "CANCEL" else "not answered"
            return lambda: self._record(ticket_id, "abandoned", agent,
                                        {"reason": reason, "dial_status": status.lower()})
        return None

    async def _record(self, ticket_id: str, event_type: str, agent: str,
                      payload: dict[str, str] | None = None) -> None:
        try:
            await self.tickets.observe(ticket_id, event_type, agent, payload)
        except LinkageError as exc:
            log.warning("transfer.record_failed", error=exc.message)
