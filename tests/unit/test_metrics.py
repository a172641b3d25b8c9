"""Prometheus text exposition without a client library."""

from __future__ import annotations

import pytest

from telephony.metrics import HELP, Metrics


def series(text: str) -> dict[str, str]:
    """Sample lines as {name{labels}: value}."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = value
    return out


def test_every_known_counter_is_exposed_at_zero_before_anything_happens() -> None:
    text = Metrics().render()
    assert text.endswith("\n")
    assert series(text) == {name: "0" for name in HELP}
    for name, help_text in HELP.items():
        assert f"# HELP {name} {help_text}\n# TYPE {name} counter\n{name} 0\n" in text


def test_counters_by_label_are_sorted_and_summed() -> None:
    m = Metrics()
    m.inc("linkage_ticket_events_total", type="signed_for", origin="remote")
    m.inc("linkage_ticket_events_total", type="offered", origin="local")
    m.inc("linkage_ticket_events_total", type="signed_for", origin="remote")
    m.inc("linkage_delivery_sent_total", 2.5)
    text = m.render()
    lines = text.splitlines()
    start = lines.index("# TYPE linkage_ticket_events_total counter")
    assert lines[start + 1:start + 3] == ['linkage_ticket_events_total{origin="local",type="offered"} 1',
                                          'linkage_ticket_events_total{origin="remote",type="signed_for"} 2']
    assert "linkage_ticket_events_total 0" not in lines  # the zero line is only for a counter never touched
    assert series(text)["linkage_delivery_sent_total"] == "2.5"


def test_a_counter_without_help_text_is_still_exposed() -> None:
    m = Metrics()
    m.inc("linkage_custom_total", kind="x")
    assert "# HELP linkage_custom_total linkage_custom_total\n# TYPE linkage_custom_total counter\n" \
           'linkage_custom_total{kind="x"} 1\n' in m.render()


@pytest.mark.parametrize("value, escaped", [('say "hi"', 'say \\"hi\\"'), ("a\\b", "a\\\\b"), ("a\nb", "a\\nb"),
                                            ('\\"\n', '\\\\\\"\\n')])
def test_label_values_are_escaped(value: str, escaped: str) -> None:
    m = Metrics()
    m.inc("linkage_http_refused_total", status=value)
    text = m.render()
    assert f'linkage_http_refused_total{{status="{escaped}"}} 1\n' in text
    assert len(text.splitlines()) == len(Metrics().render().splitlines())  # no line was split


def test_gauges_follow_the_counters() -> None:
    m = Metrics()
    m.set("linkage_open_tickets", 3)
    m.set("linkage_open_tickets", 4)
    m.set("linkage_delivery_backlog", 0.5)
    text = m.render()
    assert text.endswith("# TYPE linkage_delivery_backlog gauge\nlinkage_delivery_backlog 0.5\n"
                         "# TYPE linkage_open_tickets gauge\nlinkage_open_tickets 4\n")


def test_large_counters_keep_every_digit() -> None:
    m = Metrics()
    m.inc("linkage_agi_requests_total", 1234567, script="onekey")
    assert float(series(m.render())['linkage_agi_requests_total{script="onekey"}']) == 1234567
