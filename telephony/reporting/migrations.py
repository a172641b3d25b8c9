"""The reporting schema, as numbered migrations applied once each and in order (`schema_migrations` records
them). A migration is one transaction; a new figure source (the queue events of app_queue, for one) is a new
migration appended here, never an edit of an applied one. PostgreSQL takes an advisory lock first, so two
controllers starting against one database do not migrate it twice.

Times are kept twice: the ticket's ISO 8601 text as written, and epoch seconds (`*_ts`) for ranges and durations,
so the SQL is the same on both engines."""

from __future__ import annotations

from typing import NamedTuple

from telephony.reporting.db import Database
from telephony.tickets.models import now_iso

LOCK_ID = 7_345_110  # pg_advisory_xact_lock key of the reporting migrations


class Migration(NamedTuple):
    version: int
    name: str
    sql: str
    postgresql_only: str = ""


TABLES = """
CREATE TABLE tickets (
  site TEXT NOT NULL,
  id TEXT NOT NULL,
  direction TEXT NOT NULL,
  source_platform TEXT NOT NULL,
  source_site TEXT NOT NULL,
  target_platform TEXT NOT NULL,
  target_site TEXT NOT NULL,
  mode TEXT NOT NULL,
  channel TEXT NOT NULL,
  urgency TEXT NOT NULL,
  division TEXT NOT NULL,
  category TEXT NOT NULL,
  status TEXT NOT NULL,
  caller_number TEXT NOT NULL,
  agent_id TEXT NOT NULL,
  parent TEXT NOT NULL,
  return_reason TEXT NOT NULL,
  decision_keeper TEXT NOT NULL,
  decision_rule TEXT NOT NULL,
  decision_by TEXT NOT NULL,
  satisfaction TEXT NOT NULL,
  advice_followed INTEGER,
  overdue INTEGER NOT NULL,
  caller_abandoned INTEGER NOT NULL,
  created_at TEXT NOT NULL,
  created_ts DOUBLE PRECISION NOT NULL,
  updated_at TEXT NOT NULL,
  version INTEGER NOT NULL,
  PRIMARY KEY (site, id)
);
CREATE INDEX tickets_created ON tickets (created_ts);
CREATE INDEX tickets_parent ON tickets (parent);
CREATE TABLE ticket_events (
  site TEXT NOT NULL,
  id TEXT NOT NULL,
  ticket_id TEXT NOT NULL,
  type TEXT NOT NULL,
  at TEXT NOT NULL,
  at_ts DOUBLE PRECISION NOT NULL,
  actor_platform TEXT NOT NULL,
  actor_site TEXT NOT NULL,
  actor_agent TEXT NOT NULL,
  seq INTEGER NOT NULL,
  reason TEXT NOT NULL,
  detail TEXT NOT NULL,
  payload TEXT NOT NULL,
  PRIMARY KEY (site, id)
);
CREATE INDEX ticket_events_ticket ON ticket_events (site, ticket_id);
CREATE INDEX ticket_events_type ON ticket_events (type, at_ts)
"""

# The shared intermediate database (中间数据库): what the other platform may read. No caller numbers, no
# payload text beyond the reason; docs/reporting.md describes every column.
VIEWS = """
CREATE VIEW v_tickets AS
  SELECT site, id, direction, source_platform, source_site, target_platform, target_site, mode, channel,
         urgency, division, category, status, parent, return_reason, decision_keeper, decision_rule,
         satisfaction, overdue, caller_abandoned, created_at, updated_at, version
  FROM tickets;
CREATE VIEW v_ticket_events AS
  SELECT site, id, ticket_id, type, at, actor_platform, actor_site, seq, reason, detail
  FROM ticket_events;
CREATE VIEW v_daily_volume AS
  SELECT site, substr(created_at, 1, 10) AS day, direction, channel, target_site, COUNT(*) AS tickets
  FROM tickets
  GROUP BY site, substr(created_at, 1, 10), direction, channel, target_site
"""

