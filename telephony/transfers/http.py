"""HTTP adapter of transfers: a console transfers a call to a target site (as the one-key press would)."""

from __future__ import annotations

from aiohttp import web

from telephony.api.requests import agent, linkedid, read_json
from telephony.config import SiteConfig
from telephony.errors import InvalidInput
from telephony.transfers.services import TransferService


class TransfersHttp:
    def __init__(self, config: SiteConfig, transfers: TransferService) -> None:
        self.config = config
        self.transfers = transfers

    async def transfer(self, request: web.Request) -> web.Response:
        call_id = linkedid(request)
        body = await read_json(request)
        if not isinstance(body, dict) or not set(body) <= {"target", "agent"}:
            raise InvalidInput("body is {target, agent}")
        target = body.get("target") or (self.config.targets[0].name if self.config.targets else "")
        if not isinstance(target, str):
            raise InvalidInput("field 'target' must be a string", field="target")
        ticket = await self.transfers.http_transfer(call_id, target, agent(request, body))
        return web.json_response({"ticket_id": ticket.id, "status": ticket.status}, status=202)
