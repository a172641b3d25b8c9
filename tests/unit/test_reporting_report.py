"""`linkage report` on a known set of tickets written into a real SQLite database: every figure checked against
numbers worked out by hand below, the page escaped, the numbers masked, the bad input refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from telephony.cli import main
from telephony.reporting.db import connect
from telephony.reporting.figures import Figure
from telephony.reporting.ingest import write
from telephony.reporting.migrations import migrate
from telephony.reporting.queue_lines import parse, write_lines
from telephony.reporting.report import period
from telephony.reporting.stats import Period, collect
from telephony.tickets.advised import Advised
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


def advice(platform: str, followed: bool) -> Advised:
    return Advised(platform=platform, category="report", clause="a.1", confidence=0.9, danger=False,  # type: ignore[arg-type]
                   suggest_threeway=False, followed=followed, catalogue="c1", model="m1")


OFFER = [("delivered", 1, {"via": "push"}), ("offered", 2, {})]
TICKETS = [
    ticket(1, [*OFFER, ("signed_for", 12, {}), ("accepted", 20, {}), ("resolved", 100, {"result": "ok"}),
               ("followed_up", 200, {"satisfaction": "satisfied"}), ("closed", 300, {})], category="report",
           division="370811", advice=advice("110", True)),
    ticket(2, [*OFFER, ("overdue", 70, {"state": "signed_for"}), ("signed_for", 80, {}),
               ("returned", 90, {"reason": EVIL})], category="complaint_report", return_reason=EVIL,
           division="370811", advice=advice("12345", False)),
    ticket(3, [*OFFER, ("signed_for", 32, {}), ("accepted", 40, {}), ("overdue", 500, {"state": "resolved"})],
           back=True, parent="37080020261001080002000000", category="complaint_report"),
    ticket(4, [("delivered", 1, {"via": "push"}), ("accepted", 100, {})], mode="referral", channel="web"),
    ticket(5, [("transfer_failed", 5, {"reason": "busy"}), ("closed", 10, {})], day="2026-10-12T08:00:00",
           division="370811", category="report", advice=advice("110", True)),
    ticket(6, [*OFFER, ("signed_for", 5, {}), ("decided", 60, {"rule": "emergency_110", "keeper": "110"})],
           mode="threeway", category="help"),
    ticket(7, [*OFFER], day="2026-12-31T20:00:00"),  # 01-01 in Shanghai: outside the period
]


E = 1790812800  # 2026-10-01T00:00:00Z = 08:00 in Asia/Shanghai
# (site, callid, entered, outcome event, wait): worked out by hand in test_queue_figures_match_the_hand_count
QUEUE = [("110", "a1", E, "CONNECT", 5), ("110", "a2", E + 60, "CONNECT", 12), ("110", "a3", E + 120, "CONNECT", 30),
         ("110", "b1", E + 180, "ABANDON", 4), ("110", "b2", E + 240, "ABANDON", 14),
         ("110", "t1", E + 300, "EXITWITHTIMEOUT", 60), ("110", "a4", E + 3600, "CONNECT", 15),
         ("110", "a5", E + 3660, "CONNECT", 40), ("110", "b3", E + 3720, "ABANDON", 10),
         ("12345", "a6", E + 10, "CONNECT", 2), ("12345", "e1", E + 20, "EXITEMPTY", 0),
         ("110", "x1", E - 3600 * 8 - 60, "CONNECT", 1)]  # 2026-09-30 23:59 in Shanghai: outside


def queue_lines(site: str) -> list[str]:
    out = []
    for s, callid, t, event, wait in QUEUE:
        if s != site:
            continue
        out.append(f"{t}|{callid}|q{site}|NONE|ENTERQUEUE||13912345678|1")
        agent, data = ("PJSIP/2001", f"{wait}|{callid}.b|1") if event == "CONNECT" else ("NONE", f"1|1|{wait}")
        out.append(f"{t + wait}|{callid}|q{site}|{agent}|{event}|{data}")
        if callid == "a3":
            out.append(f"{t + wait + 5}|{callid}|q{site}|{agent}|BLINDTRANSFER|110|linkage|{wait}|5|1")
    return out


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/reporting.sqlite3"
    db = connect(url)
    migrate(db)
    write(db, "12345", TICKETS)
    with db.transaction() as tx:
        for site in ("110", "12345"):
            write_lines(tx, site, [parse(line) for line in queue_lines(site)])
    db.close()
    return url


def figures_of(url: str, site: str | None = None, tz: str = "Asia/Shanghai") -> dict[str, Figure]:
    start, end = period("2026-10-01", "2026-12-31", tz)
    return {f.key: f for f in collect(url, Period(start, end, tz, site, early_release=10))[1]}


def test_every_figure_matches_the_hand_count(url: str) -> None:
    f = figures_of(url)
    assert f["direction"].rows == [("12345->110", 5), ("110->12345", 1)]
    assert f["channel"].rows == [("call", 5), ("web", 1)]  # (T7 is outside the period)
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
    assert str(f["advice"].rate) == "2 / 3 = 66.7%"  # T1, T5 of T1, T2, T5
    assert f["advice"].rows == [("采纳：建议 110", 2), ("改派：建议 12345 → 实际转 110", 1)]
    # weeks from Monday: 09-28 (T1-T4, T6), 10-12 (T5); division 370811: T1, T2, T5
    assert f["hotspots"].columns == ["区划", "类别", "合计", "2026-09-28 当周", "2026-10-12 当周"]
    assert f["hotspots"].table == [["370811", "report", 2, 1, 1], ["-", "-", 1, 1, 0],  # most first, then by name
                                   ["-", "complaint_report", 1, 1, 0], ["-", "help", 1, 1, 0],
                                   ["370811", "complaint_report", 1, 1, 0]]
    [(label, what)] = f["bouncing"].rows
    assert label.startswith("37080020261001080002000000 [complaint_report 370811] 139******78")
    assert str(what).startswith("联动单 2 件，退回 1 次：12345->110 → 110->12345")


def test_the_html_escapes_masks_and_shows_formulas(url: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["report", "--from", "2026-10-01", "--to", "2026-12-31", "--db", url, "--out", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "13912345678" not in page and "139******78" in page
    assert page.count('class="formula"') == 21 and page.count("<svg") >= 4
    assert "SL2 = （等待 ≤ 15 秒接通的来电 + 等待 ≤ 15 秒放弃的来电）÷（接通的来电 + 放弃的来电）" in page
    assert "期间创建联动单 6 件" in page and "<h2>按时签收率</h2>" in page and "公式：" in page
    assert main(["report", "--from", "2026-10-01", "--to", "2026-12-31", "--db", url, "--out", str(out),
                 "--full", "--site", "110"]) == 0
    assert "期间创建联动单 0 件" in (out / "report.html").read_text()  # this database holds 12345's copies


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


def test_queue_figures_match_the_hand_count(url: str) -> None:
    f = figures_of(url)
    # entered 11 (x1 is outside); answered a1-a6 (a3 transferred) = 6
    assert str(f["queue_answered"].rate) == "6 / 11 = 54.5%"
    assert f["queue_answered"].rows == [("110", "5 / 9 = 55.6%"), ("12345", "1 / 2 = 50.0%")]
    assert str(f["queue_early"].rate) == "2 / 11 = 18.2%"  # b1 (4 s) and b3 (10 s: ≤ N) of 11; b2 waited 14 s
    # answered waits 2 5 12 15 30 40: average 104 / 6; p90 rank ⌈5.4⌉ = 6 → 40; 110: 5 12 15 30 40, rank 5 → 40
    assert f["queue_wait"].rows == [("全部站点", "平均 17.3 秒，p90 40 秒"), ("110", "平均 20.4 秒，p90 40 秒"),
                                    ("12345", "平均 2.0 秒，p90 2 秒")]
    # SL: answered ≤ 15 s: 2 5 12 15 = 4 of 6; SL2: (4 + abandoned ≤ 15 s: b1 b2 b3) / (6 + 3)
    assert f["queue_sl"].rows == [("SL，全部站点", "4 / 6 = 66.7%"), ("SL2，全部站点", "7 / 9 = 77.8%"),
                                  ("SL，110", "3 / 5 = 60.0%"), ("SL，12345", "1 / 1 = 100.0%"),
                                  ("SL2，110", "6 / 8 = 75.0%"), ("SL2，12345", "1 / 1 = 100.0%")]
    assert f["queue_by_hour"].table == [
        ["110", "08:00", 6, "50.0%", "16.7%", "15.7", "30", "66.7%", "80.0%"],
        ["110", "09:00", 3, "66.7%", "33.3%", "27.5", "40", "50.0%", "66.7%"],
        ["12345", "08:00", 2, "50.0%", "0.0%", "2.0", "2", "100.0%", "100.0%"]]
    assert [r[1] for r in figures_of(url, tz="UTC")["queue_by_hour"].table] == ["00:00", "01:00", "00:00"]
    assert str(figures_of(url, site="12345")["queue_answered"].rate) == "1 / 2 = 50.0%"


def test_hours_of_day_follow_a_dst_change(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/dst.sqlite3"
    db = connect(url)
    migrate(db)
    change = 1774746000  # 2026-03-29T01:00:00Z: Berlin goes from +01:00 to +02:00
    with db.transaction() as tx:
        write_lines(tx, "110", [parse(f"{change - 1800}|c1|q|NONE|ENTERQUEUE||x|1"),
                                parse(f"{change + 1800}|c2|q|NONE|ENTERQUEUE||x|1")])
    db.close()
    start, end = period("2026-03-29", "2026-03-29", "Europe/Berlin")
    [*_, by_hour] = collect(url, Period(start, end, "Europe/Berlin"))[1]
    assert [r[1] for r in by_hour.table] == ["01:00", "03:00"]  # 01:30 CET, then 03:30 CEST


def test_a_window_of_fractional_seconds_counts_the_whole_seconds_inside_it(tmp_path: Path) -> None:
    """A period need not be whole days (a test's own window, `time.time()`): queue times are whole seconds, so
    [start, end) holds the calls that entered at a second s with start ≤ s < end — and the count ends."""
    url = f"sqlite:///{tmp_path}/window.sqlite3"
    db = connect(url)
    migrate(db)
    t0 = 1790812800
    with db.transaction() as tx:
        write_lines(tx, "110", [parse(f"{t0}|c1|q|NONE|ENTERQUEUE||x|1"),
                                parse(f"{t0 + 10}|c2|q|NONE|ENTERQUEUE||x|1")])
    db.close()
    for start, end, entered in ((t0 - 0.5, t0 + 10.5, 2), (t0 + 0.5, t0 + 10.5, 1), (t0 - 0.5, t0 + 9.9, 1),
                                (t0 + 0.25, t0 + 0.75, 0)):
        shown = {f.key: f for f in collect(url, Period(start, end, "Asia/Shanghai", "110"))[1]}
        assert shown["queue_answered"].rate is not None
        assert shown["queue_answered"].rate.den == entered, (start, end)
