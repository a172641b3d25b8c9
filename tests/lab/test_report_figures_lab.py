"""Every figure of the quarterly review (会商交流) against a hand count, on a known set of calls and tickets made
through the real lab (issue 16, item 5): SIPp citizens who are answered in the queue, who give up early and
late, who are transferred with the one key, returned with a hostile reason, carried through the whole closed
loop, left to go overdue, sent the other way (110 → 12345), and whose transfer fails on a busy phone. The
controllers read their PBX's own queue_log and their tickets into their SQLite reporting databases, as in
production; the figures are computed by the library (stats.collect) for exactly the time window this test ran
in, because the lab's databases also hold every earlier test of the day. Then the real `linkage report` writes
the day's HTML and PDF, and the hostile text must be escaped there.

What the hand cannot fix to the second, and so is checked within bounds: app_queue writes waits as whole
seconds of `time()`, so a phone that rings 4.0 s gives a holdtime of 4 or 5; the ticket durations are the lab's
own latencies. Each queue call's wait is checked within its hand bounds, and the figures against those waits.
The advice figure (智能转办) is not asserted: which platform the scope advisor names is its model's decision,
not a number the hand can work out from the calls."""

from __future__ import annotations

import html
import json
import math
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from linkage_lab.harness.runner import run_scenario
from linkage_lab.harness.scenario import load
from linkage_lab.lab.lab import Lab
from telephony.config import load_site_config
from telephony.reporting.db import connect, resolve
from telephony.reporting.figures import Figure
from telephony.reporting.stats import Period, collect

pytestmark = pytest.mark.lab

ROOT = Path(__file__).parents[2]
SCENARIOS = ROOT / "tests" / "scenarios"
TZ = "Asia/Shanghai"
N = 10  # 排队早释: hung up within N s; the late abandon (11-12 s) is beyond it, within 15 s (SL2)
HOSTILE = '<script>alert("退回")</script>非警务事项：噪音投诉（report-figures）'  # report/return_hostile.yaml


@dataclass(frozen=True)
class QueueCall:
    outcome: str  # as queue_calls says: answered, transferred (answered, then the one key), abandoned
    wait: tuple[int, int]  # whole seconds: what the phone rang or the caller waited, and one more (time() ticks)


TRANSFERRED = QueueCall("transferred", (0, 1))  # the agent's phone answers within 0.1-0.5 s, then the key


@dataclass(frozen=True)
class Step:
    file: str
    queue: dict[str, list[QueueCall]]  # per site: the calls this scenario puts into that site's queue


# in the order they run. The linked calls (12345 → 110 and back) ring a free agent directly and never enter the
# far queue (docs/queues.md); a recall after a return or a failure rings the agent, not the queue.
STEPS = (
    Step("report/answered_in_queue.yaml", {"12345": [QueueCall("answered", (4, 5))]}),  # rings 4 s
    Step("report/abandon_early.yaml", {"12345": [QueueCall("abandoned", (3, 4))]}),  # hangs up after 3 s
    Step("report/abandon_late.yaml", {"12345": [QueueCall("abandoned", (11, 12))]}),  # … after 11 s
    Step("onekey_happy.yaml", {"12345": [TRANSFERRED]}),  # ticket O: 12345 → 110, signed for
    Step("report/return_hostile.yaml", {"12345": [TRANSFERRED]}),  # ticket R: returned with HOSTILE
    Step("lifecycle_full.yaml", {"12345": [TRANSFERRED]}),  # ticket C: accepted … resolved, followed up, closed
    Step("overdue_alert.yaml", {"12345": [TRANSFERRED]}),  # ticket D: overdue for signing, then signed for
    Step("onekey_110_to_12345.yaml", {"110": [TRANSFERRED]}),  # ticket M: 110 → 12345, accepted, resolved
    Step("failure_busy_recall.yaml", {"12345": [TRANSFERRED]}),  # ticket F: the 110 phone busy, transfer_failed
)

