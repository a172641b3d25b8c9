"""Calling hours: when a follow-up call may be placed, as pure functions of the time.

`hours` is "HH:MM[:SS]-HH:MM[:SS]" in the site's local time (config followup.hours / followup.timezone); the end
is exclusive and may be 24:00. A window whose end is before its start runs over midnight (20:00-08:00)."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo


def _clock(text: str) -> time:
    if text == "24:00":
        return time(23, 59, 59, 999999)
    parts = [int(p) for p in text.split(":")]
    return time(parts[0], parts[1], parts[2] if len(parts) > 2 else 0)


def window(hours: str) -> tuple[time, time]:
    start, end = hours.split("-")
    return _clock(start), _clock(end)


def is_open(now: float, hours: str, tz: str) -> bool:
    start, end = window(hours)
    local = datetime.fromtimestamp(now, ZoneInfo(tz)).time()
    return start <= local < end if start <= end else local >= start or local < end


def next_open(now: float, hours: str, tz: str) -> float:
    """`now` when the window is open, else the epoch of its next opening."""
    if is_open(now, hours, tz):
        return now
    start, _ = window(hours)
    zone = ZoneInfo(tz)
    local = datetime.fromtimestamp(now, zone)
    opening = datetime.combine(local.date(), start, zone)
    if opening.timestamp() <= now:
        opening = datetime.combine(local.date() + timedelta(days=1), start, zone)
    return opening.timestamp()
