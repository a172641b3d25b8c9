"""Queries over tickets (可查、可看、可追溯、可批量应用): filter by status, time range, division, category and
direction, paginated; and bulk export as JSON lines or CSV.

The time range is read from the creation-time index; the other filters are applied to the tickets in that
range, at most `MAX_SCAN` of them per query.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from telephony.errors import InvalidInput
from telephony.ids import CATEGORY, OPTIONAL_DIVISION
from telephony.tickets.models import STATES, Ticket
from telephony.tickets.store import TicketStore

log = structlog.get_logger("queries")
MAX_SCAN = 20000
CSV_COLUMNS = ("id", "direction", "status", "created_at", "updated_at", "division", "category", "title",
               "caller_number", "agent_id", "offered_to", "signed_for_by", "result", "return_reason",
               "satisfaction", "flags", "source_site", "target_site", "mode", "parent", "events")


@dataclass(frozen=True)
class Filter:
    status: frozenset[str] = frozenset()
    since: float = 0.0
    until: float | None = None
    division: str = ""
    category: str = ""
    direction: str = ""
    flag: str = ""
    newest: bool = False  # order=newest: the latest first (a console's first page); default oldest first

    def matches(self, t: Ticket) -> bool:
        return ((not self.status or t.status in self.status)
                and (not self.division or t.division == self.division)
                and (not self.category or t.category == self.category)
                and (not self.direction or t.direction == self.direction)
                and (not self.flag or self.flag in t.flags))


def _time(value: str, key: str) -> float:
    try:
        number = float(value)
        if not math.isfinite(number):
            raise InvalidInput(f"{key} must be a finite time", field=key)
        return number
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError as exc:
        raise InvalidInput(f"{key} must be an ISO 8601 time or epoch seconds", field=key) from exc


def parse_filter(q: Mapping[str, str]) -> Filter:
    unknown = set(q) - {"status", "from", "to", "since", "division", "category", "direction", "flag", "page",
                        "page_size", "limit", "format", "order"}
    if unknown:
        raise InvalidInput(f"unknown query parameter {sorted(unknown)[0]!r}", field=sorted(unknown)[0])
    status = frozenset(s for s in q.get("status", "").split(",") if s)
    if not status <= set(STATES):
        raise InvalidInput(f"status must be among {', '.join(STATES)}", field="status")
    division, category = q.get("division", ""), q.get("category", "")
    if not OPTIONAL_DIVISION.match(division):
        raise InvalidInput("division must be 6 digits", field="division")
    if not CATEGORY.match(category):
        raise InvalidInput("category must be a lower-case word", field="category")
    direction = q.get("direction", "")
    if direction and not all(part.isalnum() for part in direction.split("->")):
        raise InvalidInput("direction looks like 12345->110", field="direction")
    since = _time(q["from"], "from") if "from" in q else _time(q["since"], "since") if "since" in q else 0.0
    until = _time(q["to"], "to") if "to" in q else None
    order = q.get("order", "oldest")
    if order not in ("oldest", "newest"):
        raise InvalidInput("order is oldest or newest", field="order")
    return Filter(status, since, until, division, category, direction, q.get("flag", ""), order == "newest")


def page_args(q: Mapping[str, str]) -> tuple[int, int]:
    try:
        page = int(q.get("page", "1"))
        size = int(q.get("page_size", q.get("limit", "50")))
    except ValueError as exc:
        raise InvalidInput("page and page_size must be integers") from exc
    if page < 1 or not 1 <= size <= 1000:
        raise InvalidInput("page starts at 1 and page_size is 1-1000")
    return page, size


async def select(store: TicketStore, flt: Filter) -> AsyncIterator[Ticket]:
    ids = await store.list_ids(flt.since, MAX_SCAN, flt.until)
    for ticket_id in ids:
        try:
            ticket = await store.get(ticket_id)
        except InvalidInput as exc:  # a stored ticket that no longer parses: skip it, say so, go on
            log.error("query.unreadable_ticket", ticket_id=ticket_id, reason=exc.message)
            continue
        if ticket is not None and flt.matches(ticket):
            yield ticket


async def page(store: TicketStore, flt: Filter, number: int, size: int,
               view: Callable[[Ticket], dict[str, Any]] = Ticket.to_dict) -> dict[str, object]:
    items = [t async for t in select(store, flt)]
    if flt.newest:
        items.reverse()
    start = (number - 1) * size
    return {"items": [view(t) for t in items[start:start + size]], "page": number, "page_size": size,
            "total": len(items)}


def jsonl(ticket: Ticket) -> str:
    return json.dumps(ticket.to_dict(), ensure_ascii=False, separators=(",", ":")) + "\n"


def csv_header() -> str:
    buf = io.StringIO()
    csv.writer(buf).writerow(CSV_COLUMNS)
    return buf.getvalue()


def csv_row(t: Ticket) -> str:
    buf = io.StringIO()
    row = {"source_site": t.source.site, "target_site": t.target.site, "flags": "|".join(t.flags),
           "events": "|".join(e.type for e in t.history)}
    csv.writer(buf).writerow([_cell(row.get(c, getattr(t, c, ""))) for c in CSV_COLUMNS])
    return buf.getvalue()


def _cell(value: object) -> str:
    """Cells starting like a formula are quoted for spreadsheets (CSV injection)."""
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
