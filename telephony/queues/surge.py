"""Surge support (突发事件县级座席支援): decided from the waiting callers the queue's events announce.

On when `waiting_on` callers wait or the oldest has waited `oldest_on` seconds; off again only when at most
`waiting_off` wait and the oldest has waited at most `oldest_off` (hysteresis: no flapping at the bound). The
dialplan reads the state from a PBX global (LINKAGE_SURGE, set over AMI like the harassment flags); while it is
on, a new hotline call asks the `surge` FastAGI route for a county seat (the configured ones in turn) and the
controller makes it a ticket of mode surge, pushed ahead of the call like every linked call's.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from telephony.config import SiteConfig
from telephony.errors import LinkageError
from telephony.ids import CALLER_NUMBER
from telephony.queues.metrics import QueueMetrics
from telephony.tickets.services import TicketService


class Waiters(Protocol):
    """The callers waiting in the queue (queues/services.py mirrors them from app_queue's events)."""

    waiting: dict[str, Any]

    def oldest_wait(self, now: float | None = None) -> float: ...

log = structlog.get_logger("queues")
SURGE_VAR = "LINKAGE_SURGE"


@dataclass
class SurgeState:
    active: bool = False
    since: float = 0.0
    calls: int = 0  # calls sent to the county seats since it began
    turn: int = 0  # the next county seat, in turn
    history: list[dict[str, Any]] = field(default_factory=list)


class SurgeSupport:
    def __init__(self, config: SiteConfig, queue: Waiters, send: Callable[[dict[str, str]], Awaitable[Any]],
                 tickets: TicketService, metrics: QueueMetrics, notify: Callable[[dict[str, Any]], None]) -> None:
        self.config = config
        self.settings = config.queue.surge
        self.queue = queue
        self.send = send
        self.tickets = tickets
        self.metrics = metrics
        self.notify = notify
        self.state = SurgeState()

    @property
    def active(self) -> bool:
        return self.state.active

    def view(self) -> dict[str, Any]:
        s, st = self.settings, self.state
        return {"configured": bool(s.to), "active": st.active, "since": st.since, "calls": st.calls,
                "to": list(s.to), "history": st.history[-20:],
                "on": {"waiting": s.waiting_on, "oldest": s.oldest_on},
                "off": {"waiting": s.waiting_off, "oldest": s.oldest_off}}

    def due(self, now: float | None = None) -> bool:
        """What the state should be now, from the waiting callers and the present state (hysteresis)."""
        s = self.settings
        if not s.to:
            return False
        waiting, oldest = len(self.queue.waiting), self.queue.oldest_wait(now)
        if not self.state.active:
            return waiting >= s.waiting_on or oldest >= s.oldest_on
        return not (waiting <= s.waiting_off and oldest <= s.oldest_off)

    async def check(self) -> None:
        due = self.due()
        if due == self.state.active:
            return
        now = time.time()
        self.state.active = due
        entry = {"at": now, "active": due, "waiting": len(self.queue.waiting),
                 "oldest": round(self.queue.oldest_wait(now), 1)}
        self.state.history.append(entry)
        del self.state.history[:-100]
        if due:
            self.state.since, self.state.calls = now, 0
        self.metrics.surge.set(1 if due else 0)
        log.warning("queue.surge_on" if due else "queue.surge_off", waiting=entry["waiting"], oldest=entry["oldest"])
        await self.put_var()
        self.notify({"type": "surge", "surge": self.view()})

    async def put_var(self) -> None:
        """The state into the PBX global the dialplan reads (again after every AMI login)."""
        try:
            await self.send({"Action": "Setvar", "Variable": SURGE_VAR, "Value": "1" if self.state.active else ""})
        except (TimeoutError, ConnectionError, OSError) as exc:  # the next login's resync sets it again
            log.warning("queue.surge_var_failed", error=str(exc))

    async def call(self, linkedid: str, uniqueid: str, caller_number: str) -> tuple[str, str] | None:
        """A new hotline call while in surge: a ticket of mode surge to the next county seat, and the dial
        string of its trunk; None (the call stays in our queue) when surge is off or no ticket could be made."""
        s = self.settings
        if not self.state.active or not s.to:
            return None
        peer = self.config.peer(s.to[self.state.turn % len(s.to)])
        self.state.turn += 1
        if peer is None:
            return None
        number = caller_number if CALLER_NUMBER.match(caller_number or "") else ""
        try:
            ticket = await self.tickets.create(
                target_site=peer.name, target_platform=peer.platform, caller_number=number, agent_id="",
                linkedid=linkedid, uniqueids=[uniqueid], draft={"division": peer.division} if peer.division else {},
                path=[self.config.site.name, peer.name], mode="surge")
        except LinkageError as exc:
            log.warning("queue.surge_ticket_failed", error=exc.message)
            return None
        self.state.calls += 1
        self.metrics.surged.labels(peer.name).inc()
        log.info("queue.surge_call", ticket_id=ticket.id, to=peer.name)
        return ticket.id, f"PJSIP/{peer.dial}@trunk-{peer.name}"
