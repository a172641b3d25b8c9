"""A scenario's expectations checked against what happened: AMI header matches, media windows, tickets."""

from __future__ import annotations

import time
from datetime import datetime

from linkage_lab.harness.ami import AmiWatcher
from linkage_lab.harness.media import RtpSniffer, check_window
from linkage_lab.harness.report import Result
from linkage_lab.harness.scenario import Scenario


def matches(event: dict[str, str], match: dict[str, str]) -> bool:
    """Exact header matches; a value ending in `*` matches by prefix."""
    return all(event.get(k, "").startswith(v[:-1]) if v.endswith("*") else event.get(k) == v
               for k, v in match.items())


def check_ami(scenario: Scenario, watchers: dict[str, AmiWatcher]) -> list[str]:
    failures = []
    for exp in scenario.ami:
        if exp.site not in watchers:
            failures.append(f"site {exp.site}: no AMI to watch (its PBX is down in this scenario)")
            continue
        got = sum(1 for _, e in watchers[exp.site].events if matches(e, exp.match))
        if got != exp.count:
            failures.append(f"site {exp.site}: AMI {exp.match} seen {got} time(s), expected {exp.count}")
    return failures


def check_media(scenario: Scenario, watchers: dict[str, AmiWatcher], sniffers: dict[str, RtpSniffer]) -> list[str]:
    failures = []
    for exp in scenario.media:
        if exp.site not in watchers:
            failures.append(f"media {exp.role}: site {exp.site} has no AMI to watch")
            continue
        events = watchers[exp.site].events
        start = next((at for at, e in events if matches(e, exp.start)), None)
        end = next((at for at, e in events if start is not None and at > start and matches(e, exp.end)), None)
        if start is None or end is None:
            failures.append(f"media {exp.role}: window {exp.start} .. {exp.end} not found in AMI events")
            continue
        for problem in check_window(sniffers[exp.role].packets, start, end, exp.max_gap_ms, exp.min_audible_ms):
            failures.append(f"media {exp.role}: {problem}")
    return failures


def check_tickets(scenario: Scenario, result: Result) -> list[str]:
    failures = []
    for exp in scenario.tickets:
        items = sorted(result.tickets.get(exp.site, []), key=lambda t: (t["created_at"], t["id"]))
        if len(items) != exp.count:
            if exp.index in (None, 0):
                failures.append(f"site {exp.site}: expected {exp.count} ticket(s), found {len(items)}")
            continue
        ids = {f"@{i}": t["id"] for i, t in enumerate(items)}  # a field value "@N": the id of ticket N here
        for t in items if exp.index is None else [items[exp.index]]:
            if exp.status and t["status"] != exp.status:
                failures.append(f"site {exp.site}: ticket {t['id']} is {t['status']}, expected {exp.status}")
            types = [e["type"] for e in t["history"]]
            if exp.history is not None and types != exp.history:
                failures.append(f"site {exp.site}: history {types}, expected {exp.history}")
            if exp.history_contains is not None and sorted(types) != sorted(exp.history_contains):
                failures.append(f"site {exp.site}: history {types}, expected these in any order: "
                                f"{exp.history_contains}")
            for k, v in exp.fields.items():
                v = ids.get(v, v) if isinstance(v, str) else v
                if t.get(k) != v:
                    failures.append(f"site {exp.site}: field {k} is {t.get(k)!r}, expected {v!r}")
            for etype, want in exp.payload.items():
                got = [e["payload"] for e in t["history"] if e["type"] == etype]
                if not got or any(got[-1].get(k) != v for k, v in want.items()):
                    failures.append(f"site {exp.site}: {etype} payload {got[-1] if got else None}, expected {want}")
    return failures


def iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 1000):03d}Z"


def epoch(iso_time: str) -> float:
    return datetime.fromisoformat(iso_time.replace("Z", "+00:00")).timestamp()
