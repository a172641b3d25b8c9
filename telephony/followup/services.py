"""Follow-up calls (智能回访): when a ticket this site sent is resolved by the other platform, the site calls the
citizen back on the ticket's own number, plays the prompt and reads a satisfaction key 1–5, recorded as
`followed_up` (the peer receives it like any event).

Each ticket's follow-up is a job in Redis, so a restart loses none: `linkage:followup:due` (a sorted set: ticket
id → when it next needs us) and `linkage:followup:job:<id>` (attempts, state, last outcome; no caller data — the
number is read from the sealed ticket when it is dialled, so nothing else is ever dialled).

    scheduled ──due, within hours──→ dialling ──key 1–5──→ done (followed_up)
        ↑                              │ ──no answer / busy / lease ran out, attempts left──→ scheduled
        └──────────────────────────────┘ ──last attempt, or answered without a key──→ manual (a console task)

A job that is due outside the calling hours waits for their next opening. While dialling, the job is due again
when the call's lease runs out (ring time plus the prompt), so an outcome lost with a crashed controller counts
as an unanswered attempt instead of leaving the job stuck. A ticket that is no longer `resolved` (closed,
cancelled, followed up by hand) drops its job.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import structlog

from telephony.ami import AmiSend
from telephony.config import SiteConfig
from telephony.errors import LinkageError
from telephony.followup.hours import next_open
from telephony.ids import CALLER_NUMBER, TICKET_ID
from telephony.tickets.models import Event, Ticket
from telephony.tickets.services import TicketService
from telephony.tickets.store import STORE_ERRORS
from telephony.waits import wait_event

log = structlog.get_logger("followup")
DUE, JOB, MANUAL = "linkage:followup:due", "linkage:followup:job:", "linkage:followup:manual"
PROMPT_SECONDS = 60  # the prompt, three tries at a key and the thanks: what a call may take once answered
SCORES = {"5": "satisfied", "4": "satisfied", "3": "basically_satisfied", "2": "dissatisfied", "1": "dissatisfied"}
REASONS = {"5": "busy", "3": "no_answer", "8": "congestion", "1": "hung_up"}  # OriginateResponse Reason
ENDS = {"followed_up", "closed", "cancelled"}  # the follow-up is over, however it happened


class FollowupService:
    def __init__(self, config: SiteConfig, tickets: TicketService, ami_send: AmiSend,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.f = config.followup
        self.tickets = tickets
        self.redis = tickets.store.redis
        self.ami_send = ami_send
        self.clock = clock
        self.wake = asyncio.Event()
        self.tasks: set[asyncio.Task[Any]] = set()

    @property
    def enabled(self) -> bool:
        return self.f.gateway is not None

    # ---- what starts and ends a job ------------------------------------------------------------------
    def on_change(self, ticket: Ticket, event: Event) -> None:
        """TicketHooks.changed: the other platform resolved a ticket we sent → schedule its follow-up call;
        a follow-up recorded by hand, a close or a cancel ends it."""
        here = self.config.site.name
        if not self.enabled or ticket.source.site != here:
            return
        if event.type == "resolved" and event.actor.get("site") != here and CALLER_NUMBER.match(ticket.caller_number):
            self._spawn(self.schedule(ticket.id, self.clock() + self.f.delay))
        elif event.type in ENDS:
            self._spawn(self.drop(ticket.id))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def schedule(self, ticket_id: str, at: float) -> None:
        if await self.redis.hsetnx(JOB + ticket_id, "state", "scheduled"):  # once per ticket
            await self.redis.hset(JOB + ticket_id, mapping={"attempts": 0, "next_at": at})
            await self.redis.zadd(DUE, {ticket_id: at})
            log.info("followup.scheduled", ticket_id=ticket_id, at=round(at, 3))
            self.wake.set()

    async def drop(self, ticket_id: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(DUE, ticket_id)
            pipe.zrem(MANUAL, ticket_id)
            pipe.hset(JOB + ticket_id, "state", "done")
            pipe.expire(JOB + ticket_id, 7 * 86400)
            await pipe.execute()

    async def cancel(self, ticket_id: str) -> bool:
        """Call an open follow-up off (a supervisor's decision); False when there was none."""
        state = await self.redis.hget(JOB + ticket_id, "state")
        if state not in (b"scheduled", b"dialling", b"manual"):
            return False
        await self.drop(ticket_id)
        log.info("followup.cancelled", ticket_id=ticket_id)
        return True

    # ---- the worker ----------------------------------------------------------------------------------
    async def run(self) -> None:
        """Acts on due jobs until cancelled; sleeps until the next one is due or a new one is scheduled."""
        if not self.enabled:
            return
        while True:
            try:
                pause = await self._round()
            except STORE_ERRORS as exc:  # Redis away (restarting): the jobs wait there; try again shortly
                log.warning("followup.store_unavailable", error=exc.__class__.__name__)
                pause = 1.0
            self.wake.clear()
            # a stop that redis-py swallowed during the round is raised here (telephony/waits.py): the
            # controller's SIGTERM once waited on this loop for ten minutes
            await wait_event(self.wake, pause)

    async def _round(self) -> float:
        """Act on the jobs due now; the seconds until the next one."""
        now = self.clock()
        for raw in await self.redis.zrangebyscore(DUE, "-inf", now, start=0, num=50):
            tid = _text(raw)
            try:
                await self._act(tid, now)
            except STORE_ERRORS:
                raise
            except Exception as exc:  # one job's trouble (a refused transition, say) never stops the rest
                log.error("followup.act_failed", ticket_id=tid, error=exc.__class__.__name__)
                await self.redis.zadd(DUE, {tid: now + 5})
        nxt = await self.redis.zrange(DUE, 0, 0, withscores=True)
        return min(max(float(nxt[0][1]) - self.clock(), 0.05), 5.0) if nxt else 5.0

    async def _act(self, tid: str, now: float) -> None:
        job = {_text(k): _text(v) for k, v in (await self.redis.hgetall(JOB + tid)).items()}
        ticket = await self.tickets.store.get(tid) if TICKET_ID.match(tid) else None
        if ticket is None or ticket.status != "resolved":
            await self.drop(tid)
            return
        if job.get("state") == "dialling":  # its lease ran out: the outcome was lost (a restart, a lost event)
            await self.unanswered(tid, "no_outcome")
            return
        opens = next_open(now, self.f.hours, self.f.timezone)
        if opens > now:
            await self.redis.zadd(DUE, {tid: opens})
            log.info("followup.waiting_for_hours", ticket_id=tid, opens=round(opens, 3))
            return
        await self._dial(ticket, int(job.get("attempts", "0")) + 1, now)

    async def _dial(self, ticket: Ticket, attempt: int, now: float) -> None:
        number = ticket.caller_number
        if not CALLER_NUMBER.match(number):  # only the ticket's own, validated number is ever dialled
            await self._manual(ticket.id, "no_number")
            return
        await self.redis.hset(JOB + ticket.id, mapping={"state": "dialling", "attempts": attempt})
        await self.redis.zadd(DUE, {ticket.id: now + self.f.ring_seconds + PROMPT_SECONDS})  # the lease
        caller_id = self.f.caller_id or self.config.accounts.citizen.dial
        log.info("followup.dialling", ticket_id=ticket.id, attempt=attempt)
        await self.ami_send({"Action": "Originate", "Channel": f"PJSIP/{number}@followup-out",
                             "Context": "linkage-followup", "Exten": ticket.id, "Priority": "1",
                             "Timeout": str(self.f.ring_seconds * 1000), "CallerID": f"<{caller_id}>",
                             "Async": "true"})

    # ---- outcomes ------------------------------------------------------------------------------------
    async def keyed(self, tid: str, key: str, tries: str) -> None:
        """The dialplan read the citizen's key (FastAGI followup_key): 1–5 is recorded; none (hung up, or no
        valid key after the tries) leaves a manual task — the citizen answered, so we do not call again."""
        if not TICKET_ID.match(tid) or await self.redis.hget(JOB + tid, "state") != b"dialling":
            return
        if key not in SCORES:
            await self._manual(tid, "no_key")
            return
        payload = {"satisfaction": SCORES[key], "score": int(key), "method": "phone", "automated": True,
                   "invalid_keys": int(tries) if tries.isdigit() else 0}
        try:
            await self.tickets.record(tid, "followed_up", "", payload)
        except LinkageError as exc:
            log.warning("followup.not_recorded", ticket_id=tid, reason=exc.message)
        await self.drop(tid)
        log.info("followup.answered", ticket_id=tid, score=int(key))

    async def unanswered(self, tid: str, reason: str) -> None:
        """No answer, busy, unreachable: again after retry_seconds, or a manual task after the last attempt."""
        job = await self.redis.hgetall(JOB + tid)
        if job.get(b"state") != b"dialling":
            return
        attempts = int(job.get(b"attempts", b"0"))
        if attempts >= self.f.attempts:
            await self._manual(tid, reason)
            return
        at = self.clock() + self.f.retry_seconds
        await self.redis.hset(JOB + tid, mapping={"state": "scheduled", "outcome": reason, "next_at": at})
        await self.redis.zadd(DUE, {tid: at})
        log.info("followup.retry", ticket_id=tid, reason=reason, attempts=attempts)
        self.wake.set()

    async def originate_failed(self, tid: str, reason_code: str) -> None:
        await self.unanswered(tid, REASONS.get(reason_code, "unreachable"))


# the outcome codes a job records (the console words them): busy, no_answer, congestion, hung_up, unreachable,
# no_outcome (the lease ran out), no_key (answered without a key), no_number

    async def _manual(self, tid: str, reason: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(DUE, tid)
            pipe.zadd(MANUAL, {tid: self.clock()})
            pipe.hset(JOB + tid, mapping={"state": "manual", "outcome": reason})
            await pipe.execute()
        log.warning("followup.manual", ticket_id=tid, reason=reason)

    # ---- for the console -----------------------------------------------------------------------------
    async def jobs(self) -> list[dict[str, Any]]:
        """Every open follow-up: scheduled or dialling (by when it is next due) and the manual tasks."""
        ids = [_text(i) for i in await self.redis.zrange(DUE, 0, 199)]
        ids += [_text(i) for i in await self.redis.zrange(MANUAL, 0, 199)]
        out = []
        for tid in ids:
            job = {_text(k): _text(v) for k, v in (await self.redis.hgetall(JOB + tid)).items()}
            if job:
                out.append({"ticket_id": tid, "state": job.get("state", ""), "attempts": int(job.get("attempts", 0)),
                            "outcome": job.get("outcome", ""), "next_at": float(job.get("next_at", 0) or 0)})
        return out

    def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