# The ticket figures, worked out by hand from the six tickets O R C D M F. Both sites hold a copy of each and
# every event reaches both copies, so each site's database gives the same figures.
TICKETS = {
    "direction": [("12345->110", 5), ("110->12345", 1)],  # O R C D F; M
    "channel": [("call", 6)],  # all six came with a call
    "target": [("110", 5), ("12345", 1)],
    "threeway": [],  # no three-way call in the set
    "failures": [("target busy", 1)],  # F
    # delivered by receiving unit: 110 has O R C D F, D overdue; 12345 has M, on time
    "overdue": [("110", "1 / 5 = 20.0%"), ("12345", "0 / 1 = 0.0%")],
    "satisfaction": [("satisfied", 1)],  # C's follow-up
    "disputed": [("report", 1)],  # R's return; R's category is report (its draft)
    "returned": [(HOSTILE, 1)],
}
RATES = {
    "signed_on_time": "4 / 5 = 80.0%",  # signed for or overdue for signing: O R C D M (F never signed); D overdue
    "feedback_on_time": "2 / 2 = 100.0%",  # accepted: C, M; both resolved without an overdue of accepted/resolved
    "returned": "1 / 6 = 16.7%",  # R of the six delivered (F was delivered before its call failed)
    "closed": "1 / 6 = 16.7%",  # C
}
# The queue figures by hand. 12345: 8 calls entered (answered, early, late, and O R C D F transferred);
# answered = 6 (the five transferred count as answered), abandoned 2, of which 1 within N = 10 s (2 within 14 s);
# every answer within 15 s, so SL = 6/6 and SL2 = (6 + both abandoned, ≤ 15 s) / (6 + 2). 110: M's caller only.
QUEUE = {
    "12345": {"queue_answered": "6 / 8 = 75.0%", "queue_early": "1 / 8 = 12.5%", "early_14": "2 / 8 = 25.0%",
              "sl": "6 / 6 = 100.0%", "sl2": "8 / 8 = 100.0%"},
    "110": {"queue_answered": "1 / 1 = 100.0%", "queue_early": "0 / 1 = 0.0%", "early_14": "0 / 1 = 0.0%",
            "sl": "1 / 1 = 100.0%", "sl2": "1 / 1 = 100.0%"},
}


def _site_file(desc: dict[str, Any], site: str) -> Path:
    return Path(desc["sites"][site]["dir"]) / "linkage.yaml"


def _database(desc: dict[str, Any], site: str) -> str:
    """The site's reporting database, found as `linkage report --config` finds it."""
    path = _site_file(desc, site)
    config = load_site_config(str(path))
    assert config.reporting.url and config.reporting.queue_log, "the lab's sites keep a reporting database"
    return resolve(config.reporting.url, str(path.parent))


def _version(site: dict[str, Any], ticket_id: str) -> int:
    request = urllib.request.Request(f"{site['http']}/v1/tickets/{ticket_id}",
                                     headers={"Authorization": f"Bearer {site['token']}"})
    with urllib.request.urlopen(request, timeout=5) as reply:
        return int(json.loads(reply.read())["version"])


def _queue_rows(url: str, site: str, start: float, end: float) -> list[tuple[Any, ...]]:
    db = connect(url, readonly=True)
    try:
        return db.query("SELECT entered_ts, outcome, wait_s FROM queue_calls WHERE site = %s AND entered_ts >= %s "
                        "AND entered_ts < %s ORDER BY entered_ts, callid", (site, start, end))
    finally:
        db.close()


def _ticket_versions(url: str, site: str, start: float, end: float) -> dict[str, int]:
    db = connect(url, readonly=True)
    try:
        rows = db.query("SELECT id, version FROM tickets WHERE site = %s AND created_ts >= %s AND created_ts < %s",
                        (site, start, end))
    finally:
        db.close()
    return {str(i): int(v) for i, v in rows}


def _wait_for_ingest(desc: dict[str, Any], site: str, url: str, ids: set[str], window: tuple[float, float],
                     calls: list[QueueCall]) -> None:
    """Ingest is asynchronous (the reporting worker, the queue_log tailer poll about once a second): wait until
    the database holds every ticket of the window at the controller's version and every queue call of the
    window with its final outcome. The assertions after it say what is missing if that never happens."""
    outcomes = sorted(c.outcome for c in calls)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        wanted = {i: _version(desc["sites"][site], i) for i in ids}
        rows = _queue_rows(url, site, *window)
        if _ticket_versions(url, site, *window) == wanted and sorted(r[1] for r in rows) == outcomes:
            return
        time.sleep(0.5)


