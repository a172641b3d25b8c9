"""Tickets at rest: sealed with AES-256-GCM, rotation by key list, tampering and unknown keys refused."""

from __future__ import annotations

import base64
import os

import pytest
import redis.asyncio as aioredis

from telephony.errors import ConfigError
from telephony.security.sealing import Sealer
from telephony.tickets.models import Party, Ticket
from telephony.tickets.store import TicketStore, outbox_key, ticket_key

REDIS_DB = 6  # the unit conftest's `redis` fixture gives this database, emptied
OLD = base64.b64encode(os.urandom(32)).decode()
NEW = base64.b64encode(os.urandom(32)).decode()


def ticket() -> Ticket:
    return Ticket(id="37080020260101120000654321", direction="12345->110", source=Party("12345", "12345"),
                  target=Party("110", "110"), caller_number="13912345678", agent_id="1001", linkedid="x.1",
                  uniqueids=[], created_at="2026-01-01T00:00:00.000Z", caller_name="张三", address="某小区3号楼",
                  content="有人呼救")


async def test_nothing_personal_is_stored_in_clear(redis: aioredis.Redis) -> None:
    store = TicketStore(redis, Sealer([NEW]))
    t = ticket()
    assert await store.create(t, [("110", {"kind": "ticket", "body": t.to_dict()})])
    raw_ticket = await redis.get(ticket_key(t.id))
    raw_message = await redis.lindex(outbox_key("110"), 0)
    for raw in (raw_ticket, raw_message):
        text = raw.decode()
        assert text.startswith("enc:v1:")
        for secret in ("13912345678", "张三".encode().decode(), "某小区", "呼救"):
            assert secret not in text
    got = await store.get(t.id)
    assert got is not None and (got.caller_number, got.caller_name, got.address, got.content) == (
        "13912345678", "张三", "某小区3号楼", "有人呼救")


async def test_rotation_old_data_opens_with_the_new_list_and_new_writes_use_the_new_key(
        redis: aioredis.Redis) -> None:
    t = ticket()
    await TicketStore(redis, Sealer([OLD])).create(t, [])
    rotated = TicketStore(redis, Sealer([NEW, OLD]))
    assert (await rotated.get(t.id)) is not None
    await rotated.put(t)  # rewritten with the newest key
    assert (await TicketStore(redis, Sealer([NEW])).get(t.id)) is not None
    with pytest.raises(ConfigError, match=r"not in storage\.keys"):
        await TicketStore(redis, Sealer([OLD])).get(t.id)


def test_tampering_is_detected_and_clear_legacy_data_still_reads() -> None:
    sealer = Sealer([NEW])
    sealed = sealer.seal('{"a": 1}')
    head, blob = sealed.rsplit(":", 1)
    raw = bytearray(base64.b64decode(blob))
    raw[-1] ^= 1
    with pytest.raises(ConfigError, match="does not open"):
        sealer.open(head + ":" + base64.b64encode(bytes(raw)).decode())
    assert sealer.open('{"a": 1}') == '{"a": 1}'  # written before keys were configured
    assert Sealer([]).seal("x") == "x"
    with pytest.raises(ConfigError, match="32 bytes"):
        Sealer([base64.b64encode(b"short").decode()])
