"""The figures of the quarterly review (会商交流), computed from the reporting database for one period. Every
figure carries its formula, shown next to it in the report. The rows are read with two parameterised queries and
counted here, so the same code runs on SQLite and PostgreSQL; percentiles are nearest-rank.

Scope: the tickets created in the period (the copies held by `site`, or one copy per ticket — the sender's —
when no site is given), with all their events, whenever they happened."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from telephony.logs import mask_phone
from telephony.reporting.db import Database

_TICKETS = ("SELECT site, id, direction, channel, target_site, mode, category, division, status, caller_number, "
            "parent, return_reason, created_ts, advice_followed, advice_platform, target_platform FROM tickets "
            "WHERE created_ts >= %s AND created_ts < %s")
_EVENTS = ("SELECT e.site, e.ticket_id, e.type, e.at_ts, e.reason, e.detail FROM ticket_events e "
           "JOIN tickets t ON t.site = e.site AND t.id = e.ticket_id "
           "WHERE t.created_ts >= %s AND t.created_ts < %s")
_ORDER = " ORDER BY e.at_ts, e.seq"
DONE = ("resolved", "followed_up", "closed")
NONE = "（无）"  # a count's row whose value is empty (no category, no reason …)


@dataclass
class Facts:
    site: str
    id: str
    direction: str
    channel: str
    target: str
    mode: str
    category: str
    division: str
    status: str
    caller: str
    parent: str
    return_reason: str
    created: float
    advice_followed: int | None = None  # None: no advice (no content typed)
    advised: str = ""  # the platform the advisor named
    target_platform: str = ""
    events: list[tuple[str, float, str, str]] = field(default_factory=list)  # type, at, reason, detail

    def first(self, kind: str) -> float | None:
        return next((at for t, at, _, _ in self.events if t == kind), None)

    def has(self, kind: str, reason: str | None = None) -> bool:
        return any(t == kind and (reason is None or r == reason) for t, _, r, _ in self.events)


@dataclass
class Rate:
    num: int
    den: int

    def __str__(self) -> str:
        return f"{self.num} / {self.den} = {100 * self.num / self.den:.1f}%" if self.den else f"{self.num} / 0 = –"


Value = int | float | str


@dataclass
class Figure:
    key: str
    title: str
    formula: str
    rows: list[tuple[str, Value]] = field(default_factory=list)
    rate: Rate | None = None
    chart: bool = True
    columns: list[str] = field(default_factory=list)  # a table's header (a figure by site × hour, by week …)
    table: list[list[Value]] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        """The console's form (GET /v1/stats): the same numbers and texts the report prints."""
        rate = None if self.rate is None else {"num": self.rate.num, "den": self.rate.den, "text": str(self.rate)}
        return {"key": self.key, "title": self.title, "formula": self.formula, "rate": rate,
                "rows": [[label, value] for label, value in self.rows], "columns": self.columns,
                "table": self.table}


def load(db: Database, start: float, end: float, site: str | None) -> list[Facts]:
    params: tuple[object, ...] = (start, end) if site is None else (start, end, site)
    where = "" if site is None else " AND site = %s"
    facts = {(r[0], r[1]): Facts(*r) for r in db.query(_TICKETS + where, params)}
    for s, tid, kind, at, reason, detail in db.query(_EVENTS + where.replace("site", "e.site") + _ORDER, params):
        facts[(s, tid)].events.append((kind, float(at), reason, detail))
    if site is not None:
        return list(facts.values())
    chosen: dict[str, Facts] = {}
    for f in sorted(facts.values(), key=lambda f: f.site):  # one copy per ticket: the sender's, else the first
        held = chosen.get(f.id)
        if held is None or (f.site == _sender(f) and held.site != _sender(held)):
            chosen[f.id] = f
    return list(chosen.values())


def _sender(f: Facts) -> str:
    return f.direction.split("->", 1)[0]


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def _counts(title: str, key: str, formula: str, counter: Counter[str]) -> Figure:
    return Figure(key, title, formula, [(k or NONE, v) for k, v in counter.most_common()])


