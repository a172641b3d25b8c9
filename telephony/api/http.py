"""Routes: peer side (receive ticket, receive event, fetch ticket), agent side (calls, drafts), ops (health).

Every body is size-bounded, parsed strictly and validated before anything is stored; errors are JSON with a
stable error id and a message for the person reading it.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

from telephony.calls.registry import UNIQUEID, CallRegistry
from telephony.config import SiteConfig
from telephony.errors import InvalidInput, LinkageError, NotFound, PayloadTooLarge, Unauthorized
from telephony.tickets.models import TICKET_ID, parse_draft, parse_event, parse_ticket
from telephony.tickets.services import TicketService
from telephony.transfers.services import TransferService

log = structlog.get_logger("http")
MAX_BODY = 64 * 1024
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Api:
    def __init__(self, config: SiteConfig, tickets: TicketService, transfers: TransferService,
                 calls: CallRegistry, health: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        self.config = config
        self.tickets = tickets
        self.transfers = transfers
        self.calls = calls
        self.health_check = health
        self.tokens = {config.api_token}

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.errors], client_max_size=MAX_BODY)
        app.router.add_get("/v1/health", self.health)
        app.router.add_post("/v1/tickets", self.receive_ticket)
        app.router.add_get("/v1/tickets", self.list_tickets)
        app.router.add_get("/v1/tickets/{id}", self.get_ticket)
        app.router.add_post("/v1/tickets/{id}/events", self.receive_event)
        app.router.add_get("/v1/calls", self.list_calls)
        app.router.add_put("/v1/calls/{linkedid}/draft", self.put_draft)
        return app

    @web.middleware
    async def errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(http=f"{request.method} {request.path}")
        try:
            if request.path != "/v1/health":
                self._authorize(request)
            return await handler(request)
        except LinkageError as exc:
            log.info("http.refused", status=exc.status, error=exc.error_id, reason=exc.message)
            return web.json_response(exc.to_dict(), status=exc.status)
        except web.HTTPRequestEntityTooLarge:
            err = PayloadTooLarge(f"body larger than {MAX_BODY} bytes")
            return web.json_response(err.to_dict(), status=413)
        except web.HTTPException as exc:
            body = {"error": "http_error", "message": exc.reason, "details": {}}
            return web.json_response(body, status=exc.status)

    def _authorize(self, request: web.Request) -> None:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip()
        if not token or not any(hmac.compare_digest(token, t) for t in self.tokens):
            raise Unauthorized("missing or wrong bearer token")

    async def _json(self, request: web.Request) -> Any:
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise PayloadTooLarge(f"body larger than {MAX_BODY} bytes")
        raw = await request.read()
        if len(raw) > MAX_BODY:
            raise PayloadTooLarge(f"body larger than {MAX_BODY} bytes")
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"body is not valid JSON: {exc}") from exc

    async def health(self, request: web.Request) -> web.Response:
        state = await self.health_check()
        return web.json_response(state, status=200 if state.get("ok") else 503)

    async def receive_ticket(self, request: web.Request) -> web.Response:
        ticket = parse_ticket(await self._json(request))
        if ticket.target.site != self.config.name:
            raise InvalidInput(f"ticket is addressed to site {ticket.target.site}, not {self.config.name}")
        stored, created = await self.tickets.receive(ticket, via="push")
        return web.json_response({"id": stored.id, "status": stored.status, "created": created},
                                 status=201 if created else 200)

    async def get_ticket(self, request: web.Request) -> web.Response:
        ticket_id = request.match_info["id"]
        if not TICKET_ID.match(ticket_id):
            raise InvalidInput("ticket id must be 20-32 digits")
        ticket = await self.tickets.store.get(ticket_id)
        if ticket is None:
            raise NotFound(f"ticket {ticket_id} not found")
        return web.json_response(ticket.to_dict())

    async def list_tickets(self, request: web.Request) -> web.Response:
        try:
            since = float(request.query.get("since", "0"))
            limit = min(int(request.query.get("limit", "100")), 1000)
        except ValueError as exc:
            raise InvalidInput("since must be a number and limit an integer") from exc
        ids = await self.tickets.store.list_ids(since, limit)
        items = []
        for ticket_id in ids:
            ticket = await self.tickets.store.get(ticket_id)
            if ticket is not None:
                items.append(ticket.to_dict())
        return web.json_response({"items": items})

    async def receive_event(self, request: web.Request) -> web.Response:
        ticket_id = request.match_info["id"]
        event = parse_event(await self._json(request))
        if event.ticket_id != ticket_id:
            raise InvalidInput("event ticket_id does not match the URL")
        if event.actor.get("site") == self.config.name:
            raise InvalidInput("an event from this site cannot be received from a peer")
        ticket, applied = await self.tickets.apply_remote(event)
        return web.json_response({"id": ticket.id, "status": ticket.status, "applied": applied})

    async def list_calls(self, request: web.Request) -> web.Response:
        calls = [{"linkedid": c.linkedid, "legs": [{"uniqueid": leg.uniqueid, "channel": leg.channel,
                                                    "endpoint": leg.endpoint, "state": leg.state}
                                                   for leg in c.legs.values()],
                  "bridged": c.bridged_at is not None, "ticket_id": c.ticket_id}
                 for c in self.calls.calls.values()]
        return web.json_response({"items": calls})

    async def put_draft(self, request: web.Request) -> web.Response:
        linkedid = request.match_info["linkedid"]
        if not UNIQUEID.match(linkedid):
            raise InvalidInput("linkedid has an invalid format")
        draft = parse_draft(await self._json(request))
        return web.json_response({"linkedid": linkedid, "draft": self.transfers.set_draft(linkedid, draft)})
