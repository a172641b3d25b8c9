"""HTTP adapter of calls for consoles: the calls in progress (an agent's token sees its own) and the draft of a
call's ticket, typed while the caller talks.
"""

from __future__ import annotations

from aiohttp import web

from telephony.api.requests import linkedid, own_agent, own_call, read_json
from telephony.calls.registry import CallRegistry
from telephony.tickets.models import parse_draft
from telephony.transfers.services import TransferService


class CallsHttp:
    def __init__(self, calls: CallRegistry, transfers: TransferService) -> None:
        self.calls = calls
        self.transfers = transfers  # keeps the drafts until the transfer makes a ticket of them

    async def list_calls(self, request: web.Request) -> web.Response:
        agent = own_agent(request) or request.query.get("agent")  # an agent's token sees its own calls
        calls = []
        for c in self.calls.calls.values():
            legs = [{"uniqueid": leg.uniqueid, "channel": leg.channel, "endpoint": leg.endpoint, "state": leg.state}
                    for leg in c.legs.values()]
            if agent and not any(leg["endpoint"] == f"agent{agent}" for leg in legs):
                continue
            calls.append({"linkedid": c.linkedid, "legs": legs, "bridged": c.bridged_at is not None,
                          "ticket_id": c.ticket_id, "transferring": c.transferring})
        return web.json_response({"items": calls})

    async def put_draft(self, request: web.Request) -> web.Response:
        call_id = linkedid(request)
        draft = parse_draft(await read_json(request))
        call = self.calls.get(call_id)
        if call is not None:
            own_call(request, [leg.endpoint for leg in call.legs.values()])
        return web.json_response({"linkedid": call_id, "draft": self.transfers.set_draft(call_id, draft)})
