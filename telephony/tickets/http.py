"""HTTP adapter of tickets for consoles: queries (by status, time, division, category, direction; paginated),
bulk export (JSON lines, CSV), one ticket with its history, amending a ticket and its lifecycle transitions.
"""

from __future__ import annotations

from aiohttp import web

from telephony.config import SiteConfig
from telephony.errors import InvalidInput, NotFound
from telephony.http_request import agent, read_json, ticket_id
from telephony.tickets import queries
from telephony.tickets.models import EVENT_TYPES, parse_draft, parse_payload
from telephony.tickets.services import TicketService

# What a console may post as a transition: the rest are written by the controller itself or come from peers.
LOCAL_TRANSITIONS = EVENT_TYPES - {"created", "delivered", "offered", "abandoned", "overdue", "routed",
                                   "transferred", "amended"}


class TicketsHttp:
    def __init__(self, config: SiteConfig, tickets: TicketService) -> None:
        self.config = config
        self.tickets = tickets

    async def get_ticket(self, request: web.Request) -> web.Response:
        tid = ticket_id(request)
        ticket = await self.tickets.store.get(tid)
        if ticket is None:
            raise NotFound(f"ticket {tid} not found")
        return web.json_response(ticket.to_dict())

    async def amend(self, request: web.Request) -> web.Response:
        tid = ticket_id(request)
        body = await read_json(request)
        if not isinstance(body, dict) or not isinstance(body.get("fields"), dict):
            raise InvalidInput("body is {agent, fields: {…}}")
        fields = parse_draft(body["fields"])
        ticket = await self.tickets.record(tid, "amended", agent(request, body), dict(fields))
        return web.json_response(ticket.to_dict())

    async def transition(self, request: web.Request) -> web.Response:
        tid = ticket_id(request)
        body = await read_json(request)
        if not isinstance(body, dict) or not set(body) <= {"type", "agent", "payload"}:
            raise InvalidInput("body is {type, agent, payload}")
        etype = body.get("type")
        if etype not in LOCAL_TRANSITIONS:
            raise InvalidInput(f"type must be one of {', '.join(sorted(LOCAL_TRANSITIONS))}", field="type")
        ticket = await self.tickets.record(tid, str(etype), agent(request, body),
                                           parse_payload(body.get("payload", {})))
        return web.json_response(ticket.to_dict())

    async def list_tickets(self, request: web.Request) -> web.Response:
        flt = queries.parse_filter(request.query)
        number, size = queries.page_args(request.query)
        return web.json_response(await queries.page(self.tickets.store, flt, number, size))

    async def export(self, request: web.Request) -> web.StreamResponse:
        flt = queries.parse_filter(request.query)
        fmt = request.query.get("format", "jsonl")
        if fmt not in ("jsonl", "csv"):
            raise InvalidInput("format is jsonl or csv", field="format")
        content_type = "application/x-ndjson" if fmt == "jsonl" else "text/csv"
        response = web.StreamResponse(headers={
            "Content-Type": f"{content_type}; charset=utf-8",
            "Content-Disposition": f'attachment; filename="tickets-{self.config.site.name}.{fmt}"'})
        await response.prepare(request)
        if fmt == "csv":
            await response.write(queries.csv_header().encode())
        async for ticket in queries.select(self.tickets.store, flt):
            line = queries.jsonl(ticket) if fmt == "jsonl" else queries.csv_row(ticket)
            await response.write(line.encode())
        await response.write_eof()
        return response
