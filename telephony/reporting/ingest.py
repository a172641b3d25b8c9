"""Ticket events into the reporting database, idempotent and catching up.

Idempotent: an event row is keyed by (site, event id) and inserted only if absent; the ticket row is replaced
only by a copy of a higher `version`. A replayed event, a ticket written twice, an older copy read late: none
changes a row.

Catching up: the hook (`on_change`, subscribed in telephony/controller.py) only marks the ticket dirty and wakes
the worker, which writes in a thread. While the database is away the dirty tickets wait in memory and the worker
retries with backoff; each time it (re)connects — at start too, so a restart loses nothing — it re-reads from
Redis every ticket that may have changed since: created from the oldest ticket the database still holds open
(not closed or cancelled), or from its newest when none is open, less a margin for the peers' clocks. Redis is
the record; the database is rebuilt from it, so no outbox of its own is needed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import structlog
from redis.exceptions import RedisError

from telephony import backoff
from telephony.reporting.db import Database, DatabaseUnavailable, connect
from telephony.reporting.migrations import migrate
from telephony.reporting.rows import EVENT_COLUMNS, TICKET_COLUMNS, event_row, ticket_row
from telephony.tickets.models import Event, Ticket
from telephony.tickets.store import TicketStore
from telephony.waits import raise_if_cancelled

log = structlog.get_logger("reporting")
FINAL = ("closed", "cancelled")
CLOCK_MARGIN = 86400.0  # a peer's ticket carries the peer's creation time
PAGE = 500
COALESCE = 0.2  # seconds a woken writer waits for more changes: one SQLite transaction (a thread hop and an
# fsync) per moment instead of per ticket change, which under load was a sixth of the controller's samples

_UPDATED = ", ".join(f"{c} = excluded.{c}" for c in TICKET_COLUMNS[2:])
UPSERT_TICKET = (f"INSERT INTO tickets ({', '.join(TICKET_COLUMNS)}) "
                 f"VALUES ({', '.join(['%s'] * len(TICKET_COLUMNS))}) "
                 f"ON CONFLICT (site, id) DO UPDATE SET {_UPDATED} WHERE tickets.version < excluded.version")
INSERT_EVENT = (f"INSERT INTO ticket_events ({', '.join(EVENT_COLUMNS)}) "
                f"VALUES ({', '.join(['%s'] * len(EVENT_COLUMNS))}) ON CONFLICT (site, id) DO NOTHING")


def write(db: Database, site: str, tickets: Iterable[Ticket]) -> int:
    """One transaction for the batch; returns the tickets written. A ticket whose rows cannot be made is logged
    and skipped (never the batch)."""
    count = 0
    with db.transaction() as tx:
        for ticket in tickets:
            try:
                trow = ticket_row(site, ticket)
                erows = [event_row(site, e) for e in ticket.history]
            except (ValueError, TypeError, KeyError) as exc:
                log.warning("reporting.ticket_skipped", ticket_id=ticket.id, error=type(exc).__name__)
                continue
            tx.execute(UPSERT_TICKET, trow)
            tx.executemany(INSERT_EVENT, erows)
            count += 1
    return count


def catch_up_from(db: Database, site: str) -> float:
    """The creation time from which a ticket in Redis may differ from its rows (0: read everything)."""
    rows = db.query("SELECT MIN(created_ts) FROM tickets WHERE site = %s AND status NOT IN (%s, %s)",
                    (site, *FINAL))
    if rows[0][0] is None:
        rows = db.query("SELECT MAX(created_ts) FROM tickets WHERE site = %s", (site,))
    return 0.0 if rows[0][0] is None else max(0.0, float(rows[0][0]) - CLOCK_MARGIN)


def open_database(url: str) -> Database:
    db = connect(url)
    try:
        migrate(db)
    except BaseException:
        db.close()
        raise
    return db


class Ingest:
    def __init__(self, url: str, site: str, store: TicketStore, retry_cap: float = 30.0) -> None:
        self.url = url
        self.site = site
        self.store = store
        self.retry_cap = retry_cap
        self.db: Database | None = None
        self._dirty: dict[str, Ticket] = {}
        self._wake = asyncio.Event()
        self.caught_up = asyncio.Event()  # set after each catch-up (tests and health wait on it)

    def on_change(self, ticket: Ticket, _: Event) -> None:
        """TicketHooks.changed: the newest copy wins; the worker writes it."""
        self._dirty[ticket.id] = ticket
        self._wake.set()

    @property
    def backlog(self) -> int:
        return len(self._dirty)

    async def run(self) -> None:
        attempt = 0
        try:
            while True:
                try:
                    if self.db is None:
                        self.db = await asyncio.to_thread(open_database, self.url)
                        await self.catch_up(self.db)
                        log.info("reporting.connected", backlog=self.backlog)
                    attempt = 0
                    await self._drain(self.db)
                    raise_if_cancelled()  # a stop redis-py swallowed in the catch-up (telephony/waits.py)
                    await self._wake.wait()
                    await asyncio.sleep(COALESCE)  # the changes of the next moment go in the same transaction
                except Exception as exc:
                    attempt += 1
                    await self._drop(exc, attempt)
        finally:
            if self.db is not None:
                await asyncio.to_thread(self.db.close)
                self.db = None

    async def _drain(self, db: Database) -> None:
        self._wake.clear()
        if not self._dirty:
            return
        batch, self._dirty = self._dirty, {}
        try:
            await asyncio.to_thread(write, db, self.site, list(batch.values()))
        except BaseException:
            self._dirty = {**batch, **self._dirty}  # a newer copy that came meanwhile stays the newer
            raise

    async def _drop(self, exc: Exception, attempt: int) -> None:
        reason = exc.message if isinstance(exc, DatabaseUnavailable) else type(exc).__name__
        log.warning("reporting.database_away", error=reason, backlog=self.backlog, attempt=attempt)
        if self.db is not None:
            db, self.db = self.db, None
            await asyncio.to_thread(db.close)
        self.caught_up.clear()
        await asyncio.sleep(backoff.delay(attempt, 0.2, self.retry_cap))

    async def catch_up(self, db: Database) -> int:
        since = await asyncio.to_thread(catch_up_from, db, self.site)
        written = offset = 0
        while True:
            ids = await self.store.list_ids(since, limit=PAGE, offset=offset)
            tickets = [t for t in [await self._read(i) for i in ids] if t is not None]
            written += await asyncio.to_thread(write, db, self.site, tickets)
            if len(ids) < PAGE:
                break
            offset += PAGE
        log.info("reporting.caught_up", since=since, tickets=written)
        self.caught_up.set()
        return written

    async def _read(self, ticket_id: str) -> Ticket | None:
        try:
            return await self.store.get(ticket_id)
        except RedisError:
            raise  # Redis away: the catch-up is retried whole
        except Exception as exc:
            log.warning("reporting.ticket_unreadable", ticket_id=ticket_id, error=type(exc).__name__)
            return None
