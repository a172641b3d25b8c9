"""The queue context: what the controller knows of the site's app_queue queue, and what it asks of it.

Asterisk is the record of the members (dynamic members, `persistentmembers` keeps them across a PBX restart);
the controller mirrors them from app_queue's AMI events and asks for changes over AMI. One fact is ours: who
logged out on purpose (a Redis set), so that the first login of a fresh PBX can put every other configured agent
in the queue without putting back someone who went home.

Surge support (突发事件县级座席支援, queues/surge.py) is decided from the waiting callers mirrored here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

import redis.asyncio as aioredis
import structlog
from prometheus_client import CollectorRegistry

from telephony.config import SiteConfig
from telephony.config.schema import PAUSE_REASONS
from telephony.errors import Conflict, InvalidInput, NotFound, Unavailable
from telephony.pbx.render import queue_name
from telephony.queues.metrics import QueueMetrics
from telephony.queues.surge import SurgeSupport
from telephony.tickets.services import TicketService

log = structlog.get_logger("queues")
AmiSend = Callable[[dict[str, str]], Awaitable[Any]]
AmiList = Callable[[dict[str, str]], Awaitable[list[dict[str, str]]]]
Notify = Callable[[dict[str, Any]], None]
OUT_KEY = "linkage:queue:{site}:out"  # agents who logged out on purpose
ACTIONS = ("login", "logout", "pause", "unpause")


@dataclass
class Member:
    agent: str
    logged_in: bool = False
    paused: bool = False
    reason: str = ""
    calls_taken: int = 0
    since: float = 0.0  # when the present state began (epoch seconds)


@dataclass
class Waiting:
    uniqueid: str
    joined: float  # epoch seconds
    linked: bool  # a call from another platform's trunk (waits ahead of fresh ones)


class QueueService:
    def __init__(self, config: SiteConfig, redis: aioredis.Redis, ami_send: AmiSend, ami_list: AmiList,
                 tickets: TicketService, metrics: QueueMetrics | None = None, notify: Notify | None = None) -> None:
        self.config = config
        self.queue = queue_name(config)
        self.redis = redis
        self.send = ami_send
        self.list = ami_list
        self.tickets = tickets
        self.metrics = metrics or QueueMetrics(CollectorRegistry())
        self.notify = notify or (lambda _: None)
        self.out_key = OUT_KEY.format(site=config.site.name)
        self.agents = [a.id for a in config.accounts.agents]
        self.members: dict[str, Member] = {a: Member(a) for a in self.agents}
        self.known = False  # the members were read from the PBX since the last login
        self.waiting: dict[str, Waiting] = {}
        self.surge = SurgeSupport(config, self, ami_send, tickets, self.metrics, self.notify)

    # ---- reads -------------------------------------------------------------------------------------------
    def available(self, agent: str) -> bool:
        """Logged in and not paused; before the queue was read, every agent is (the safe direction)."""
        member = self.members.get(agent)
        return not self.known or (member is not None and member.logged_in and not member.paused)

    def oldest_wait(self, now: float | None = None) -> float:
        now = time.time() if now is None else now
        return max((now - w.joined for w in self.waiting.values()), default=0.0)

    def view(self) -> dict[str, Any]:
        now = time.time()
        waiting = sorted(self.waiting.values(), key=lambda w: (not w.linked, w.joined))
        return {"queue": self.queue, "known": self.known,
                "members": [asdict(self.members[a]) for a in self.agents],
                "waiting": [{"position": i + 1, "wait": round(now - w.joined, 1), "linked": w.linked}
                            for i, w in enumerate(waiting)],
                "oldest_wait": round(self.oldest_wait(now), 1), "surge": self.surge.view(),
                "reasons": list(PAUSE_REASONS)}

    # ---- agents' requests (console) ----------------------------------------------------------------------
    async def act(self, agent: str, action: str, reason: str = "") -> Member:
        if agent not in self.members:
            raise NotFound(f"agent {agent} is not an agent of this site")
        if action not in ACTIONS:
            raise InvalidInput(f"action must be one of {', '.join(ACTIONS)}")
        if action == "pause":
            reason = reason or PAUSE_REASONS[0]
            if reason not in PAUSE_REASONS:
                raise InvalidInput(f"reason must be one of {', '.join(PAUSE_REASONS)}")
        elif reason:
            raise InvalidInput("a reason is given only with pause")
        iface = f"PJSIP/agent{agent}"
        if action == "login":
            request = {"Action": "QueueAdd", "Queue": self.queue, "Interface": iface, "MemberName": agent,
                       "StateInterface": iface}
        elif action == "logout":
            request = {"Action": "QueueRemove", "Queue": self.queue, "Interface": iface}
        else:
            if not self.members[agent].logged_in and self.known:
                raise Conflict(f"agent {agent} is not logged in to the queue", agent=agent)
            request = {"Action": "QueuePause", "Queue": self.queue, "Interface": iface,
                       "Paused": "true" if action == "pause" else "false"}
            if action == "pause":
                request["Reason"] = reason  # one of PAUSE_REASONS: never the agent's own text
        reply = await self._ami(request)
        message = str(reply.get("Message", ""))
        if reply.get("Response") != "Success" and "Already there" not in message and "Not there" not in message:
            raise Unavailable(f"the PBX refused {action}: {message[:120]}")
        # the AMI event that follows updates the member too; the answer must already show the change
        if action == "logout":
            await self.redis.sadd(self.out_key, agent)
            self._set(agent, logged_in=False, paused=False, reason="")
        elif action == "login":
            await self.redis.srem(self.out_key, agent)
            self._set(agent, logged_in=True)
        else:
            self._set(agent, paused=action == "pause", reason=reason)
        log.info("queue.member_changed", agent=agent, action=action, reason=reason)
        return self.members[agent]

    async def _ami(self, request: dict[str, str]) -> dict[str, str]:
        try:
            reply = await self.send(request)
        except (TimeoutError, ConnectionError, OSError) as exc:
            raise Unavailable(f"the PBX is not reachable: {exc}") from exc
        return {str(k): str(v) for k, v in reply.items()} if hasattr(reply, "items") else {}

    # ---- AMI ---------------------------------------------------------------------------------------------
    async def resync(self) -> None:
        """After a login: read the members and waiting callers; put in every configured agent that is neither
        there nor logged out on purpose; put the surge state back into the PBX."""
        try:
            messages = await self.list({"Action": "QueueStatus", "Queue": self.queue})
        except (TimeoutError, ConnectionError, OSError) as exc:
            log.warning("queue.resync_failed", error=str(exc))
            return
        present: set[str] = set()
        self.waiting = {}
        now = time.time()
        for m in messages:
            if m.get("Queue") != self.queue:
                continue
            if m.get("Event") == "QueueMember":
                agent = _agent_of(m)
                if agent in self.members:
                    present.add(agent)
                    self._set(agent, logged_in=True, paused=m.get("Paused") == "1",
                              reason=m.get("PausedReason", "") if m.get("Paused") == "1" else "",
                              calls_taken=_int(m.get("CallsTaken")))
            elif m.get("Event") == "QueueEntry" and m.get("Uniqueid"):
                self.waiting[m["Uniqueid"]] = Waiting(m["Uniqueid"], now - _int(m.get("Wait")),
                                                      m.get("Channel", "").startswith("PJSIP/trunk-"))
        out = {a.decode() if isinstance(a, bytes) else str(a) for a in await self.redis.smembers(self.out_key)}
        for agent in self.agents:
            if agent not in present:
                self._set(agent, logged_in=False, paused=False, reason="")
                if agent not in out:
                    iface = f"PJSIP/agent{agent}"
                    reply = await self._ami({"Action": "QueueAdd", "Queue": self.queue, "Interface": iface,
                                             "MemberName": agent, "StateInterface": iface})
                    if reply.get("Response") == "Success":
                        self._set(agent, logged_in=True)
        self.known = True
        await self.surge.put_var()
        self._observe()
        log.info("queue.resynced", members=sum(m.logged_in for m in self.members.values()),
                 waiting=len(self.waiting))

    def on_event(self, event: dict[str, str]) -> bool:
        """One app_queue event for our queue; True if it changed what is shown."""
        if event.get("Queue") != self.queue:
            return False
        name = event.get("Event")
        if name == "QueueMemberAdded":
            agent = _agent_of(event)
            if agent in self.members:
                self._set(agent, logged_in=True, paused=event.get("Paused") == "1",
                          reason=event.get("PausedReason", ""))
                self._background(self.redis.srem(self.out_key, agent))
        elif name == "QueueMemberRemoved":
            agent = _agent_of(event)
            if agent in self.members:
                self._set(agent, logged_in=False, paused=False, reason="")
                self._background(self.redis.sadd(self.out_key, agent))
        elif name == "QueueMemberPause":
            agent = _agent_of(event)
            if agent in self.members:
                paused = event.get("Paused") == "1"
                self._set(agent, paused=paused, reason=event.get("PausedReason", "") if paused else "")
        elif name == "QueueCallerJoin" and event.get("Uniqueid"):
            self.waiting[event["Uniqueid"]] = Waiting(event["Uniqueid"], time.time(),
                                                      event.get("Channel", "").startswith("PJSIP/trunk-"))
        elif name in ("QueueCallerLeave", "QueueCallerAbandon"):
            self.waiting.pop(event.get("Uniqueid", ""), None)
        else:
            return False
        self._observe()
        return True

    def _set(self, agent: str, **changes: Any) -> None:
        member = self.members[agent]
        before = (member.logged_in, member.paused, member.reason)
        for key, value in changes.items():
            setattr(member, key, value)
        if (member.logged_in, member.paused, member.reason) != before:
            member.since = time.time()

    def _background(self, coro: Awaitable[Any]) -> None:
        async def run() -> None:
            try:
                await coro
            except Exception as exc:  # a Redis outage: the next resync reads the PBX again
                log.warning("queue.out_set_failed", error=str(exc))
        asyncio.get_running_loop().create_task(run())

    def _observe(self) -> None:
        self.metrics.waiting.set(len(self.waiting))
        self.metrics.oldest.set(self.oldest_wait())
        states = {"logged_in": 0, "paused": 0, "logged_out": 0}
        for m in self.members.values():
            states["paused" if m.logged_in and m.paused else "logged_in" if m.logged_in else "logged_out"] += 1
        for state, count in states.items():
            self.metrics.members.labels(state).set(count)

    async def run(self, login: asyncio.Event) -> None:
        """Owned task: after every AMI login, a resync; every second, the surge state (the oldest wait grows
        with no event to say so)."""
        while True:
            try:
                async with asyncio.timeout(1.0):
                    await login.wait()
                login.clear()
            except TimeoutError:
                pass
            else:
                try:
                    await self.resync()
                except Exception:  # the PBX went away mid-resync (Unavailable) or Redis did: the next login retries
                    log.exception("queue.resync_failed")
            self.metrics.oldest.set(self.oldest_wait())
            try:
                await self.surge.check()
            except Exception:
                log.exception("queue.surge_check_failed")


def _agent_of(event: dict[str, str]) -> str:
    """The configured agent behind a member: MemberName, or the interface PJSIP/agent<id>."""
    iface = event.get("Interface", "") or event.get("Location", "")
    if iface.startswith("PJSIP/agent"):
        return iface.removeprefix("PJSIP/agent")
    return event.get("MemberName", event.get("Name", ""))


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0
