"""Prometheus metrics in text exposition format, without a client library: counters and gauges by labels."""

from __future__ import annotations

from collections import defaultdict

HELP = {
    "linkage_tickets_created_total": "Tickets created here by a transfer key or the console.",
    "linkage_ticket_events_total": "Ticket events recorded or applied here, by type and origin.",
    "linkage_tickets_overdue_total": "Supervision alerts: tickets that stayed in a state past its deadline.",
    "linkage_delivery_sent_total": "Messages delivered to a peer.",
    "linkage_delivery_retries_total": "Failed delivery attempts that will be retried.",
    "linkage_delivery_dead_total": "Messages parked in the dead-letter list.",
    "linkage_delivery_batches_total": "Batches a peer answered (POST /v1/batch), by peer.",
    "linkage_delivery_batched_messages_total": "Messages sent in those batches (divided by batches: the batch size).",
    "linkage_agi_requests_total": "FastAGI requests by script.",
    "linkage_ami_events_total": "AMI events received from this site's PBX.",
    "linkage_http_refused_total": "HTTP requests refused, by status.",
}


class Metrics:
    def __init__(self) -> None:
        self.counters: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(lambda: defaultdict(float))
        self.gauges: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        self.counters[name][tuple(sorted(labels.items()))] += amount

    def set(self, name: str, value: float, **labels: str) -> None:
        self.gauges[name][tuple(sorted(labels.items()))] = value

    def render(self) -> str:
        lines = []
        for name in sorted(set(self.counters) | set(HELP)):
            if not name.endswith("_total"):
                continue
            lines.append(f"# HELP {name} {HELP.get(name, name)}")
            lines.append(f"# TYPE {name} counter")
            series = self.counters.get(name) or {(): 0.0}
            for labels, value in sorted(series.items()):
                lines.append(_sample(name, labels, value))
        for name, series in sorted(self.gauges.items()):
            lines.append(f"# TYPE {name} gauge")
            for labels, value in sorted(series.items()):
                lines.append(_sample(name, labels, value))
        return "\n".join(lines) + "\n"


def _sample(name: str, labels: tuple[tuple[str, str], ...], value: float) -> str:
    label = ",".join(f'{k}="{_esc(v)}"' for k, v in labels)
    return f"{name}{{{label}}} {_num(value)}" if label else f"{name} {_num(value)}"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
