"""The queue figures of the review, counted in SQL from `queue_calls` (telephony/reporting/queue_lines.py) so a
quarter of a big city's calls (millions of rows) is two grouped scans, not rows shipped to Python: one query of
sums per (site, hour of day) and one histogram of the answered calls' waits (whole seconds, as app_queue writes
them) for the p90. Hours of day are in the report's time zone: the period is cut where the zone's UTC offset
changes and each piece is shifted by its own offset, so a DST change is counted right.

Scope: the calls that entered a queue in the period; `answered` is outcome answered or transferred (the agent
took the call, then perhaps transferred it: the one-key transfer does)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from telephony.reporting.db import Database
from telephony.reporting.figures import Figure, Rate, Value

SL_SECONDS = 15  # service level 80/15: the share answered within 15 s, against a target of 80 %
ANSWERED = "outcome IN ('answered', 'transferred')"
# hour of day = local hours since the epoch − whole local days × 24 (integer division on both engines; `%` would
# be a placeholder to psycopg and MOD() is not in every SQLite)
_HOUR = "(entered_ts + %s) / 3600 - (entered_ts + %s) / 86400 * 24"
_SUMS = (f"SELECT site, {_HOUR} AS h, COUNT(*), "
         f"SUM(CASE WHEN {ANSWERED} THEN 1 ELSE 0 END), "
         "SUM(CASE WHEN outcome = 'abandoned' THEN 1 ELSE 0 END), "
         "SUM(CASE WHEN outcome = 'abandoned' AND wait_s <= %s THEN 1 ELSE 0 END), "
         f"SUM(CASE WHEN {ANSWERED} AND wait_s <= %s THEN 1 ELSE 0 END), "
         "SUM(CASE WHEN outcome = 'abandoned' AND wait_s <= %s THEN 1 ELSE 0 END), "
         f"SUM(CASE WHEN {ANSWERED} THEN wait_s ELSE 0 END) "
         "FROM queue_calls WHERE entered_ts >= %s AND entered_ts < %s{site} GROUP BY site, h")
_WAITS = (f"SELECT site, {_HOUR} AS h, wait_s, COUNT(*) FROM queue_calls "
          f"WHERE entered_ts >= %s AND entered_ts < %s AND {ANSWERED}{{site}} GROUP BY site, h, wait_s")


@dataclass
class Cell:
    """The counts of one site and hour of day (or their sum)."""

    entered: int = 0
    answered: int = 0
    abandoned: int = 0
    early: int = 0  # abandoned within N s
    answered_sl: int = 0  # answered within 15 s
    abandoned_sl: int = 0  # abandoned within 15 s
    wait_sum: int = 0  # of the answered
    waits: Counter[int] = field(default_factory=Counter)  # answered wait (s) → calls

    def add(self, other: Cell) -> None:
        for name in ("entered", "answered", "abandoned", "early", "answered_sl", "abandoned_sl", "wait_sum"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.waits.update(other.waits)

    def p90(self) -> int | None:
        """Nearest rank, ⌈0.9 n⌉, read off the histogram (the same value as sorting the n waits)."""
        n = sum(self.waits.values())
        rank, seen = -(-90 * n // 100), 0
        for wait, count in sorted(self.waits.items()):
            seen += count
            if seen >= rank:
                return wait
        return None

    def average(self) -> str:
        return f"{self.wait_sum / self.answered:.1f}" if self.answered else "–"


def segments(start: float, end: float, zone: ZoneInfo) -> list[tuple[int, int, int]]:
    """[start, end) cut where the zone's UTC offset changes (on a whole hour): (from, to, offset seconds)."""
    out: list[tuple[int, int, int]] = []
    t = int(start)
    while t < end:
        offset = _offset(t, zone)
        step = t - t % 3600 + 3600
        while step < end and _offset(step, zone) == offset:
            step += 3600
        stop = min(int(end), step)
        out.append((t, stop, offset))
        t = stop
    return out


def _offset(t: int, zone: ZoneInfo) -> int:
    delta = datetime.fromtimestamp(t, UTC).astimezone(zone).utcoffset() or timedelta(0)
    return int(delta.total_seconds())


