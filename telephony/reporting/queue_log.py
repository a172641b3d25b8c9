"""Asterisk's `queue_log` file into the reporting database: every line kept as read, and one `queue_calls` row per
call's stay in a queue (entered → answered | abandoned | timeout | exitempty | exitkey | withdrawn, then perhaps
transferred), which the queue figures count.

Why the file and not AMI's queue events: the file is Asterisk's own durable record. It is written whether or not
the controller or its AMI link is up, and it can be re-read from a stored position, so an outage of the
controller, of AMI or of the database loses nothing: the reader resumes where its last transaction ended.

The lines and the calls derived from them: telephony/reporting/queue_lines.py.

Exactly once: the lines of a batch, their effect on `queue_calls` and the new position (inode, offset and a hash
of the file's first bytes) commit in one transaction. Replayed anyway (a lost position, a file copied back): a raw
line is keyed by a hash of its fields and inserted only if absent, and each derived update applies only from the
state it moves from (a CONNECT moves a waiting call), so a second pass changes nothing. Rotation: a new inode
means the file was renamed away (Asterisk's `logger rotate`, logrotate): the rest of the old file is read first
if it is still beside the new one under the same inode, then the new file from its start; a file shorter than the
position, or whose first bytes changed, was truncated or replaced: read from its start. A line that does not
parse is logged (its fields masked, its data left out: the callerid is a phone number) and skipped."""

from __future__ import annotations

import asyncio
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import structlog

from telephony import backoff
from telephony.logs import escape, mask_phone
from telephony.reporting.db import Database
from telephony.reporting.ingest import open_database
from telephony.reporting.queue_lines import MAX_LINE, BadLine, Line, parse, write_lines
from telephony.tickets.models import now_iso

log = structlog.get_logger("reporting")

READ_BYTES = 1 << 20  # per transaction
HEAD = 256  # bytes of the file's start whose hash tells a replaced or truncated file


# -- the position in the file ---------------------------------------------------------------------------------------

@dataclass
class Position:
    inode: int
    offset: int
    head_length: int = 0
    head_hash: str = ""


def load_position(db: Database, site: str, path: str) -> Position | None:
    rows = db.query("SELECT inode, offset_bytes, head_length, head_hash FROM queue_log_position "
                    "WHERE site = %s AND path = %s", (site, path))
    return Position(*rows[0]) if rows else None


SAVE_POSITION = ("INSERT INTO queue_log_position (site, path, inode, offset_bytes, head_length, head_hash, "
                 "updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (site, path) DO UPDATE SET "
                 "inode = excluded.inode, offset_bytes = excluded.offset_bytes, head_length = excluded.head_length, "
                 "head_hash = excluded.head_hash, updated_at = excluded.updated_at")


def _head(path: Path, length: int) -> str:
    with path.open("rb") as f:
        return hashlib.sha1(f.read(length)).hexdigest()


# -- the reader ---------------------------------------------------------------------------------------------------

