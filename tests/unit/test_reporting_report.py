"""`linkage report` on a known set of tickets written into a real SQLite database: every figure checked against
numbers worked out by hand below, the page escaped, the numbers masked, the bad input refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from telephony.cli import main
from telephony.reporting.db import connect
from telephony.reporting.figures import Figure, compute, load
from telephony.reporting.ingest import write
from telephony.reporting.migrations import migrate
from telephony.reporting.report import period
from telephony.tickets.models import Event, Party, Ticket

DAY = "2026-10-01T08:00:00"  # 16:00 in Asia/Shanghai
EVIL = "不属于公安职责<script>alert(1)</script>"


def ticket(n: int, events: list[tuple[str, int, dict[str, Any]]], *, back: bool = False, day: str = DAY,
           **fields: Any) -> Ticket:
    tid = f"370800202610010800{n:02d}000000"
    src, dst = ("110", "12345") if back else ("12345", "110")
    history = [Event(f"{n:02d}{i:030d}", tid, kind, f"{day}.{0:03d}Z".replace(day, _at(day, s)),
                     {"platform": src, "site": src}, payload, i + 1, i + 1)
               for i, (kind, s, payload) in enumerate([("created", 0, {}), *events])]
    return Ticket(id=tid, direction=f"{src}->{dst}", source=Party(src, src), target=Party(dst, dst),
                  caller_number="13912345678", created_at=f"{day}.000Z", history=history, version=len(history),
                  status=history[-1].type, **fields)


def _at(day: str, seconds: int) -> str:
    hh, mm, ss = (int(x) for x in day[11:].split(":"))
    total = hh * 3600 + mm * 60 + ss + seconds
    return f"{day[:11]}{total // 3600:02d}:{total // 60 % 60:02d}:{total % 60:02d}"


OFFER = [("delivered", 1, {"via": "push"}), ("offered", 2, {})]
TICKETS = [
    ticket(1, [*OFFER, ("signed_for", 12, {}), ("accepted", 20, {}), ("resolved", 100, {"result": "ok"}),
               ("followed_up", 200, {"satisfaction": "satisfied"}), ("closed", 300, {})], category="report"),
    ticket(2, [*OFFER, ("overdue", 70, {"state": "signed_for"}), ("signed_for", 80, {}),
               ("returned", 90, {"reason": EVIL})], category="complaint_report", return_reason=EVIL),
    ticket(3, [*OFFER, ("signed_for", 32, {}), ("accepted", 40, {}), ("overdue", 500, {"state": "resolved"})],
           back=True, parent="37080020261001080002000000", category="complaint_report"),
    ticket(4, [("delivered", 1, {"via": "push"}), ("accepted", 100, {})], mode="referral", channel="web"),
    ticket(5, [("transfer_failed", 5, {"reason": "busy"}), ("closed", 10, {})]),
    ticket(6, [*OFFER, ("signed_for", 5, {}), ("decided", 60, {"rule": "emergency_110", "keeper": "110"})],
           mode="threeway", category="help"),
    ticket(7, [*OFFER], day="2026-12-31T20:00:00"),  # 01-01 in Shanghai: outside the period
]


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/reporting.sqlite3"
    db = connect(url)
    migrate(db)
    write(db, "12345", TICKETS)
    db.close()
    return url


def figures_of(url: str, site: str | None = None) -> dict[str, Figure]:
    start, end = period("2026-10-01", "2026-12-31", "Asia/Shanghai")
    db = connect(url, readonly=True)
    try:
        return {f.key: f for f in compute(load(db, start, end, site))}
    finally:
        db.close()


def test_every_figure_matches_the_hand_count(url: str) -> None:
    f = figures_of(url)
    assert f["direction"].rows == [("12345->110", 5), ("110->12345", 1)]
    assert f["channel"].rows == [("call", 5), ("web", 1)]
    assert f["target"].rows == [("110", 5), ("12345", 1)]
    assert str(f["signed_on_time"].rate) == "3 / 4 = 75.0%"  # T1, T3, T6 of T1, T2, T3, T6
    assert str(f["feedback_on_time"].rate) == "1 / 3 = 33.3%"  # T1 of T1, T3, T4
    assert str(f["returned"].rate) == "1 / 5 = 20.0%" and f["returned"].rows == [(EVIL, 1)]
    assert str(f["closed"].rate) == "1 / 5 = 20.0%"  # T5 closed but never delivered
    # sign for: 10, 78, 30, 3 s → sorted 3 10 30 78: median rank 2, p90 rank 4; close: 300, 10 s
    assert [v for _, v in f["durations"].rows] == [10.0, 78.0, 10.0, 300.0]
    assert f["threeway"].rows == [("emergency_110 (110)", 1)]
    assert f["failures"].rows == [("busy", 1)]
    assert f["overdue"].rows == [("110", "1 / 4 = 25.0%"), ("12345", "1 / 1 = 100.0%")]
    assert f["satisfaction"].rows == [("satisfied", 1)]
    assert sorted(f["disputed"].rows) == [("complaint_report", 1), ("help", 1)]
    [(label, what)] = f["bouncing"].rows
    assert label.startswith("37080020261001080002000000 [complaint_report -] 139******78")
    assert str(what).startswith("2 tickets, 1 returns: 12345->110 → 110->12345")


def test_the_html_escapes_masks_and_shows_formulas(url: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["report", "--from", "2026-10-01", "--to", "2026-12-31", "--db", url, "--out", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "13912345678" not in page and "139******78" in page
    assert page.count('class="formula"') == 14 and page.count("<svg") >= 4
    assert "6 tickets created" in page
    assert main(["report", "--from", "2026-10-01", "--to", "2026-12-31", "--db", url, "--out", str(out),
                 "--full", "--site", "110"]) == 0
    assert "0 tickets created" in (out / "report.html").read_text()  # this database holds 12345's copies


@pytest.mark.parametrize(("args", "message"), [
    (["--from", "2026-12-31", "--to", "2026-10-01"], "is after --to"),
    (["--from", "2026-13-01", "--to", "2026-12-31"], "--from: '2026-13-01' is not a date"),
    (["--from", "20261001", "--to", "2026-12-31"], "is not a date YYYY-MM-DD"),
    (["--from", "2020-01-01", "--to", "2026-12-31"], "spans more than 400 days"),
    (["--from", "2026-10-01", "--to", "2026-12-31", "--site", "a'; DROP TABLE tickets;--"], "not a site name"),
    (["--from", "2026-10-01", "--to", "2026-12-31", "--tz", "Mars/Base"], "is not a time zone"),
])
def test_bad_input_is_refused_with_a_clear_error(url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 args: list[str], message: str) -> None:
    assert main(["report", *args, "--db", url, "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o" / "report.html").exists()


def test_an_out_that_is_a_file_or_a_missing_database_is_refused(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("x")
    base = ["report", "--from", "2026-10-01", "--to", "2026-10-02"]
    assert main([*base, "--db", f"sqlite:///{tmp_path}/none.sqlite3", "--out", str(tmp_path / "file")]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err
    assert main([*base, "--db", f"sqlite:///{tmp_path}/none.sqlite3", "--out", str(tmp_path / "o")]) == 2
    assert "cannot be opened" in capsys.readouterr().err