def load(db: Database, start: float, end: float, site: str | None, tz: str, early: int) -> dict[tuple[str, int], Cell]:
    cells: dict[tuple[str, int], Cell] = {}
    where = "" if site is None else " AND site = %s"
    extra: tuple[object, ...] = () if site is None else (site,)
    for lo, hi, offset in segments(start, end, ZoneInfo(tz)):
        sums = db.query(_SUMS.format(site=where), (offset, offset, early, SL_SECONDS, SL_SECONDS, lo, hi, *extra))
        for s, h, *n in sums:
            entered, answered, abandoned, early_n, answered_sl, abandoned_sl, wait_sum = (int(v or 0) for v in n)
            cell = Cell(entered, answered, abandoned, early_n, answered_sl, abandoned_sl, wait_sum)
            cells.setdefault((s, int(h)), Cell()).add(cell)
        for s, h, wait, n in db.query(_WAITS.format(site=where), (offset, offset, lo, hi, *extra)):
            cells.setdefault((s, int(h)), Cell()).waits[int(wait)] += int(n)
    return cells


def compute(cells: dict[tuple[str, int], Cell], early: int) -> list[Figure]:
    by_site: dict[str, Cell] = {}
    total = Cell()
    for (site, _), cell in sorted(cells.items()):
        by_site.setdefault(site, Cell()).add(cell)
        total.add(cell)
    sites = sorted(by_site.items())

    def rates(num: str, den: str) -> list[tuple[str, Value]]:
        return [(s, str(Rate(getattr(c, num), getattr(c, den)))) for s, c in sites]

    def sl2(c: Cell) -> Rate:
        return Rate(c.answered_sl + c.abandoned_sl, c.answered + c.abandoned)

    p90 = total.p90()
    figures = [
        Figure("queue_answered", "接通率 answered rate", "calls answered (outcome answered or transferred) ÷ calls "
               "that entered a queue", rates("answered", "entered"), rate=Rate(total.answered, total.entered),
               chart=False),
        Figure("queue_early", f"排队早释率 early release (hung up within {early} s in queue)",
               f"calls abandoned with waittime ≤ {early} s (reporting.early_release_seconds) ÷ calls that entered "
               "a queue", rates("early", "entered"), rate=Rate(total.early, total.entered), chart=False),
        Figure("queue_wait", "Wait of answered calls: average and p90",
               "over answered calls: average = Σ holdtime ÷ answered; p90 = the holdtime at rank ⌈0.9 × n⌉ of the "
               "n sorted holdtimes (whole seconds, app_queue's CONNECT holdtime)",
               [("all sites", f"average {total.average()} s, p90 {'–' if p90 is None else p90} s"),
                *((s, f"average {c.average()} s, p90 {_p90(c)} s") for s, c in sites)], chart=False),
        Figure("queue_sl", f"Service level 80/{SL_SECONDS}: SL and SL2",
               f"SL = answered with holdtime ≤ {SL_SECONDS} s ÷ answered; SL2 = (answered with holdtime ≤ "
               f"{SL_SECONDS} s + abandoned with waittime ≤ {SL_SECONDS} s) ÷ (answered + abandoned); target SL ≥ 80%",
               [("SL, all sites", str(Rate(total.answered_sl, total.answered))), ("SL2, all sites", str(sl2(total))),
                *((f"SL, {s}", str(Rate(c.answered_sl, c.answered))) for s, c in sites),
                *((f"SL2, {s}", str(sl2(c))) for s, c in sites)],
               rate=Rate(total.answered_sl, total.answered), chart=False),
    ]
    table: list[list[Value]] = []
    for (site, hour), c in sorted(cells.items()):
        table.append([site, f"{hour:02d}:00", c.entered, _pct(c.answered, c.entered), _pct(c.early, c.entered),
                      c.average(), _p90(c), _pct(c.answered_sl, c.answered), _pct(*_parts(sl2(c)))])
    figures.append(Figure("queue_by_hour", "Queue figures by site and hour of day",
                          "each cell as above, for the calls that entered in that hour of the day (report's time "
                          "zone); 接通率 = answered ÷ entered; 早释率 = abandoned ≤ N s ÷ entered; SL = answered ≤ "
                          f"{SL_SECONDS} s ÷ answered; SL2 = (answered ≤ {SL_SECONDS} s + abandoned ≤ {SL_SECONDS} s) "
                          "÷ (answered + abandoned)", chart=False,
                          columns=["site", "hour", "entered", "接通率", "早释率", "average wait (s)", "p90 wait (s)",
                                   "SL", "SL2"], table=table))
    return figures


def _p90(c: Cell) -> str:
    v = c.p90()
    return "–" if v is None else str(v)


def _parts(r: Rate) -> tuple[int, int]:
    return r.num, r.den


def _pct(num: int, den: int) -> str:
    return f"{100 * num / den:.1f}%" if den else "–"