def _hour(t: float) -> str:
    return f"{datetime.fromtimestamp(t, ZoneInfo(TZ)).hour:02d}:00"


def _pct(num: int, den: int) -> str:
    return f"{100 * num / den:.1f}%" if den else "–"


def _by_hour(calls: list[tuple[str, QueueCall, int]], site: str) -> list[list[Any]]:
    """The expected rows of queue_by_hour for (hour, hand call, wait read) triples: counts by hand, the waits'
    average and p90 from the waits read (each already checked within its hand bounds)."""
    table = []
    for hour in sorted({h for h, _, _ in calls}):
        here = [(c, w) for h, c, w in calls if h == hour]
        answered = [w for c, w in here if c.outcome != "abandoned"]
        abandoned = [w for c, w in here if c.outcome == "abandoned"]
        early = sum(1 for w in abandoned if w <= N)
        answered_sl = sum(1 for w in answered if w <= 15)
        abandoned_sl = sum(1 for w in abandoned if w <= 15)
        average = f"{sum(answered) / len(answered):.1f}" if answered else "–"
        p90 = str(sorted(answered)[math.ceil(0.9 * len(answered)) - 1]) if answered else "–"
        table.append([site, hour, len(here), _pct(len(answered), len(here)), _pct(early, len(here)), average, p90,
                      _pct(answered_sl, len(answered)),
                      _pct(answered_sl + abandoned_sl, len(answered) + len(abandoned))])
    return table


def _check_tickets(shown: dict[str, Figure], count: int, ids: set[str], held: dict[str, int]) -> None:
    assert set(held) == ids, "the window holds exactly this test's tickets"
    assert count == 6
    for key, rows in TICKETS.items():
        assert shown[key].rows == rows, (key, shown[key].rows)
    for key, text in RATES.items():
        assert str(shown[key].rate) == text, (key, str(shown[key].rate))
    # sign for ≈ how long the far phone rang: O 0.4 s, R 0.1, C 0.3, M 0.3, D 2.5 → median (rank 3 of 5) well
    # under 2 s, p90 (rank 5: D) at least D's 2.5 s less the lab's jitter; close: C, seconds after its call
    labels = [label for label, _ in shown["durations"].rows]
    assert labels == ["签收用时（秒），中位数（共 5 件）", "签收用时（秒），p90（共 5 件）",
                      "办结用时（秒），中位数（共 1 件）", "办结用时（秒），p90（共 1 件）"]
    median, p90, close_median, close_p90 = (float(v) for _, v in shown["durations"].rows)
    assert 0 <= median < 2.0 and 2.0 <= p90 < 10 and median <= p90, shown["durations"].rows
    assert 0 < close_median == close_p90 < 60, shown["durations"].rows
    [(label, value)] = shown["bouncing"].rows  # R, one ticket returned once, its caller masked
    assert "139******04" in label and "13912300104" not in label
    assert value == f"联动单 1 件，退回 1 次：12345->110 — {HOSTILE}"
    assert sum(int(row[2]) for row in shown["hotspots"].table) == 6


