"""After a real one-key transfer, each controller's /metrics shows the latency histograms of the work it did:
the prepared press becoming its ticket (sender: a fresh call bridged while the controller listens is reserved,
so its key needs no FastAGI), the AMI event lag on both, at the receiver the push delivery lag (created ->
delivered) and the screen pop, and the route the call took there: the one published at the push, or route_in
over FastAGI when the call was first."""

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
            ("12345", "linkage_press_handling_seconds", {}),
            ("12345", "linkage_ami_event_lag_seconds", {}),
            ("110", "linkage_ami_event_lag_seconds", {}),
            ("110", "linkage_push_delivery_lag_seconds", {}),
            ("110", "linkage_screen_pop_seconds", {})):
        count = scraped_sample(after[site], f"{name}_count", **labels)
        grew[(site, name)] = count - scraped_sample(before[site], f"{name}_count", **labels)
        total = scraped_sample(after[site], f"{name}_sum", **labels)
        assert total >= 0 and scraped_sample(after[site], f"{name}_bucket", **labels, le="+Inf") == count
    assert all(n >= 1 for n in grew.values()), grew
    # the prepared key asked nothing over FastAGI; at 110 the call took the published route or asked route_in
    onekey = {s: scraped_sample(page, "linkage_agi_handling_seconds_count", script="onekey")
              for s, page in (("before", before["12345"]), ("after", after["12345"]))}
    assert onekey["after"] == onekey["before"], onekey
    routed = sum(scraped_sample(after["110"], name, **labels) - scraped_sample(before["110"], name, **labels)
                 for name, labels in (("linkage_published_routes_taken_total", {}),
                                      ("linkage_agi_handling_seconds_count", {"script": "route_in"})))
    assert routed == 1, routed
    assert scraped_sample(after["12345"], "linkage_tickets_created_total", target="110") >= 1
