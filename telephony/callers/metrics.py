"""The callers' metrics. No phone number is ever a label: how often numbers repeat is a histogram of each
caller's calls within the window, observed at every call; which numbers they are is the supervisor's view."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class CallerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.calls = Counter("linkage_hotline_calls_total", "Citizens' calls to this site's hotline (from AMI).",
                             registry=registry)
        self.per_number = Histogram(
            "linkage_hotline_calls_per_number", "At each hotline call, that number's calls within the "
            "harassment.repeat_minutes window (the call included).", registry=registry,
            buckets=(1, 2, 3, 5, 10, 20, 50, 100))
        self.flagged_calls = Counter("linkage_flagged_calls_total", "Hotline calls from a flagged number, by the "
                                     "site's policy.", ["policy"], registry=registry)
        self.flags = Gauge("linkage_caller_flags", "Numbers flagged for harassment now.", registry=registry)
        self.changes = Counter("linkage_caller_flag_changes_total", "Flags set and lifted, by action.", ["action"],
                               registry=registry)
        self.suggestions = Counter("linkage_repeat_caller_suggestions_total", "Times a number reached "
                                   "harassment.repeat_calls within the window and was suggested.", registry=registry)
        self.pbx_failures = Counter("linkage_caller_flag_pbx_failures_total", "Flag writes the PBX did not take "
                                    "(retried at the next AMI login).", registry=registry)
