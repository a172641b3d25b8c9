"""Ticket queries and bulk export: filter parsing, matching, pages over a real Redis, CSV and JSON lines."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from telephony.errors import InvalidInput
from telephony.tickets import queries
from telephony.tickets.models import Event, Party, Ticket, parse_ticket
from telephony.tickets.queries import CSV_COLUMNS, Filter, csv_header, csv_row, jsonl, page, page_args, parse_filter
from telephony.tickets.store import TicketStore

JAN1 = 1767225600.0  # 2026-01-01T00:00:00Z


def ticket(n: int = 0, **fields: Any) -> Ticket:
    tid = f"370800202601011200001234{n:02d}"
    t = Ticket(id=tid, direction="12345->110", source=Party("12345", "12345"), target=Party("110", "110"),
               caller_number="13912345678", agent_id="1001", linkedid=f"1767268800.{n}", uniqueids=[],
               created_at=f"2026-01-{n + 1:02d}T00:00:00.000Z", division="370800", category="noise")
    for key, value in fields.items():
        setattr(t, key, value)
    return t


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[TicketStore]:
    client = aioredis.from_url(redis_url.rsplit("/", 1)[0] + "/5")
    await client.flushdb()
    yield TicketStore(client)
    await client.aclose()


# ---- parse_filter and page_args ------------------------------------------------------------------------

def test_an_empty_query_matches_everything() -> None:
    assert parse_filter({}) == Filter()


def test_every_filter_is_read() -> None:
    flt = parse_filter({"status": "signed_for,accepted", "from": "2026-01-01T00:00:00Z", "to": "1767312000",
                        "division": "370811", "category": "traffic", "direction": "12345->110",
                        "flag": "overdue", "page": "2", "page_size": "10", "format": "csv"})
    assert flt == Filter(frozenset({"signed_for", "accepted"}), JAN1, JAN1 + 86400, "370811", "traffic",
                         "12345->110", "overdue")


def test_since_is_an_alias_of_from_and_from_wins() -> None:
    assert parse_filter({"since": "1767225600.5"}).since == JAN1 + 0.5
    assert parse_filter({"since": "0", "from": "2026-01-01T00:00:00+00:00"}).since == JAN1


@pytest.mark.parametrize("query, field", [
    ({"sort": "id"}, "sort"), ({"status": "offered"}, "status"), ({"status": "closed,Closed"}, "status"),
    ({"division": "3708"}, "division"), ({"direction": "12345->"}, "direction"),
    ({"direction": "12345;110"}, "direction"), ({"from": "yesterday"}, "from"), ({"to": "2026-13-01"}, "to"),
    ({"since": "soon"}, "since"),
])
def test_bad_query_parameters_are_named(query: dict[str, str], field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_filter(query)
    assert info.value.status == 400
    assert info.value.details == {"field": field}


def test_a_bad_category_is_named_as_category() -> None:
    with pytest.raises(InvalidInput) as info:
        parse_filter({"category": "Traffic!"})
    assert info.value.details == {"field": "category"}


@pytest.mark.parametrize("query, expected", [({}, (1, 50)), ({"page": "3", "page_size": "1000"}, (3, 1000)),
                                             ({"limit": "7"}, (1, 7)), ({"page_size": "5", "limit": "7"}, (1, 5))])
def test_page_args(query: dict[str, str], expected: tuple[int, int]) -> None:
    assert page_args(query) == expected


@pytest.mark.parametrize("query", [{"page": "0"}, {"page": "x"}, {"page_size": "0"}, {"page_size": "1001"},
                                   {"limit": "1.5"}])
def test_bad_page_args_are_refused(query: dict[str, str]) -> None:
    with pytest.raises(InvalidInput):
        page_args(query)


# ---- Filter.matches ------------------------------------------------------------------------------------

@pytest.mark.parametrize("flt, hit, miss", [
    (Filter(status=frozenset({"accepted", "resolved"})), {"status": "resolved"}, {"status": "signed_for"}),
    (Filter(division="370811"), {"division": "370811"}, {"division": "370800"}),
    (Filter(category="traffic"), {"category": "traffic"}, {"category": "noise"}),
    (Filter(direction="110->12345"), {"direction": "110->12345"}, {"direction": "12345->110"}),
    (Filter(flag="overdue"), {"flags": ["caller_abandoned", "overdue"]}, {"flags": ["caller_abandoned"]}),
])
def test_filter_matches_each_field(flt: Filter, hit: dict[str, Any], miss: dict[str, Any]) -> None:
    assert flt.matches(ticket(**hit)) is True
    assert flt.matches(ticket(**miss)) is False


def test_filters_combine_with_and() -> None:
    flt = Filter(status=frozenset({"accepted"}), division="370800")
    assert flt.matches(ticket(status="accepted"))
    assert not flt.matches(ticket(status="accepted", division="370811"))
    assert not flt.matches(ticket(status="resolved"))


# ---- page over the store -------------------------------------------------------------------------------

async def test_page_filters_then_slices_in_creation_order(store: TicketStore) -> None:
    statuses = ["accepted", "resolved", "accepted", "closed", "accepted", "accepted"]
    for n, status in enumerate(statuses):
        assert await store.create(ticket(n, status=status), [])
    flt = parse_filter({"status": "accepted"})
    first = await page(store, flt, 1, 3)
    second = await page(store, flt, 2, 3)
    assert (first["total"], first["page"], first["page_size"]) == (4, 1, 3)
    assert [t["id"] for t in first["items"]] == [ticket(n).id for n in (0, 2, 4)]  # type: ignore[union-attr]
    assert [t["id"] for t in second["items"]] == [ticket(5).id]  # type: ignore[union-attr]
    assert (await page(store, flt, 3, 3))["items"] == []
    assert parse_ticket(first["items"][0]) == ticket(0, status="accepted")  # type: ignore[index]


async def test_page_reads_the_time_range_from_the_index(store: TicketStore) -> None:
    for n in range(4):
        await store.create(ticket(n), [])
    flt = parse_filter({"from": str(JAN1 + 86400), "to": "2026-01-03T00:00:00Z"})
    result = await page(store, flt, 1, 50)
    assert [t["id"] for t in result["items"]] == [ticket(1).id, ticket(2).id]  # type: ignore[union-attr]


async def test_the_scan_is_bounded(store: TicketStore, monkeypatch: pytest.MonkeyPatch) -> None:
    for n in range(4):
        await store.create(ticket(n), [])
    monkeypatch.setattr(queries, "MAX_SCAN", 2)
    assert (await page(store, Filter(), 1, 50))["total"] == 2


async def test_a_time_that_is_not_a_number_is_invalid_input(store: TicketStore) -> None:
    await store.create(ticket(0), [])
    try:
        flt = parse_filter({"from": "nan"})
    except InvalidInput:
        return
    await page(store, flt, 1, 50)
    pytest.fail("from=nan was accepted")


# ---- export --------------------------------------------------------------------------------------------

def test_jsonl_is_one_line_that_parses_back() -> None:
    t = ticket(content="第一行\n第二行", history=[
        Event("a" * 32, ticket().id, "created", "2026-01-01T00:00:00.000Z", {"platform": "12345", "site": "12345"},
              {}, 1, 1)])
    line = jsonl(t)
    assert line.endswith("\n") and line.count("\n") == 1
    assert "第一行" in line
    assert parse_ticket(json.loads(line)) == t


def read_csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_csv_header_and_row_line_up() -> None:
    t = ticket(status="resolved", title='noise, "loud"\nat night', flags=["caller_abandoned", "overdue"],
               result="officers attended", offered_to="2001", signed_for_by="2001",
               target=Party("110", "110-370811"), history=[
                   Event(f"{i:032x}", ticket().id, etype, "2026-01-01T00:00:00.000Z",
                         {"platform": "110", "site": "110"}) for i, etype in enumerate(["created", "delivered"])])
    [header] = read_csv(csv_header())
    assert tuple(header) == CSV_COLUMNS
    [row] = read_csv(csv_row(t))
    values = dict(zip(header, row, strict=True))
    assert values["title"] == 'noise, "loud"\nat night'
    assert (values["flags"], values["events"]) == ("caller_abandoned|overdue", "created|delivered")
    assert (values["source_site"], values["target_site"]) == ("12345", "110-370811")
    assert (values["status"], values["result"], values["signed_for_by"]) == ("resolved", "officers attended", "2001")


@pytest.mark.parametrize("title", ["=HYPERLINK(\"http://x\")", "+1+1", "-2+3", "@SUM(A1)"])
def test_cells_that_look_like_formulas_are_quoted(title: str) -> None:
    [row] = read_csv(csv_row(ticket(title=title, return_reason=title)))
    values = dict(zip(CSV_COLUMNS, row, strict=True))
    assert values["title"] == "'" + title
    assert values["return_reason"] == "'" + title


def test_ordinary_cells_are_left_alone() -> None:
    [row] = read_csv(csv_row(ticket(title="a=b", caller_number="13912345678")))
    values = dict(zip(CSV_COLUMNS, row, strict=True))
    assert (values["title"], values["caller_number"]) == ("a=b", "13912345678")


def test_a_cell_starting_with_a_tab_is_quoted() -> None:
    [row] = read_csv(csv_row(ticket(title="\t=1+1")))
    assert dict(zip(CSV_COLUMNS, row, strict=True))["title"] == "'\t=1+1"


def test_order_newest_lists_the_latest_first_and_a_bad_order_is_refused() -> None:
    from telephony.errors import InvalidInput

    assert parse_filter({"order": "newest"}).newest and not parse_filter({}).newest
    with pytest.raises(InvalidInput, match="order is oldest or newest"):
        parse_filter({"order": "random"})
