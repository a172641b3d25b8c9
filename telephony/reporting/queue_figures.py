"""The queue figures of the review, counted in SQL from `queue_calls` (telephony/reporting/queue_lines.py) so a
quarter of a big city's calls (millions of rows) is two grouped scans, not rows shipped to Python: one query of
sums per (site, hour of day) and one histogram of the answered calls' waits (whole seconds, as app_queue writes
them) for the p90. Hours of day are in the report's time zone: the period is cut where the zone's UTC offset
changes and each piece is shifted by its own offset, so a DST change is counted right.

Scope: the calls that entered a queue in the period; `answered` is outcome answered or transferred (the agent
took the call, then perhaps transferred it: the one-key transfer does)."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from telephony.reporting.db import Database
from telephony.reporting.figures import Figure, Rate, Value

SL_SECONDS = 15  # service level 80/15: the share answered within 15 s, against a target of 80 %
ALL = "全部站点"  # the row of every site together
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
    """[start, end) cut where the zone's UTC offset changes (on a whole hour): (from, to, offset seconds).
    Queue times are whole seconds, so the bounds are rounded up to whole seconds first: [⌈start⌉, ⌈end⌉) holds the
    same seconds as [start, end), and the loop only ever steps on integers (with a fractional end, `int(end)`
    would stop short of it for ever)."""
    out: list[tuple[int, int, int]] = []
    t, last = math.ceil(start), math.ceil(end)
    while t < last:
        offset = _offset(t, zone)
        step = t - t % 3600 + 3600
        while step < last and _offset(step, zone) == offset:
            step += 3600
        stop = min(last, step)
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
        Figure("queue_answered", "接通率", "接通的来电（结果为接通或接通后转出）÷ 进入排队的来电",
               rates("answered", "entered"), rate=Rate(total.answered, total.entered), chart=False),
        Figure("queue_early", "排队早释率",
               f"排队等待 ≤ {early} 秒即放弃的来电（N = {early}，reporting.early_release_seconds）÷ 进入排队的来电",
               rates("early", "entered"), rate=Rate(total.early, total.entered), chart=False),
        Figure("queue_wait", "排队等待时长（平均与 p90）",
               "接通来电的等待时长：平均 = Σ 等待时长 ÷ 接通数；p90 = n 个等待时长升序排列后第 ⌈0.9 × n⌉ 位的值"
               "（整秒，app_queue 的 CONNECT holdtime）",
               [(ALL, f"平均 {total.average()} 秒，p90 {'–' if p90 is None else p90} 秒"),
                *((s, f"平均 {c.average()} 秒，p90 {_p90(c)} 秒") for s, c in sites)], chart=False),
        Figure("queue_sl", f"服务水平 80/{SL_SECONDS}（SL 与 SL2）",
               f"SL = 等待 ≤ {SL_SECONDS} 秒接通的来电 ÷ 接通的来电；SL2 = （等待 ≤ {SL_SECONDS} 秒接通的来电 + 等待 ≤ "
               f"{SL_SECONDS} 秒放弃的来电）÷（接通的来电 + 放弃的来电）；目标 SL ≥ 80%",
               [(f"SL，{ALL}", str(Rate(total.answered_sl, total.answered))), (f"SL2，{ALL}", str(sl2(total))),
                *((f"SL，{s}", str(Rate(c.answered_sl, c.answered))) for s, c in sites),
                *((f"SL2，{s}", str(sl2(c))) for s, c in sites)],
               rate=Rate(total.answered_sl, total.answered), chart=False),
    ]
    table: list[list[Value]] = []
    for (site, hour), c in sorted(cells.items()):
        table.append([site, f"{hour:02d}:00", c.entered, _pct(c.answered, c.entered), _pct(c.early, c.entered),
                      c.average(), _p90(c), _pct(c.answered_sl, c.answered), _pct(*_parts(sl2(c)))])
    figures.append(Figure("queue_by_hour", "排队指标（按站点与时段）",
                          "各格算法同上，统计在该时段（报告时区的一天中的小时）进入排队的来电；"
                          "接通率 = 接通 ÷ 进入排队；"
                          f"早释率 = 等待 ≤ {early} 秒放弃 ÷ 进入排队；SL = 等待 ≤ {SL_SECONDS} 秒接通 ÷ 接通；"
                          f"SL2 = （等待 ≤ {SL_SECONDS} 秒接通 + 等待 ≤ {SL_SECONDS} 秒放弃）÷（接通 + 放弃）",
                          chart=False, columns=["站点", "时段", "进入排队", "接通率", "早释率", "平均等待（秒）",
                                                "p90 等待（秒）", "SL", "SL2"], table=table))
    return figures


def _p90(c: Cell) -> str:
    v = c.p90()
    return "–" if v is None else str(v)


def _parts(r: Rate) -> tuple[int, int]:
    return r.num, r.den


def _pct(num: int, den: int) -> str:
    return f"{100 * num / den:.1f}%" if den else "–"