def compute(tickets: list[Facts], full: bool = False, tz: str = "Asia/Shanghai", top: int = 10) -> list[Figure]:
    delivered = [t for t in tickets if t.has("delivered") or t.has("signed_for")]
    figures = [
        _counts("联动量（按方向）", "direction", "期间创建的联动单件数，按转办方向",
                Counter(t.direction for t in tickets)),
        _counts("联动量（电话 / 非电话渠道）", "channel",
                "期间创建的联动单件数，按渠道（call 为电话转接，其余为网络渠道转办的渠道）",
                Counter(t.channel for t in tickets)),
        _counts("联动量（按接收方）", "target", "期间创建的联动单件数，按接收站点",
                Counter(t.target for t in tickets)),
    ]
    to_sign = [t for t in tickets if t.mode != "referral" and (t.has("signed_for") or t.has("overdue", "signed_for"))]
    on_time = [t for t in to_sign if t.has("signed_for") and not t.has("overdue", "signed_for")]
    figures.append(Figure("signed_on_time", "按时签收率",
                          "已签收且无签收超时（overdue(signed_for)）事件的联动单 ÷ 已签收或签收超时的电话联动单",
                          rate=Rate(len(on_time), len(to_sign)), chart=False))
    accepted = [t for t in tickets if t.has("accepted")]
    fed_back = [t for t in accepted if t.has("resolved")
                and not (t.has("overdue", "accepted") or t.has("overdue", "resolved"))]
    figures.append(Figure("feedback_on_time", "按时反馈率",
                          "已受理且已办结、无受理或办结超时（overdue(accepted|resolved)）事件的联动单 ÷ 已受理的联动单",
                          rate=Rate(len(fed_back), len(accepted)), chart=False))
    returned = [t for t in delivered if t.has("returned")]
    figures.append(Figure("returned", "退回率及退回原因",
                          "有退回（returned）事件的联动单 ÷ 已送达的联动单；原因：联动单最后一次退回的原因",
                          [(r, n) for r, n in Counter(t.return_reason for t in returned).most_common()],
                          rate=Rate(len(returned), len(delivered))))
    closed = [t for t in delivered if t.has("closed")]
    figures.append(Figure("closed", "闭环率", "有办结归档（closed）事件的联动单 ÷ 已送达的联动单",
                          rate=Rate(len(closed), len(delivered)), chart=False))
    figures.append(_durations(tickets))
    figures.append(_counts("三方通话结果（按规则）", "threeway",
                           "三方通话联动单件数，按其第一个决定（decided）事件所依规则（括号内为留下来电的一方）",
                           Counter(f"{r} ({d})" for t in tickets for r, d in _first_decided(t))))
    figures.append(_counts("转接失败（按原因）", "failures", "转接失败（transfer_failed）事件数，按原因",
                           Counter(r for t in tickets for k, _, r, _ in t.events if k == "transfer_failed")))
    figures.append(_overdue(delivered))
    figures.append(_counts("回访满意度", "satisfaction",
                           "联动单件数，按其最后一次回访（followed_up）事件的满意度",
                           Counter(_last(t, "followed_up") for t in tickets if t.has("followed_up"))))
    figures.append(_advice(tickets))
    disputed = Counter[str]()
    for t in tickets:
        disputed[t.category] += sum(1 for k, *_ in t.events if k in ("returned", "decided"))
    figures.append(_counts("高频争议事项（按类别）", "disputed",
                           "该类别联动单的退回（returned）与三方决定（decided）事件数之和（会商议题）",
                           Counter({k: v for k, v in disputed.items() if v})))
    figures.append(_hotspots(tickets, ZoneInfo(tz), top))
    figures.append(_bouncing(tickets, full))
    return figures


def _advice(tickets: list[Facts]) -> Figure:
    """智能转办: did the agent send the matter where the scope advisor said?"""
    advised = [t for t in tickets if t.advice_followed is not None]
    followed = [t for t in advised if t.advice_followed]
    rows = Counter(f"采纳：建议 {t.advised or '?'}" if t.advice_followed else
                   f"改派：建议 {t.advised or '?'} → 实际转 {t.target_platform}" for t in advised)
    return Figure("advice", "智能转办：采纳与改派",
                  "采纳建议的联动单（转往建议的平台，或按建议进入三方通话：advice.followed）÷ 带建议创建的联动单；"
                  "改派：建议的平台 → 实际转往的平台", [(k, v) for k, v in rows.most_common()],
                  rate=Rate(len(followed), len(advised)))


