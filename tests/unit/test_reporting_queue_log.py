"""app_queue's queue_log file into the reporting database, against real SQLite and a real PostgreSQL cluster: the
calls derived from the lines, a replay that changes nothing, a restart that resumes at the stored position, log
rotation (rename, copytruncate), the database away while the file grows, and lines that do not parse: logged
masked, skipped, and the lines after them land."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs
from throwaway_pg import ThrowawayPostgres

from telephony.reporting.db import Database, connect
from telephony.reporting.ingest import open_database
from telephony.reporting.queue_lines import BadLine, parse
from telephony.reporting.queue_log import QueueLogReader, QueueLogTailer
from telephony.reporting.report import period
from telephony.reporting.stats import Period, collect

T0 = 1_790_000_000  # 2026-09-21T14:13:20Z
CALLER = "13912345678"


def enter(t: int, callid: str, pos: int = 1, queue: str = "q110") -> str:
    return f"{t}|{callid}|{queue}|NONE|ENTERQUEUE||{CALLER}|{pos}"


# One of each outcome; c7 waits out a timeout and enters the same queue again, then is answered.
LINES = [
    f"{T0}|NONE|NONE|NONE|QUEUESTART|",
    f"{T0}|NONE|q110|PJSIP/2001|ADDMEMBER|",
    enter(T0 + 1, "1790000001.1"),
    f"{T0 + 6}|1790000001.1|q110|PJSIP/2001|CONNECT|5|1790000006.2|3",
    enter(T0 + 2, "1790000002.3", 2),
    f"{T0 + 6}|1790000002.3|q110|NONE|ABANDON|1|2|4",
    enter(T0 + 3, "1790000003.4", 2),
    f"{T0 + 43}|1790000003.4|q110|NONE|ABANDON|1|2|40",
    enter(T0 + 4, "1790000004.5", 3),
    f"{T0 + 64}|1790000004.5|q110|NONE|EXITWITHTIMEOUT|1|3|60",
    enter(T0 + 5, "1790000005.6", 3),
    f"{T0 + 10}|1790000005.6|q110|PJSIP/2001|RINGNOANSWER|4000",
    f"{T0 + 25}|1790000005.6|q110|PJSIP/2002|CONNECT|20|1790000025.7|2",
    f"{T0 + 30}|1790000005.6|q110|PJSIP/2002|BLINDTRANSFER|110|linkage-transfer|20|5|3",
    f"{T0 + 7}|1790000007.8|q110|NONE|ENTERQUEUE||{CALLER}|1",
    f"{T0 + 7}|1790000007.8|q110|NONE|EXITEMPTY|1|1|0",
    enter(T0 + 100, "1790000100.9"),
    f"{T0 + 130}|1790000100.9|q110|NONE|EXITWITHTIMEOUT|1|1|30",
    enter(T0 + 131, "1790000100.9"),
    f"{T0 + 134}|1790000100.9|q110|PJSIP/2001|CONNECT|3|1790000134.10|2",
    f"{T0 + 200}|1790000100.9|q110|PJSIP/2001|COMPLETECALLER|3|66|1",
    f"{T0 + 70}|1790000001.1|q110|PJSIP/2001|COMPLETEAGENT|5|64|1",
    f"{T0 + 300}|NONE|q110|PJSIP/2001|PAUSE|午休",
]
# (callid, entered, outcome, wait, agent, ended)
CALLS = [
    ("1790000001.1", T0 + 1, "answered", 5, "PJSIP/2001", T0 + 70),
    ("1790000002.3", T0 + 2, "abandoned", 4, "", T0 + 6),
    ("1790000003.4", T0 + 3, "abandoned", 40, "", T0 + 43),
    ("1790000004.5", T0 + 4, "timeout", 60, "", T0 + 64),
    ("1790000005.6", T0 + 5, "transferred", 20, "PJSIP/2002", T0 + 30),
    ("1790000007.8", T0 + 7, "exitempty", 0, "", T0 + 7),
    ("1790000100.9", T0 + 100, "timeout", 30, "", T0 + 130),
    ("1790000100.9", T0 + 131, "answered", 3, "PJSIP/2001", T0 + 200),
]
BAD = [
    f"garbage from a broken writer {CALLER}",
    f"17900x0000|1790000200.1|q110|NONE|ENTERQUEUE||{CALLER}|1",
    f"{T0 + 400}|1790000200.1|q110|NONE|ENTERQUEUE||{CALLER}|first",
    f"{T0 + 400}|1790000200.1|q110|NONE|connect|5|x|1",
]


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/reporting.sqlite3"
    return str(request.getfixturevalue("pg_url"))


def write_file(path: Path, lines: list[str], mode: str = "a") -> None:
    with path.open(mode, encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))


def drain(reader: QueueLogReader, db: Database) -> int:
    total = 0
    while (n := reader.poll(db)) > 0:
        total += n
    return total


def calls(db: Database) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in db.query("SELECT callid, entered_ts, outcome, wait_s, agent, ended_ts FROM queue_calls "
                                       "ORDER BY entered_ts, callid")]


def dump(db: Database) -> tuple[list[Any], list[Any]]:
    return (db.query("SELECT * FROM queue_log ORDER BY hash"), db.query("SELECT * FROM queue_calls ORDER BY callid, "
                                                                          "entered_ts"))


def test_lines_become_calls_and_a_replay_changes_nothing(url: str, tmp_path: Path) -> None:
    log_file = tmp_path / "queue_log"
    write_file(log_file, LINES)
    db = open_database(url)
    try:
        assert drain(QueueLogReader("110", str(log_file)), db) == len(LINES)
        assert calls(db) == CALLS
        assert db.query("SELECT COUNT(*) FROM queue_log") == [(len(LINES),)]
        [(offset, inode)] = db.query("SELECT offset_bytes, inode FROM queue_log_position")
        assert (offset, inode) == (log_file.stat().st_size, log_file.stat().st_ino)
        before = dump(db)
        with db.transaction() as tx:  # the position lost: the whole file is read again
            tx.execute("DELETE FROM queue_log_position")
        assert drain(QueueLogReader("110", str(log_file)), db) == len(LINES)
        assert dump(db) == before
        view = db.query("SELECT * FROM v_queue_calls")
        assert len(view) == len(CALLS) and CALLER not in repr(view)  # the callerid is in no view
        assert ("1790000001.1", "2026-09-21T14:00:00Z") in [(r[2], r[4]) for r in view]
    finally:
        db.close()
    # the queue figures on this engine: 8 entered, 3 answered (one transferred), 1 abandoned within 10 s
    start, end = period("2026-09-21", "2026-09-21", "Asia/Shanghai")
    shown = {f.key: f for f in collect(url, Period(start, end, "Asia/Shanghai", "110"))[1]}
    assert str(shown["queue_answered"].rate) == "3 / 8 = 37.5%"
    assert str(shown["queue_early"].rate) == "1 / 8 = 12.5%"
    assert shown["queue_by_hour"].table[0][:3] == ["110", "22:00", 8]  # 14:13Z = 22:13 in Shanghai
    db = connect(url)
    try:
        pass
    finally:
        db.close()


def test_a_restart_resumes_at_the_stored_position(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/reporting.sqlite3"
    log_file = tmp_path / "queue_log"
    write_file(log_file, LINES[:4])
    db = open_database(url)
    try:
        drain(QueueLogReader("110", str(log_file)), db)
        with log_file.open("a") as f:
            f.write(LINES[4] + "\n" + LINES[5][:10])  # the PBX is half-way through a line
        assert drain(QueueLogReader("110", str(log_file)), db) == 1  # a new reader: the controller restarted
        with log_file.open("a") as f:
            f.write(LINES[5][10:] + "\n")
        assert drain(QueueLogReader("110", str(log_file)), db) == 1
        assert calls(db) == [(*CALLS[0][:3], 5, "PJSIP/2001", None), CALLS[1]]
        assert db.query("SELECT COUNT(*) FROM queue_log") == [(6,)]
    finally:
        db.close()


def test_rotation_by_rename_reads_the_old_file_to_its_end_then_the_new(url: str, tmp_path: Path) -> None:
    log_file = tmp_path / "queue_log"
    write_file(log_file, LINES[:6])
    db = open_database(url)
    reader = QueueLogReader("110", str(log_file))
    try:
        drain(reader, db)
        os.rename(log_file, tmp_path / "queue_log.1")  # logrotate; Asterisk still writes a line to the old one
        write_file(tmp_path / "queue_log.1", LINES[6:8])
        write_file(log_file, LINES[8:])  # then reopens the path
        drain(reader, db)
        assert calls(db) == CALLS
        os.rename(log_file, tmp_path / "queue_log.2")
        (tmp_path / "queue_log.2").unlink()  # rotated and compressed away before we looked
        write_file(log_file, [enter(T0 + 500, "1790000500.1")])
        drain(reader, db)
        assert calls(db)[-1] == ("1790000500.1", T0 + 500, "waiting", None, "", None)
    finally:
        db.close()


def test_copytruncate_is_read_from_the_start(tmp_path: Path) -> None:
    log_file = tmp_path / "queue_log"
    write_file(log_file, LINES)
    db = open_database(f"sqlite:///{tmp_path}/reporting.sqlite3")
    reader = QueueLogReader("110", str(log_file))
    try:
        drain(reader, db)
        write_file(log_file, [enter(T0 + 600, "1790000600.1")], mode="w")  # shorter than the position
        drain(reader, db)
        write_file(log_file, [f"{T0 + 609}|1790000600.1|q110|PJSIP/2001|CONNECT|9|1790000609.2|1"] * 40, mode="w")
        drain(reader, db)  # longer than before, but its first bytes changed: truncated and rewritten
        assert calls(db)[-1] == ("1790000600.1", T0 + 600, "answered", 9, "PJSIP/2001", None)
    finally:
        db.close()


def test_a_line_that_does_not_parse_is_logged_masked_and_skipped(url: str, tmp_path: Path) -> None:
    log_file = tmp_path / "queue_log"
    write_file(log_file, [*LINES[:4], *BAD, *LINES[4:]])
    with log_file.open("ab") as f:
        f.write(b"\xff\xfe|not|utf8|at|ALL\n")
    write_file(log_file, [enter(T0 + 700, "1790000700.1")])
    db = open_database(url)
    reader = QueueLogReader("110", str(log_file))
    try:
        with capture_logs() as logs:
            drain(reader, db)
    finally:
        db.close()
    skipped = [e for e in logs if e["event"] == "queue_log.line_skipped"]
    assert [e["reason"] for e in skipped] == [
        "1 fields, at least 5 expected (epoch|callid|queue|agent|event)", "the time is not epoch seconds",
        "ENTERQUEUE position (data3) is not a whole number", "the event is not an event name", "not UTF-8 text"]
    assert reader.skipped == 5
    assert CALLER not in repr(logs) and "139******78" in repr(skipped[0])
    db = connect(url)
    try:
        assert calls(db) == [*CALLS, ("1790000700.1", T0 + 700, "waiting", None, "", None)]
    finally:
        db.close()


@pytest.mark.parametrize("text", ["", "a|b|c|d", "1790000000|x y|q|a|ENTERQUEUE", "1790000000|1.2|q\x01|a|PAUSE",
                                  "1790000000|1.2|q|a|CONNECT|soon|x|1", "1790000000|1.2|q|NONE|ABANDON|1|1|"])
def test_parse_refuses(text: str) -> None:
    with pytest.raises(BadLine):
        parse(text)


def test_parse_keeps_a_long_attended_transfer_whole() -> None:
    line = parse(f"{T0}|1.2|q|PJSIP/2001|ATTENDEDTRANSFER|LINK|PJSIP/a-1|PJSIP/b-2|10|20|1")
    assert line.data == ("LINK", "PJSIP/a-1", "PJSIP/b-2", "10", "20|1")


@contextlib.asynccontextmanager
async def tailing(tailer: QueueLogTailer) -> AsyncIterator[QueueLogTailer]:
    task = asyncio.create_task(tailer.run())
    try:
        yield tailer
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until_calls(url: str, n: int, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            try:
                db = connect(url)
                try:
                    if len(calls(db)) >= n:
                        return
                finally:
                    db.close()
            except Exception:
                pass
            await asyncio.sleep(0.1)


async def test_sqlite_away_the_file_waits(tmp_path: Path) -> None:
    blocker = tmp_path / "away"
    blocker.write_text("a file where the database's folder should be")
    url = f"sqlite:///{blocker}/reporting.sqlite3"
    log_file = tmp_path / "queue_log"
    write_file(log_file, LINES[:6])
    async with tailing(QueueLogTailer(url, "110", str(log_file), interval=0.05, retry_cap=0.2)):
        await asyncio.sleep(0.3)
        write_file(log_file, LINES[6:])
        blocker.unlink()
        await until_calls(url, len(CALLS))


async def test_postgresql_away_the_file_waits(postgres: ThrowawayPostgres, pg_url: str, tmp_path: Path) -> None:
    log_file = tmp_path / "queue_log"
    write_file(log_file, LINES[:6])
    async with tailing(QueueLogTailer(pg_url, "110", str(log_file), interval=0.05, retry_cap=0.2)):
        await until_calls(pg_url, 2)
        postgres.stop()
        write_file(log_file, LINES[6:])
        await asyncio.sleep(0.5)
        postgres.start()
        await until_calls(pg_url, len(CALLS))
    db = connect(pg_url)
    try:
        assert calls(db) == CALLS
    finally:
        db.close()


@pytest.mark.parametrize(("reporting", "key", "problem"), [
    ({"early_release_seconds": 0}, "reporting.early_release_seconds", ">= 1"),
    ({"early_release_seconds": "ten"}, "reporting.early_release_seconds", "must be an integer"),
    ({"early_release_seconds": 601}, "reporting.early_release_seconds", "<= 600"),
    ({"queue_log": "/var/log/asterisk/queue_log\n"}, "reporting.queue_log", "does not match"),
    ({"queue_log": ["queue_log"]}, "reporting.queue_log", "must be a string"),
    ({"url": "", "queue_log": "/var/log/asterisk/queue_log"}, "reporting.queue_log", "needs reporting.url"),
])
def test_bad_queue_settings_are_named(tmp_path: Path, reporting: dict[str, Any], key: str, problem: str) -> None:
    from linkage_lab.lab.lab import PLANS, Lab
    from telephony.config.load import parse_site_config
    from telephony.errors import ConfigError

    raw = Lab(rootfs=str(tmp_path)).site_raw(PLANS["110"])
    raw["reporting"] = reporting
    with pytest.raises(ConfigError) as info:
        parse_site_config(raw, "site.yaml")
    assert info.value.details["key"] == key and problem in info.value.message, info.value.message
    raw["reporting"] = {"queue_log": "log/queue_log", "early_release_seconds": 15}
    assert parse_site_config(raw, "site.yaml").reporting.early_release_seconds == 15
