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
    return Figure(key, title, formula, [(k or "(none)", v) for k, v in counter.most_common()])


def compute(tickets: list[Facts], full: bool = False, tz: str = "Asia/Shanghai", top: int = 10) -> list[Figure]:
    delivered = [t for t in tickets if t.has("delivered") or t.has("signed_for")]
    figures = [
        _counts("Volume by direction", "direction", "count of tickets created, by direction",
                Counter(t.direction for t in tickets)),
        _counts("Volume by channel (call / non-call)", "channel",
                "count of tickets created, by channel (call, or a referral's network channel)",
                Counter(t.channel for t in tickets)),
        _counts("Volume by target", "target", "count of tickets created, by receiving site",
                Counter(t.target for t in tickets)),
    ]
    to_sign = [t for t in tickets if t.mode != "referral" and (t.has("signed_for") or t.has("overdue", "signed_for"))]
    on_time = [t for t in to_sign if t.has("signed_for") and not t.has("overdue", "signed_for")]
    figures.append(Figure("signed_on_time", "按时签收率 (signed for within its deadline)",
                          "signed for, without an overdue(signed_for) event ÷ call tickets signed for or overdue "
                          "for signing", rate=Rate(len(on_time), len(to_sign)), chart=False))
    accepted = [t for t in tickets if t.has("accepted")]
    fed_back = [t for t in accepted if t.has("resolved")
                and not (t.has("overdue", "accepted") or t.has("overdue", "resolved"))]
    figures.append(Figure("feedback_on_time", "按时反馈率 (resolved within its deadlines)",
                          "accepted tickets resolved, without an overdue(accepted|resolved) event ÷ accepted tickets",
                          rate=Rate(len(fed_back), len(accepted)), chart=False))
    returned = [t for t in delivered if t.has("returned")]
    figures.append(Figure("returned", "退回率 (returned) and the reasons",
                          "tickets with a returned event ÷ tickets delivered; reasons: the ticket's last return "
                          "reason", [(r, n) for r, n in Counter(t.return_reason for t in returned).most_common()],
                          rate=Rate(len(returned), len(delivered))))
    closed = [t for t in delivered if t.has("closed")]
    figures.append(Figure("closed", "闭环率 (closed / transferred)", "tickets with a closed event ÷ tickets delivered",
                          rate=Rate(len(closed), len(delivered)), chart=False))
    figures.append(_durations(tickets))
    figures.append(_counts("Three-way outcomes by rule", "threeway",
                           "count of three-way tickets by the rule of their first decided event (keeper in brackets)",
                           Counter(f"{r} ({d})" for t in tickets for r, d in _first_decided(t))))
    figures.append(_counts("Transfer failures by reason", "failures", "count of transfer_failed events by reason",
                           Counter(r for t in tickets for k, _, r, _ in t.events if k == "transfer_failed")))
    figures.append(_overdue(delivered))
    figures.append(_counts("Satisfaction from follow-ups (回访)", "satisfaction",
                           "count of tickets by the satisfaction of their last followed_up event",
                           Counter(_last(t, "followed_up") for t in tickets if t.has("followed_up"))))
    figures.append(_advice(tickets))
    disputed = Counter[str]()
    for t in tickets:
        disputed[t.category] += sum(1 for k, *_ in t.events if k in ("returned", "decided"))
    figures.append(_counts("High-frequency disputed matters by category", "disputed",
                           "returned + decided events of the category's tickets (the meeting's agenda)",
                           Counter({k: v for k, v in disputed.items() if v})))
    figures.append(_hotspots(tickets, ZoneInfo(tz), top))
    figures.append(_bouncing(tickets, full))
    return figures


def _advice(tickets: list[Facts]) -> Figure:
    """智能转办: did the agent send the matter where the scope advisor said?"""
    advised = [t for t in tickets if t.advice_followed is not None]
    followed = [t for t in advised if t.advice_followed]
    rows = Counter(f"followed: advised {t.advised or '?'}" if t.advice_followed else
                   f"overridden: advised {t.advised or '?'} → sent to {t.target_platform}" for t in advised)
    return Figure("advice", "智能转办 advice followed vs overridden",
                  "tickets whose advice was followed (sent to the advised platform, or into the three-way call it "
                  "suggested: advice.followed) ÷ tickets created with advice; overridden: advised platform → the "
                  "platform it was sent to", [(k, v) for k, v in rows.most_common()],
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
    return Figure("hotspots", f"融合研判 hotspots: the top {top} division × category, by week",
                  f"count of tickets created, per (division, category) and per week (Monday to Sunday in the "
                  f"report's time zone); the {top} pairs with the most tickets in the period, most first",
                  [(f"{d} · {c}", pairs[(d, c)]) for d, c in chosen],
                  columns=["division", "category", "total", *(f"week of {w}" for w in weeks)], table=table)


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
    for name, values in (("time to sign for (s)", sign), ("time to close (s)", close)):
        for p in (50, 90):
            v = percentile(values, p)
            label = f"{name}, {'median' if p == 50 else 'p90'} of {len(values)}"
            rows.append((label, "–" if v is None else round(v, 1)))
    return Figure("durations", "Time to sign for and to close",
                  "sign for: signed_for.at − first offered.at (delivered.at for a referral); close: closed.at − "
                  "created_at; median = p50; pN = the value at rank ⌈N/100 × n⌉ of the sorted n values", rows,
                  chart=False)


def _overdue(delivered: list[Facts]) -> Figure:
    by_unit: dict[str, list[int]] = {}
    for t in delivered:
        counts = by_unit.setdefault(t.target, [0, 0])
        counts[1] += 1
        counts[0] += int(t.has("overdue"))
    rows: list[tuple[str, Value]] = [
        (unit, f"{n} / {d} = {100 * n / d:.1f}%") for unit, (n, d) in sorted(by_unit.items(), key=lambda i: -i[1][0])]
    return Figure("overdue", "Overdue by receiving unit (联而不动)",
                  "tickets with an overdue event ÷ tickets delivered, by receiving site", rows, chart=False)


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
                     f"{len(chain)} tickets, {returns} returns: {route}" + (f" — {reasons}" if reasons else "")))
    rows.sort(key=lambda r: str(r[1]), reverse=True)
    return Figure("bouncing", "Matters that bounce (parent chains and returns)",
                  "chains of tickets linked by parent with ≥ 2 tickets or ≥ 1 return; caller numbers masked "
                  "unless the supervisor's full report", rows, chart=False)