def _hotspots(tickets: list[Facts], zone: ZoneInfo, top: int) -> Figure:
    """融合研判: where matters pile up — the busiest (division, category) pairs, week by week."""
    def week(t: Facts) -> str:
        day = datetime.fromtimestamp(t.created, zone).date()
        return (day - timedelta(days=day.weekday())).isoformat()

    pairs = Counter((t.division or "-", t.category or "-") for t in tickets)
    chosen = [pair for pair, _ in sorted(pairs.items(), key=lambda i: (-i[1], i[0]))[:top]]
    weeks = sorted({week(t) for t in tickets})
    cells = Counter((t.division or "-", t.category or "-", week(t)) for t in tickets)
    table: list[list[Value]] = [[d, c, pairs[(d, c)], *(cells[(d, c, w)] for w in weeks)] for d, c in chosen]
    return Figure("hotspots", "融合研判：热点（区划 × 类别，按周）",
                  f"期间创建的联动单件数，按（区划，类别）与周（报告时区的周一至周日）；取件数最多的前 {top} 组，"
                  "多者在前", [(f"{d} · {c}", pairs[(d, c)]) for d, c in chosen],
                  columns=["区划", "类别", "合计", *(f"{w} 当周" for w in weeks)], table=table)


def _first_decided(t: Facts) -> list[tuple[str, str]]:
    return [(r, d) for k, _, r, d in t.events if k == "decided"][:1]


def _last(t: Facts, kind: str) -> str:
    return [r for k, _, r, _ in t.events if k == kind][-1]


def _durations(tickets: list[Facts]) -> Figure:
    sign, close = [], []
    for t in tickets:
        signed, offered = t.first("signed_for"), t.first("offered") or t.first("delivered")
        if signed is not None and offered is not None:
            sign.append(signed - offered)
        done = t.first("closed")
        if done is not None:
            close.append(done - t.created)
    rows: list[tuple[str, Value]] = []
    for name, values in (("签收用时（秒）", sign), ("办结用时（秒）", close)):
        for p in (50, 90):
            v = percentile(values, p)
            label = f"{name}，{'中位数' if p == 50 else 'p90'}（共 {len(values)} 件）"
            rows.append((label, "–" if v is None else round(v, 1)))
    return Figure("durations", "签收用时与办结用时",
                  "签收用时：签收（signed_for）时间 − 首次振铃（offered）时间（网络渠道转办取送达 delivered 时间）；"
                  "办结用时：办结归档（closed）时间 − 创建时间；中位数 = p50；"
                  "pN = n 个值升序排列后第 ⌈N/100 × n⌉ 位的值",
                  rows, chart=False)


def _overdue(delivered: list[Facts]) -> Figure:
    by_unit: dict[str, list[int]] = {}
    for t in delivered:
        counts = by_unit.setdefault(t.target, [0, 0])
        counts[1] += 1
        counts[0] += int(t.has("overdue"))
    rows: list[tuple[str, Value]] = [
        (unit, f"{n} / {d} = {100 * n / d:.1f}%") for unit, (n, d) in sorted(by_unit.items(), key=lambda i: -i[1][0])]
    return Figure("overdue", "超时（按承办单位，联而不动）",
                  "有超时（overdue）事件的联动单 ÷ 已送达的联动单，按接收站点", rows, chart=False)


def _bouncing(tickets: list[Facts], full: bool) -> Figure:
    """Chains of one matter (`parent`), and tickets returned: the matters that bounce between the platforms."""
    by_id = {t.id: t for t in tickets}
    chains: dict[str, list[Facts]] = {}
    for t in tickets:
        root, seen = t, {t.id}
        while root.parent in by_id and root.parent not in seen:
            root = by_id[root.parent]
            seen.add(root.id)
        chains.setdefault(root.id, []).append(t)
    rows: list[tuple[str, Value]] = []
    for root_id, chain in chains.items():
        returns = sum(1 for t in chain for k, *_ in t.events if k == "returned")
        if len(chain) < 2 and not returns:
            continue
        chain.sort(key=lambda t: t.created)
        caller = chain[0].caller if full else mask_phone(chain[0].caller)
        route = " → ".join(t.direction for t in chain)
        reasons = "; ".join(t.return_reason for t in chain if t.return_reason)
        rows.append((f"{root_id} [{chain[0].category or '-'} {chain[0].division or '-'}] {caller}",
                     f"联动单 {len(chain)} 件，退回 {returns} 次：{route}" + (f" — {reasons}" if reasons else "")))
    rows.sort(key=lambda r: str(r[1]), reverse=True)
    return Figure("bouncing", "反复流转的事项",
                  "以上级单（parent）相连、含 ≥ 2 件联动单或 ≥ 1 次退回的事项链；"
                  "来电号码隐去（督办人员的完整报告除外）",
                  rows, chart=False)
