"""HTTP adapter of the sending side for consoles: the draft of a call's ticket, typed while the caller talks,
and the transfer button (the same path as the one-key press)."""

from __future__ import annotations

from aiohttp import web

from telephony.calls.registry import CallRegistry
from telephony.config import SiteConfig
from telephony.errors import InvalidInput
from telephony.http_request import agent, linkedid, own_call, read_json
from telephony.tickets.models import parse_draft
from telephony.transfers.sending import SendingService


class TransfersHttp:
    def __init__(self, config: SiteConfig, calls: CallRegistry, sending: SendingService) -> None:
        self.config = config
        self.calls = calls
        self.sending = sending

    async def put_draft(self, request: web.Request) -> web.Response:
        call_id = linkedid(request)
        draft = parse_draft(await read_json(request))
        call = self.calls.get(call_id)
        if call is not None:
            own_call(request, [leg.endpoint for leg in call.legs.values()])
        return web.json_response({"linkedid": call_id, "draft": self.sending.set_draft(call_id, draft)})

    async def transfer(self, request: web.Request) -> web.Response:
        call_id = linkedid(request)
        body = await read_json(request)
        if not isinstance(body, dict) or not set(body) <= {"target", "agent"}:
            raise InvalidInput("body is {target, agent}")
        target = body.get("target") or (self.config.targets[0].name if self.config.targets else "")
        if not isinstance(target, str):
            raise InvalidInput("field 'target' must be a string", field="target")
        ticket = await self.sending.button(call_id, target, agent(request, body))
        return web.json_response({"ticket_id": ticket.id, "status": ticket.status}, status=202)
