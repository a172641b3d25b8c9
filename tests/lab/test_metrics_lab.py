"""After a real one-key transfer, each controller's /metrics shows the latency histograms of the work it did:
the FastAGI handling of onekey (sender) and route_in (receiver), the AMI event lag on both, and at the receiver
the push delivery lag (created -> delivered) and the screen pop."""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

from linkage_lab.harness.runner import run_scenario
from linkage_lab.harness.scenario import load
from telephony.metrics import scraped_sample

SCENARIOS = Path(__file__).parents[1] / "scenarios"


def scrape(site: dict[str, Any]) -> str:
    with urllib.request.urlopen(f"{site['http']}/metrics", timeout=5) as resp:
        return str(resp.read().decode())


def test_the_histograms_count_a_transfer(desc: dict[str, Any]) -> None:
    sender, receiver = desc["sites"]["12345"], desc["sites"]["110"]
    before = {name: scrape(site) for name, site in (("12345", sender), ("110", receiver))}
    result = run_scenario(load(SCENARIOS / "onekey_happy.yaml"), desc)
    assert result.ok, result.report()
    after = {"12345": scrape(sender), "110": scrape(receiver)}
    grew = {}
    for site, name, labels in (
            ("12345", "linkage_agi_handling_seconds", {"script": "onekey"}),
            ("12345", "linkage_ami_event_lag_seconds", {}),
            ("110", "linkage_agi_handling_seconds", {"script": "route_in"}),
            ("110", "linkage_ami_event_lag_seconds", {}),
            ("110", "linkage_push_delivery_lag_seconds", {}),
            ("110", "linkage_screen_pop_seconds", {})):
        count = scraped_sample(after[site], f"{name}_count", **labels)
        grew[(site, name)] = count - scraped_sample(before[site], f"{name}_count", **labels)
        total = scraped_sample(after[site], f"{name}_sum", **labels)
        assert total >= 0 and scraped_sample(after[site], f"{name}_bucket", **labels, le="+Inf") == count
    assert all(n >= 1 for n in grew.values()), grew
    assert scraped_sample(after["12345"], "linkage_tickets_created_total", target="110") >= 1
