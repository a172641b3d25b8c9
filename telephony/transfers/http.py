"""HTTP adapter of the sending side for consoles: the draft of a call's ticket, typed while the caller talks,
the transfer button (the same path as the one-key press) and the referral of a matter that came through a
network channel (a ticket without a call)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from telephony.calls.registry import CallRegistry
from telephony.config import SiteConfig
from telephony.errors import Forbidden, InvalidInput
from telephony.http_request import agent, linkedid, own_agent, own_call, read_json
from telephony.ids import AGENT_ID, CALLER_NUMBER
from telephony.tickets.models import parse_draft
from telephony.transfers.returns import REASON_LIMIT, ReturnService
from telephony.transfers.sending import SendingService

REFERRAL_ONLY = {"target", "channel", "agent", "caller_number"}  # the rest of a referral's body is draft fields


class TransfersHttp:
    def __init__(self, config: SiteConfig, calls: CallRegistry, sending: SendingService,
                 returns: ReturnService) -> None:
        self.config = config
        self.calls = calls
        self.sending = sending
        self.returns = returns

    def _own_call(self, request: web.Request, call_id: str) -> None:
        call = self.calls.get(call_id)
        if call is not None:
            own_call(request, [leg.endpoint for leg in call.legs.values()])

    async def put_draft(self, request: web.Request) -> web.Response:
        call_id = linkedid(request)
        draft = parse_draft(await read_json(request))
        self._own_call(request, call_id)
        return web.json_response({"linkedid": call_id, "draft": await self.sending.set_draft(call_id, draft)})

    async def get_draft(self, request: web.Request) -> web.Response:
        call_id = linkedid(request)
        self._own_call(request, call_id)
        return web.json_response({"linkedid": call_id, "draft": await self.sending.draft(call_id)})

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

    async def give_back(self, request: web.Request) -> web.Response:
        """POST /v1/calls/{linkedid}/return {agent, reason}: 退回 — the linked call goes back to the platform it
        came from, its ticket returned with the reason; 202 (the sender takes the caller back)."""
        call_id = linkedid(request)
        body = await read_json(request)
        if not isinstance(body, dict) or not set(body) <= {"agent", "reason"}:
            raise InvalidInput("body is {agent, reason}")
        reason = _text(body, "reason", required=True)
        if len(reason.strip()) > REASON_LIMIT:  # the body is judged before the call is looked for
            raise InvalidInput(f"field 'reason' is at most {REASON_LIMIT} characters", field="reason")
        ticket = await self.returns.http_return(call_id, agent(request, body), reason)
        return web.json_response({"ticket_id": ticket.id, "status": ticket.status}, status=202)

    async def refer(self, request: web.Request) -> web.Response:
        """POST /v1/transfers: 201 with the ticket."""
        body = await read_json(request)
        if not isinstance(body, dict):
            raise InvalidInput("body is {target, channel, agent?, caller_number?, <ticket fields>}")
        fields = parse_draft({k: v for k, v in body.items() if k not in REFERRAL_ONLY}, "referral")
        target, channel = _text(body, "target", required=True), _text(body, "channel", required=True)
        number = _text(body, "caller_number")
        if number and not CALLER_NUMBER.match(number):
            raise InvalidInput("field 'caller_number' must be + and up to 20 digits", field="caller_number")
        ticket = await self.sending.refer(target, channel, _referrer(request, body), number, fields)
        return web.json_response(ticket.to_dict(), status=201)


def _text(body: dict[str, Any], key: str, required: bool = False) -> str:
    value = body.get(key, "")
    if not isinstance(value, str):
        raise InvalidInput(f"field {key!r} must be a string", field=key)
    if required and not value:
        raise InvalidInput(f"field {key!r} is required", field=key)
    return value


def _referrer(request: web.Request, body: dict[str, Any]) -> str:
    """The agent a referral is made by: an agent's token is that agent (naming another is 403); the site token
    names one, or acts as the console ('')."""
    own = own_agent(request)
    value = _text(body, "agent") or own or ""
    if value and not AGENT_ID.match(value):
        raise InvalidInput("field 'agent' must be the agent's id (digits)", field="agent")
    if own is not None and value != own:
        raise Forbidden(f"this token belongs to agent {own}, not {value}", agent=own)
    return value