class QueueLogReader:
    """One poll at a time, blocking (file and database): `poll` reads what was appended since the stored position
    and commits it. `QueueLogTailer` runs it in a thread every `interval` seconds."""

    def __init__(self, site: str, path: str) -> None:
        self.site = site
        self.path = Path(path)
        self.key = str(self.path)
        self.skipped = 0  # lines that did not parse, since start
        self.position: Position | None = None  # as last committed; None: read it from the database

    def poll(self, db: Database) -> int:
        """Lines consumed (parsed or skipped) now; 0 when nothing new."""
        if self.position is None:
            self.position = load_position(db, self.site, self.key)
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return 0
        pos = self.position
        if pos is not None and pos.inode != st.st_ino:
            rotated = self._rotated(pos.inode)
            if rotated is not None:
                consumed = self._consume(db, rotated, pos)
                if consumed:
                    return consumed
            log.info("queue_log.rotated", path=self.key, old_inode=pos.inode, inode=st.st_ino,
                     old_file=str(rotated) if rotated else "")
            pos = None
        elif pos is not None and (st.st_size < pos.offset or
                                  (pos.head_length and _head(self.path, pos.head_length) != pos.head_hash)):
            log.info("queue_log.truncated", path=self.key, offset=pos.offset, size=st.st_size)
            pos = None
        return self._consume(db, self.path, pos or Position(st.st_ino, 0))

    def _rotated(self, inode: int) -> Path | None:
        """The renamed old file (queue_log.1, queue_log-20261201, …) if it is still in the folder."""
        try:
            for entry in os.scandir(self.path.parent):
                if entry.name.startswith(self.path.name) and entry.name != self.path.name and \
                        entry.is_file(follow_symlinks=False) and entry.inode() == inode:
                    return Path(entry.path)
        except OSError:
            return None
        return None

    def _consume(self, db: Database, path: Path, pos: Position) -> int:
        with path.open("rb") as f:
            f.seek(pos.offset)
            chunk = f.read(READ_BYTES)
        end = chunk.rfind(b"\n") + 1
        if end == 0:
            if len(chunk) < READ_BYTES:
                if pos != self.position and pos.offset == 0:
                    self._save(db, path, pos, [])  # a new, still empty file: remember we are on it
                return 0  # a line being written: wait for its end
            end = len(chunk)  # a megabyte without a newline is no line of Asterisk's
        pieces = chunk[:end].split(b"\n")
        if chunk[:end].endswith(b"\n"):
            pieces.pop()
        lines: list[Line] = []
        consumed, offset = 0, pos.offset
        for raw in pieces:
            start, offset = offset, offset + len(raw) + 1
            if not raw.strip():
                continue
            consumed += 1
            try:
                if len(raw) > MAX_LINE:
                    raise BadLine(f"{len(raw)} bytes, more than {MAX_LINE}")
                lines.append(parse(raw.decode("utf-8").rstrip("\r")))
            except (BadLine, UnicodeDecodeError) as exc:
                self._skip(path, start, raw, exc)
        new = Position(pos.inode, pos.offset + end)
        self._save(db, path, new, lines)
        return max(consumed, 1)

    def _save(self, db: Database, path: Path, pos: Position, lines: list[Line]) -> None:
        if pos.offset and pos.head_length < HEAD:
            pos.head_length = min(HEAD, pos.offset)
            pos.head_hash = _head(path, pos.head_length)
        with db.transaction() as tx:
            write_lines(tx, self.site, lines)
            tx.execute(SAVE_POSITION, (self.site, self.key, pos.inode, pos.offset, pos.head_length, pos.head_hash,
                                       now_iso()))
        self.position = pos

    def _skip(self, path: Path, offset: int, raw: bytes, exc: Exception) -> None:
        self.skipped += 1
        fields = raw.decode("utf-8", "replace").split("|")
        # the first five fields (time, callid, queue, agent, event), masked and cut; the data never (callerid)
        shown = [escape(mask_phone(f[:40])) for f in fields[:5]]
        reason = str(exc) if isinstance(exc, BadLine) else "not UTF-8 text"
        log.warning("queue_log.line_skipped", file=str(path), offset=offset, reason=reason, fields=shown,
                    data_fields=max(0, len(fields) - 5))


class QueueLogTailer:
    """The controller's task (telephony/controller.py): polls the file every `interval` seconds, at once again
    while there is more to read; while the database is away it retries with backoff, and the file waits."""

    def __init__(self, url: str, site: str, path: str, interval: float = 1.0, retry_cap: float = 30.0) -> None:
        self.url = url
        self.reader = QueueLogReader(site, path)
        self.interval = interval
        self.retry_cap = retry_cap
        self.db: Database | None = None
        self.polled = asyncio.Event()  # set after each poll that found nothing new (tests wait on it)

    async def run(self) -> None:
        attempt = 0
        try:
            while True:
                try:
                    if self.db is None:
                        self.db = await asyncio.to_thread(open_database, self.url)
                        self.reader.position = None  # what the database holds is the truth
                        log.info("queue_log.connected", path=self.reader.key)
                    consumed = await asyncio.to_thread(self.reader.poll, self.db)
                    attempt = 0
                    if not consumed:
                        self.polled.set()
                        await asyncio.sleep(self.interval)
                except Exception as exc:
                    attempt += 1
                    await self._drop(exc, attempt)
        finally:
            if self.db is not None:
                await asyncio.to_thread(self.db.close)
                self.db = None

    async def _drop(self, exc: Exception, attempt: int) -> None:
        log.warning("queue_log.retry", error=type(exc).__name__, message=str(exc)[:200], attempt=attempt)
        if self.db is not None:
            db, self.db = self.db, None
            await asyncio.to_thread(db.close)
        self.polled.clear()
        await asyncio.sleep(backoff.delay(attempt, 0.2, self.retry_cap))