def _check_queue(shown: dict[str, Figure], site: str, rows: list[tuple[Any, ...]], calls: list[QueueCall],
                 hours: list[str | None]) -> None:
    hand = QUEUE[site]
    assert [r[1] for r in rows] == [c.outcome for c in calls], "the calls, in the order they entered the queue"
    waits = [int(r[2]) for r in rows]
    for call, wait in zip(calls, waits, strict=True):
        assert call.wait[0] <= wait <= call.wait[1], (call, wait)
    assert str(shown["queue_answered"].rate) == hand["queue_answered"]
    assert shown["queue_answered"].rows == [(site, hand["queue_answered"])]
    assert str(shown["queue_early"].rate) == hand["queue_early"]
    assert shown["queue_early"].rows == [(site, hand["queue_early"])]
    assert shown["queue_sl"].rows == [("SL，全部站点", hand["sl"]), ("SL2，全部站点", hand["sl2"]),
                                      (f"SL，{site}", hand["sl"]), (f"SL2，{site}", hand["sl2"])]
    answered = [(c, w) for c, w in zip(calls, waits, strict=True) if c.outcome != "abandoned"]
    low, high = (sum(c.wait[i] for c, _ in answered) / len(answered) for i in (0, 1))
    average = sum(w for _, w in answered) / len(answered)
    assert low <= average <= high
    p90 = sorted(w for _, w in answered)[math.ceil(0.9 * len(answered)) - 1]  # 12345: rank 6 of 6, the 4-5 s call
    assert max(c.wait[0] for c, _ in answered) <= p90 <= max(c.wait[1] for c, _ in answered)
    text = f"平均 {average:.1f} 秒，p90 {p90} 秒"
    assert shown["queue_wait"].rows == [("全部站点", text), (site, text)]
    known = [h for h in hours if h is not None]
    if len(known) == len(calls):  # every scenario began and ended in the same hour of the day: each call's is known
        expected = _by_hour(list(zip(known, calls, waits, strict=True)), site)
        assert shown["queue_by_hour"].table == expected
    else:  # a scenario ran across an hour boundary: its call may sit in either hour, only the sums are fixed
        assert sum(int(r[2]) for r in shown["queue_by_hour"].table) == len(calls)


def test_every_figure_of_the_window_matches_the_hand_count(desc: dict[str, Any], lab: Lab,
                                                           tmp_path: Path) -> None:
    start = math.floor(time.time())
    ids: dict[str, set[str]] = {"12345": set(), "110": set()}
    calls: dict[str, list[QueueCall]] = {"12345": [], "110": []}
    hours: dict[str, list[str | None]] = {"12345": [], "110": []}
    for step in STEPS:
        began = time.time()
        result = run_scenario(load(SCENARIOS / step.file), desc, lab)
        assert result.ok, result.report()
        ended = time.time()
        for site in ids:
            ids[site] |= {t["id"] for t in result.tickets.get(site, [])}
            for call in step.queue.get(site, []):
                calls[site].append(call)
                hours[site].append(_hour(began) if _hour(began) == _hour(ended) else None)
    end = time.time() + 1
    assert all(len(v) == 6 for v in ids.values()), ids

    for site in ("12345", "110"):
        url = _database(desc, site)
        _wait_for_ingest(desc, site, url, ids[site], (start, end), calls[site])
        count, figures = collect(url, Period(start, end, TZ, site, early_release=N))
        shown = {f.key: f for f in figures}
        _check_tickets(shown, count, ids[site], _ticket_versions(url, site, start, end))
        _check_queue(shown, site, _queue_rows(url, site, start, end), calls[site], hours[site])
        wider = {f.key: f for f in collect(url, Period(start, end, TZ, site, early_release=14))[1]}
        assert str(wider["queue_early"].rate) == QUEUE[site]["early_14"]  # N is the one passed
        everyone = {f.key: f for f in collect(url, Period(start, end, TZ, None, early_release=N))[1]}
        assert everyone["queue_answered"].rows == shown["queue_answered"].rows  # one site per lab database

    # the real command: the whole day (or days) of the window, HTML and PDF from the 12345 site file
    days = sorted({datetime.fromtimestamp(t, ZoneInfo(TZ)).date().isoformat() for t in (start, end)})
    out = tmp_path / "report"
    done = subprocess.run([sys.executable, "-m", "telephony", "report", "--from", days[0], "--to", days[-1],
                           "--config", str(_site_file(desc, "12345")), "--out", str(out), "--pdf",
                           "--early-release", str(N)], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    page = (out / "report.html").read_text(encoding="utf-8")
    assert html.escape(HOSTILE) in page and HOSTILE not in page and "<script" not in page
    assert "<h2>排队早释率</h2>" in page and f"排队等待 ≤ {N} 秒即放弃的来电" in page
    assert (out / "report.pdf").read_bytes()[:5] == b"%PDF-"
