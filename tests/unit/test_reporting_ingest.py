"""The reporting database against the real components: ticket changes made by the real TicketService on the
session's Redis, written into SQLite in a tmp folder and into a PostgreSQL cluster this module starts and stops.
A replay changes nothing; a restart or a database that was away is caught up from Redis."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest
import redis.asyncio as aioredis
from structlog.testing import capture_logs
from throwaway_pg import ThrowawayPostgres

from linkage_lab.lab.lab import PLANS, Lab
from telephony.reporting.db import Database, connect
from telephony.reporting.ingest import Ingest, write
from telephony.reporting.migrations import current_version, migrate
from telephony.tickets.hooks import TicketHooks
from telephony.tickets.models import Ticket
from telephony.tickets.services import TicketService
from telephony.tickets.store import TicketStore, ticket_key

REDIS_DB = 14  # the unit conftest's `redis` fixture gives this database, emptied


class Site:
    def __init__(self, tmp_path: Path, redis: aioredis.Redis) -> None:
        self.config = Lab(rootfs=str(tmp_path)).site_config(PLANS["12345"])
        self.store = TicketStore(redis)
        self.listeners: list[Callable[[Ticket, Any], None]] = []
        self.service = TicketService(self.config, self.store,
                                     TicketHooks(changed=(lambda t, e: [f(t, e) for f in self.listeners] and None,)))

    async def create(self, n: int) -> Ticket:
        return await self.service.create(target_site="110", target_platform="110", caller_number="13912345678",
                                         agent_id="1001", linkedid=f"1767268800.{n}", uniqueids=[],
                                         draft={"category": "report", "content": "路灯不亮"})


@pytest.fixture
def site(tmp_path: Path, redis: aioredis.Redis) -> Site:
    return Site(tmp_path, redis)


@contextlib.asynccontextmanager
async def running(ingest: Ingest, site: Site) -> AsyncIterator[Ingest]:
    site.listeners.append(ingest.on_change)
    task = asyncio.create_task(ingest.run())
    try:
        yield ingest
    finally:
        site.listeners.remove(ingest.on_change)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def dump(db: Database) -> tuple[list[Any], list[Any]]:
    return (db.query("SELECT * FROM tickets ORDER BY id"), db.query("SELECT * FROM ticket_events ORDER BY id"))


async def until(check: Callable[[], Awaitable[bool] | bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            result = check()
            if await result if not isinstance(result, bool) else result:
                return
            await asyncio.sleep(0.05)


def events_of(url: str, ticket_id: str) -> list[str]:
    db = connect(url)
    try:
        return [r[0] for r in db.query("SELECT type FROM ticket_events WHERE ticket_id = %s ORDER BY at_ts, seq",
                                       (ticket_id,))]
    finally:
        db.close()


async def replay_changes_nothing(url: str, site: Site) -> None:
    async with running(Ingest(url, "12345", site.store), site) as ingest:
        await until(ingest.caught_up.is_set)
        first = await site.create(1)
        second = await site.create(2)
        cancelled = await site.service.record(second.id, "cancelled", agent="1001")
        await until(lambda: events_of(url, second.id) == ["created", "cancelled"] and bool(events_of(url, first.id)))
    db = connect(url)
    try:
        before = dump(db)
        assert len(before[0]) == 2 and len(before[1]) == 3
        assert write(db, "12345", [first, second, cancelled, cancelled]) == 4  # the older copy `second` last but one
        assert dump(db) == before
        row = db.query("SELECT status, version, caller_number, category FROM tickets WHERE id = %s", (second.id,))
        assert row == [("cancelled", 2, "13912345678", "report")]
        assert migrate(db) == [] and current_version(db) == 4
    finally:
        db.close()


async def test_sqlite_replay_changes_nothing(tmp_path: Path, site: Site) -> None:
    await replay_changes_nothing(f"sqlite:///{tmp_path}/r/reporting.sqlite3", site)


async def test_postgresql_replay_changes_nothing(pg_url: str, site: Site) -> None:
    await replay_changes_nothing(pg_url, site)


async def test_a_restart_catches_up_from_redis(tmp_path: Path, site: Site) -> None:
    url = f"sqlite:///{tmp_path}/reporting.sqlite3"
    async with running(Ingest(url, "12345", site.store), site) as ingest:
        await until(ingest.caught_up.is_set)
        kept = await site.create(1)
        await until(lambda: events_of(url, kept.id) == ["created"])
    missed = await site.create(2)  # nobody listening: the controller was down
    await site.service.record(kept.id, "cancelled", agent="1001")
    async with running(Ingest(url, "12345", site.store), site) as ingest:
        await until(ingest.caught_up.is_set)
    assert events_of(url, missed.id) == ["created"]
    assert events_of(url, kept.id) == ["created", "cancelled"]


async def test_sqlite_away_is_caught_up(tmp_path: Path, site: Site) -> None:
    blocker = tmp_path / "away"
    blocker.write_text("a file where the database's folder should be")
    url = f"sqlite:///{blocker}/reporting.sqlite3"
    async with running(Ingest(url, "12345", site.store, retry_cap=0.2), site) as ingest:
        ticket = await site.create(1)
        await asyncio.sleep(0.3)
        assert ingest.backlog == 1 and not ingest.caught_up.is_set()
        blocker.unlink()
        await until(ingest.caught_up.is_set)
        await until(lambda: ingest.backlog == 0)
    assert events_of(url, ticket.id) == ["created"]


async def test_postgresql_away_is_caught_up(postgres: ThrowawayPostgres, pg_url: str, site: Site) -> None:
    async with running(Ingest(pg_url, "12345", site.store, retry_cap=0.2), site) as ingest:
        await until(ingest.caught_up.is_set)
        first = await site.create(1)
        await until(lambda: events_of(pg_url, first.id) == ["created"])
        postgres.stop()
        second = await site.create(2)
        await site.service.record(first.id, "cancelled", agent="1001")
        await asyncio.sleep(0.3)
        assert ingest.backlog >= 1
        postgres.start()
        await until(lambda: ingest.caught_up.is_set() and ingest.backlog == 0, timeout=20)
    assert events_of(pg_url, first.id) == ["created", "cancelled"]
    assert events_of(pg_url, second.id) == ["created"]


def test_postgresql_views_are_read_only_to_their_role(pg_url: str) -> None:
    db = connect(pg_url)
    try:
        migrate(db)
        with db.transaction() as tx:
            tx.execute("DROP ROLE IF EXISTS peer_platform")
            tx.execute("CREATE ROLE peer_platform LOGIN IN ROLE linkage_reader")
    finally:
        db.close()
    reader = pg_url.replace("linkage@", "peer_platform@")
    with psycopg.connect(reader) as conn:
        assert conn.execute("SELECT COUNT(*) FROM v_tickets").fetchone() == (0,)
        conn.execute("SELECT * FROM v_ticket_events, v_daily_volume")
    for statement in ("SELECT * FROM tickets", "INSERT INTO v_daily_volume (site) VALUES ('x')",
                      "DELETE FROM v_tickets", "SELECT caller_number FROM v_tickets"):
        with psycopg.connect(reader) as conn, pytest.raises(psycopg.Error):
            conn.execute(statement)


def test_sqlite_views_open_read_only(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/reporting.sqlite3"
    db = connect(url)
    migrate(db)
    db.close()
    reader = connect(url, readonly=True)
    try:
        assert reader.query("SELECT COUNT(*) FROM v_tickets") == [(0,)]
        with pytest.raises(Exception, match=r"readonly|read-only"), reader.transaction() as tx:
            tx.execute("DELETE FROM tickets")
    finally:
        reader.close()


@pytest.mark.parametrize("url", ["mysql://db/x", "sqlite:///", "sqlite:///a b", "postgresql://"])
def test_a_bad_reporting_url_is_named(tmp_path: Path, url: str) -> None:
    from telephony.config.load import parse_site_config
    from telephony.errors import ConfigError

    raw = Lab(rootfs=str(tmp_path)).site_raw(PLANS["12345"])
    raw["reporting"] = {"url": url}
    with pytest.raises(ConfigError) as info:
        parse_site_config(raw, "site.yaml")
    assert info.value.details["key"] == "reporting.url"


async def test_a_ticket_event_that_does_not_parse_is_logged_and_skipped(tmp_path: Path, site: Site,
                                                                        redis: aioredis.Redis) -> None:
    """Two ways a bad event reaches ingest: a stored ticket whose history no longer decodes (read in the catch-up),
    and a changed ticket whose new event has no valid time (heard live). Each is logged without the caller's
    number and skipped; the tickets after it land."""
    url = f"sqlite:///{tmp_path}/reporting.sqlite3"
    broken = await site.create(1)
    raw = await redis.get(ticket_key(broken.id))
    assert b'"type":"created"' in raw
    await redis.set(ticket_key(broken.id), raw.replace(b'"type":"created"', b'"type":"exploded"'))
    good = await site.create(2)
    with capture_logs() as logs:
        async with running(Ingest(url, "12345", site.store), site) as ingest:
            await until(ingest.caught_up.is_set)
            odd = msgspec.structs.replace(good.history[0], id="f" * 32, at="yesterday at noon", seq=2, version=2)
            ingest.on_change(msgspec.structs.replace(good, history=[*good.history, odd], version=2), odd)
            later = await site.create(3)
            await until(lambda: events_of(url, later.id) == ["created"])
    assert events_of(url, broken.id) == []
    assert events_of(url, good.id) == ["created"]  # its rows as they were before the odd copy
    kinds = {e["event"]: e for e in logs}
    assert kinds["reporting.ticket_unreadable"]["ticket_id"] == broken.id
    assert kinds["reporting.ticket_skipped"] == {"event": "reporting.ticket_skipped", "log_level": "warning",
                                                 "ticket_id": good.id, "error": "ValueError"}
    assert "13912345678" not in repr(logs)
