"""The figures of one period, tickets and queues together: what `linkage report` prints and the console's
statistics page (统计, GET /v1/stats) shows. Blocking (SQL): async callers run it in a thread."""

from __future__ import annotations

from dataclasses import dataclass

from telephony.reporting import figures, queue_figures
from telephony.reporting.db import connect
from telephony.reporting.figures import Figure


@dataclass
class Period:
    start: float  # epoch seconds, the first day's midnight in `tz`
    end: float  # the midnight after the last day
    tz: str
    site: str | None = None  # the copies (and queue calls) this site holds; None: all sites
    early_release: int = 10  # reporting.early_release_seconds
    full: bool = False  # caller numbers unmasked: the supervisor's own report


def collect(url: str, period: Period) -> tuple[int, list[Figure]]:
    """(tickets in scope, figures), read over one read-only connection."""
    db = connect(url, readonly=True)
    try:
        facts = figures.load(db, period.start, period.end, period.site)
        cells = queue_figures.load(db, period.start, period.end, period.site, period.tz, period.early_release)
    finally:
        db.close()
    return len(facts), [*figures.compute(facts, full=period.full, tz=period.tz),
                        *queue_figures.compute(cells, period.early_release)]
