"""HTTP adapter of tickets for consoles: queries (by status, time, division, category, direction; paginated),
bulk export (JSON lines, CSV; the supervisor's, each one audited) and its audit trail, one ticket with its
history, amending a ticket and its lifecycle transitions.

What a console reads (one ticket, a page of them) carries a read-only `due`: the next deadline, for the inbox's
countdown. It is computed on read and never stored or pushed; the rule itself belongs to supervision, which the
app factory passes in as `deadline_of` (tickets cannot import supervision: supervision imports tickets).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from telephony.config import SiteConfig
from telephony.errors import Forbidden, InvalidInput, NotFound
from telephony.http_request import agent, own_agent, read_json, ticket_id
from telephony.tickets import queries
from telephony.tickets.audit import KEEP, ExportAudit
from telephony.tickets.models import EVENT_TYPES, Ticket, parse_draft, parse_payload
from telephony.tickets.services import TicketService

# What a console may post as a transition: the rest are written by the controller itself or come from peers.
LOCAL_TRANSITIONS = EVENT_TYPES - {"created", "delivered", "offered", "abandoned", "overdue", "routed",
                                   "transferred", "amended"}

# The state a ticket must reach next and by when, or None when nothing is due (supervision.deadlines.deadline).
DeadlineOf = Callable[[Ticket], tuple[str, datetime] | None]


class TicketsHttp:
    def __init__(self, config: SiteConfig, tickets: TicketService, audit: ExportAudit,
                 deadline_of: DeadlineOf) -> None:
        self.config = config
        self.tickets = tickets
        self.audit = audit
        self.deadline_of = deadline_of

    def view(self, ticket: Ticket) -> dict[str, Any]:
        """The ticket as a console reads it: its fields, and `due` (null when nothing is due)."""
        due = self.deadline_of(ticket)
        at = None if due is None else due[1].isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return {**ticket.to_dict(), "due": None if due is None else {"state": due[0], "at": at}}

    async def get_ticket(self, request: web.Request) -> web.Response:
        tid = ticket_id(request)
        ticket = await self.tickets.store.get(tid)
        if ticket is None:
            raise NotFound(f"ticket {tid} not found")
        return web.json_response(self.view(ticket))

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
        return web.json_response(await queries.page(self.tickets.store, flt, number, size, self.view))

    async def export(self, request: web.Request) -> web.StreamResponse:
        _supervisor_only(request, "bulk export")
        flt = queries.parse_filter(request.query)
        fmt = request.query.get("format", "jsonl")
        if fmt not in ("jsonl", "csv"):
            raise InvalidInput("format is jsonl or csv", field="format")
        content_type = "application/x-ndjson" if fmt == "jsonl" else "text/csv"
        response = web.StreamResponse(headers={
            "Content-Type": f"{content_type}; charset=utf-8",
            "Content-Disposition": f'attachment; filename="tickets-{self.config.site.name}.{fmt}"'})
        await response.prepare(request)
        rows, complete = 0, False
        try:
            if fmt == "csv":
                await response.write(queries.csv_header().encode())
            async for ticket in queries.select(self.tickets.store, flt):
                line = queries.jsonl(ticket) if fmt == "jsonl" else queries.csv_row(ticket)
                await response.write(line.encode())
                rows += 1
            await response.write_eof()
            complete = True
        finally:  # an export cut short is recorded too, with the rows that left
            await self.audit.record(by="site", remote=request.remote or "", query=dict(request.query), fmt=fmt,
                                    rows=rows, complete=complete)
        return response

    async def export_audit(self, request: web.Request) -> web.Response:
        """GET /v1/audit/exports: the latest exports, newest first."""
        _supervisor_only(request, "the export audit")
        try:
            limit = int(request.query.get("limit", "100"))
        except ValueError as exc:
            raise InvalidInput(f"limit must be an integer 1-{KEEP}", field="limit") from exc
        if not 1 <= limit <= KEEP or set(request.query) - {"limit"}:
            raise InvalidInput(f"the only parameter is limit, an integer 1-{KEEP}", field="limit")
        return web.json_response({"items": await self.audit.recent(limit)})


def _supervisor_only(request: web.Request, what: str) -> None:
    own = own_agent(request)
    if own is not None:
        raise Forbidden(f"{what} is for the supervisor (the site token), not agent {own}", agent=own)
