"""A referral (a ticket without a call) at the receiving site: the push is accepted, supervision gives it an
acceptance deadline from its delivery (no phone rings to be signed for), its lifecycle runs as a call's, and the
queries and the CSV export take it; an older stored ticket without the new fields still parses."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from linkage_lab.lab.lab import PLANS, Lab
from telephony.supervision.deadlines import DeadlineRule
from telephony.tickets import queries
from telephony.tickets.hooks import TicketHooks
from telephony.tickets.models import decode_ticket, encode, parse_ticket
from telephony.tickets.services import TicketService
from telephony.tickets.store import TicketStore
from telephony.transfers.sending import SendingService

REDIS_DB = 3  # the unit conftest's `redis` fixture gives this database, emptied


async def _no_pbx(action: dict[str, str]) -> Any:
    raise AssertionError(f"no AMI action expected here: {action}")


async def test_a_referral_lands_is_supervised_and_closes_like_a_calls_ticket(tmp_path: Path,
                                                                             redis: aioredis.Redis) -> None:
    lab = Lab(rootfs=str(tmp_path))
    sender_config, receiver_config = lab.site_config(PLANS["12345"]), lab.site_config(PLANS["110"])
    sender = TicketService(sender_config, TicketStore(redis), TicketHooks())
    sending = SendingService(sender_config, None, sender, _no_pbx)  # type: ignore[arg-type]
    made = await sending.refer("110", "mini_program", "1001", "13912345678",
                               {"content": "小程序反映：有人被困电梯", "urgency": "emergency", "division": "370800"})
    pushed = parse_ticket(made.to_dict())  # what the receiver parses from the push body
    await redis.flushdb()  # the receiver's own store
    rule = DeadlineRule(receiver_config)
    receiver = TicketService(receiver_config, TicketStore(redis, deadline_of=rule), TicketHooks())
    landed, new = await receiver.receive(pushed, "push")
    assert new and landed.status == "delivered" and (landed.mode, landed.channel) == ("referral", "mini_program")
    due = rule(landed)
    delivered_at = datetime.fromisoformat(landed.history[-1].at.replace("Z", "+00:00")).timestamp()
    assert due is not None and abs(due - (delivered_at + receiver_config.supervision.accepted)) < 0.01
    assert await redis.zscore("linkage:deadlines", landed.id) == due
    accepted = await receiver.record(landed.id, "accepted", "2001")
    resolved = await receiver.record(accepted.id, "resolved", "2001", {"result": "已救出"})
    assert resolved.status == "resolved"
    rows = [t async for t in queries.select(receiver.store, queries.parse_filter({"status": "resolved"}))]
    assert [t.id for t in rows] == [landed.id]
    [row] = list(csv.DictReader(io.StringIO(queries.csv_header() + queries.csv_row(rows[0]))))
    assert row["id"] == landed.id and row["caller_number"] == "13912345678"


def test_a_stored_ticket_from_before_the_new_fields_still_parses(tmp_path: Path) -> None:
    ticket = decode_ticket(encode({
        "schema": 1, "id": "37080020260101120000123456", "direction": "12345->110",
        "source": {"platform": "12345", "site": "12345"}, "target": {"platform": "110", "site": "110"},
        "created_at": "2026-01-01T12:00:00.000Z", "mode": "transfer"}))
    assert (ticket.channel, ticket.urgency, ticket.mode) == ("call", "", "transfer")