# Read-only to its users: the views are granted to one role, the tables to nobody else. Creating the role needs
# CREATEROLE; where the migrating user lacks it, a DBA creates `linkage_reader` first (then this skips it).
READER = """
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'linkage_reader') THEN
      CREATE ROLE linkage_reader NOLOGIN;
    END IF;
  END $$;
GRANT SELECT ON v_tickets, v_ticket_events, v_daily_volume TO linkage_reader
"""

# Asterisk's queue_log (telephony/reporting/queue_log.py): every line as read (`queue_log`, keyed by a hash of
# its fields, so a line read twice is stored once), one row per call's stay in a queue derived from them
# (`queue_calls`, what the queue figures count), and where the reader stands in the file (`queue_log_position`,
# written in the same transaction as the lines it covers). Times are whole epoch seconds, as Asterisk writes them.
QUEUES = """
CREATE TABLE queue_log (
  site TEXT NOT NULL,
  hash TEXT NOT NULL,
  at_ts BIGINT NOT NULL,
  callid TEXT NOT NULL,
  queue TEXT NOT NULL,
  agent TEXT NOT NULL,
  event TEXT NOT NULL,
  data1 TEXT NOT NULL,
  data2 TEXT NOT NULL,
  data3 TEXT NOT NULL,
  data4 TEXT NOT NULL,
  data5 TEXT NOT NULL,
  PRIMARY KEY (site, hash)
);
CREATE TABLE queue_calls (
  site TEXT NOT NULL,
  queue TEXT NOT NULL,
  callid TEXT NOT NULL,
  entered_ts BIGINT NOT NULL,
  entered_at TEXT NOT NULL,
  hour BIGINT NOT NULL,
  entry_position INTEGER NOT NULL,
  outcome TEXT NOT NULL,
  wait_s INTEGER,
  agent TEXT NOT NULL,
  ended_ts BIGINT,
  PRIMARY KEY (site, callid, queue, entered_ts)
);
CREATE INDEX queue_calls_entered ON queue_calls (entered_ts, site, outcome, wait_s);
CREATE TABLE queue_log_position (
  site TEXT NOT NULL,
  path TEXT NOT NULL,
  inode BIGINT NOT NULL,
  offset_bytes BIGINT NOT NULL,
  head_length INTEGER NOT NULL,
  head_hash TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  PRIMARY KEY (site, path)
);
CREATE VIEW v_queue_calls AS
  SELECT site, queue, callid, entered_at, substr(entered_at, 1, 13) || ':00:00Z' AS hour, entry_position, outcome,
         wait_s, agent
  FROM queue_calls
"""
QUEUES_READER = "GRANT SELECT ON v_queue_calls TO linkage_reader"

# What the scope advisor (智能转办) advised, next to `advice_followed`, for "advice followed vs overridden".
# Rows written before this migration read '' until their ticket changes again.
ADVICE = "ALTER TABLE tickets ADD COLUMN advice_platform TEXT NOT NULL DEFAULT ''"

MIGRATIONS = (
    Migration(1, "tickets and their events", TABLES),
    Migration(2, "shared read-only views", VIEWS, READER),
    Migration(3, "app_queue's queue_log and the calls in queue", QUEUES, QUEUES_READER),
    Migration(4, "the platform the advisor advised", ADVICE),
)


def migrate(db: Database) -> list[int]:
    """Apply what is missing; returns the versions applied now."""
    applied: list[int] = []
    with db.transaction() as tx:
        tx.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
                   "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)")
    for migration in MIGRATIONS:
        with db.transaction() as tx:
            if db.dialect == "postgresql":
                tx.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_ID,))
            if tx.query("SELECT 1 FROM schema_migrations WHERE version = %s", (migration.version,)):
                continue
            tx.script(migration.sql)
            if db.dialect == "postgresql" and migration.postgresql_only:
                tx.script(migration.postgresql_only)
            tx.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (%s, %s, %s)",
                       (migration.version, migration.name, _now()))
            applied.append(migration.version)
    return applied


def current_version(db: Database) -> int:
    rows = db.query("SELECT MAX(version) FROM schema_migrations")
    return int(rows[0][0] or 0)


def _now() -> str:
    return now_iso()
