"""HTTP adapter of three-way calls: a console brings the target site into the agent's call (a conference), or
consults it first (an attended transfer)."""

from __future__ import annotations

from aiohttp import web

from telephony.errors import InvalidInput
from telephony.http_request import agent, linkedid, read_json
from telephony.threeway.services import ThreewayService


class ThreewayHttp:
    def __init__(self, threeway: ThreewayService) -> None:
        self.threeway = threeway

    async def threeway_call(self, request: web.Request) -> web.Response:
        call_id = linkedid(request)
        body = await read_json(request)
        if not isinstance(body, dict) or not set(body) <= {"agent"}:
            raise InvalidInput("body is {agent}")
        ticket = await self.threeway.http_threeway(call_id, agent(request, body))
        return web.json_response({"ticket_id": ticket.id, "conference": ticket.id}, status=202)

    async def consult_call(self, request: web.Request) -> web.Response:
        call_id = linkedid(request)
        body = await read_json(request)
        if not isinstance(body, dict) or not set(body) <= {"agent"}:
            raise InvalidInput("body is {agent}")
        ticket = await self.threeway.http_consult(call_id, agent(request, body))
        return web.json_response({"ticket_id": ticket.id, "mode": ticket.mode}, status=202)
