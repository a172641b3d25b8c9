"""Adapters of the queue context: app_queue's AMI events, the `surge` FastAGI route, and the console's HTTP
routes (GET /v1/queue, POST /v1/queue/members/{agent})."""

from __future__ import annotations

from typing import Any

import msgspec
import structlog
from aiohttp import web

from telephony.agi.server import AgiRequest, Handler
from telephony.errors import Forbidden, InvalidInput, NotFound
from telephony.http_request import own_agent, read_json
from telephony.ids import AGENT_ID
from telephony.queues.services import ACTIONS, QueueService

log = structlog.get_logger("queues")
QUEUE_EVENTS = ("QueueMemberAdded", "QueueMemberRemoved", "QueueMemberPause", "QueueCallerJoin",
                "QueueCallerLeave", "QueueCallerAbandon")


class QueueAmi:
    def __init__(self, service: QueueService, publish: Any = None) -> None:
        self.service = service
        self.publish = publish or (lambda _: None)

    async def on_event(self, event: dict[str, str]) -> None:
        if event.get("Event") not in QUEUE_EVENTS:
            return
        if self.service.on_event(event):
            if event["Event"].startswith("QueueMember"):
                self.publish({"type": "queue", "queue": self.service.view()})
            await self.service.surge.check()


class QueueAgi:
    def __init__(self, service: QueueService) -> None:
        self.service = service

    def routes(self) -> dict[str, Handler]:
        return {"surge": self.surge}

    async def surge(self, request: AgiRequest) -> None:
        """surge(linkedid) on a new hotline call: LINKAGE_ID and LINKAGE_DEST (a county seat's trunk), or
        nothing (the call stays in our queue)."""
        linkedid = request.arg(0)
        structlog.contextvars.bind_contextvars(call_id=linkedid)
        routed = await self.service.surge.call(linkedid, request.uniqueid, request.headers.get("agi_callerid", ""))
        if routed is not None:
            await request.set_variable("LINKAGE_ID", routed[0])
            await request.set_variable("LINKAGE_DEST", routed[1])


class MemberBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    action: str
    reason: str = ""


class QueueHttp:
    def __init__(self, service: QueueService | None) -> None:
        self._service = service

    @property
    def service(self) -> QueueService:
        if self._service is None:
            raise NotFound("the queue is not served here")
        return self._service

    async def status(self, request: web.Request) -> web.Response:
        """GET /v1/queue: members, waiting callers, surge. Agents and the supervisor alike."""
        return web.json_response(self.service.view())

    async def member(self, request: web.Request) -> web.Response:
        """POST /v1/queue/members/{agent} {action: login|logout|pause|unpause, reason?}: an agent's token acts
        only for itself; the site token (supervisor) for any agent."""
        agent = request.match_info["agent"]
        if not AGENT_ID.match(agent):
            raise InvalidInput("agent must be an agent id (digits)")
        own = own_agent(request)
        if own is not None and own != agent:
            raise Forbidden(f"this token belongs to agent {own}, not {agent}", agent=own)
        try:
            body = msgspec.convert(await read_json(request), MemberBody)
        except msgspec.ValidationError as exc:
            raise InvalidInput(f"body: {exc}; action is one of {', '.join(ACTIONS)}") from exc
        member = await self.service.act(agent, body.action, body.reason)
        return web.json_response({"agent": member.agent, "logged_in": member.logged_in, "paused": member.paused,
                                  "reason": member.reason})
