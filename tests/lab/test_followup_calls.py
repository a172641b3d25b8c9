"""智能回访 end to end beyond the scenario files: an answer without a key leaves a manual follow-up task that the
12345 agent's console shows and that goes once the agent follows up by hand; outside the calling hours nothing
is dialled until they open (the 12345 controller restarted with a window that opens a few seconds later)."""

from __future__ import annotations

import dataclasses
import json
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser
from test_console import WAIT, browser, open_console, shot  # noqa: F401 (browser is a fixture)

from linkage_lab.harness.runner import run_scenario
from linkage_lab.harness.scenario import load
from linkage_lab.lab.lab import Lab

pytestmark = pytest.mark.lab

ROOT = Path(__file__).parents[2]


def followups(site: dict[str, Any]) -> list[dict[str, Any]]:
    req = urllib.request.Request(f"{site['http']}/v1/followups", headers={"Authorization": f"Bearer {site['token']}"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        items: list[dict[str, Any]] = json.loads(resp.read())["items"]
    return items


def test_an_answer_without_a_key_leaves_a_manual_task_in_the_console(desc: dict[str, Any], lab: Lab,
                                                                      browser: Browser) -> None:  # noqa: F811
    near = open_console(browser, desc, "12345", "1001")
    with ThreadPoolExecutor(max_workers=1) as pool:
        result = pool.submit(run_scenario, load(ROOT / "tests" / "scenarios" / "followup_hangup_no_key.yaml"),
                             desc, lab).result(timeout=120)
    assert result.ok, result.report()
    tid = result.tickets["12345"][0]["id"]
    [job] = [j for j in followups(desc["sites"]["12345"]) if j["ticket_id"] == tid]
    assert (job["state"], job["outcome"], job["attempts"]) == ("manual", "no_key", 1)
    near.click("#inbox button[data-side=sender]")
    row = f"#inbox tr[data-ticket-id='{tid}']"
    near.wait_for_selector(f"{row} [data-followup=manual]:has-text('需人工回访')", timeout=WAIT)
    shot(near, "followup-manual-12345")
    near.click(f"{row} button[data-action=followed_up]")
    near.select_option(f"{row} form.ask select", "basically_satisfied")
    near.click(f"{row} form.ask button[type=submit]")
    near.wait_for_selector(f"{row}[data-status=followed_up]", timeout=WAIT)
    near.wait_for_selector(f"{row}:not(:has([data-followup]))", timeout=WAIT)
    assert [j for j in followups(desc["sites"]["12345"]) if j["ticket_id"] == tid] == []
    near.context.close()


def test_outside_calling_hours_nothing_is_dialled_until_they_open(desc: dict[str, Any], lab: Lab) -> None:
    # the window opens after the resolve (4.5 s into the run, after the restart and the harness's drain)
    opens = (datetime.now(ZoneInfo("Asia/Shanghai")) + timedelta(seconds=22)).replace(microsecond=0)  # as written
    window = f"{opens:%H:%M:%S}-{opens + timedelta(hours=1):%H:%M:%S}"
    scenario = load(ROOT / "tests" / "scenarios" / "followup_answered.yaml")
    scenario = dataclasses.replace(scenario, budget=45, controller_env={})  # the restart above sets both
    lab.restart_controller("12345", {"LINKAGE_FOLLOWUP__HOURS": window, "LINKAGE_FOLLOWUP__DELAY": "1"})
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:  # its own loop: Playwright's runs in this thread
            result = pool.submit(run_scenario, scenario, desc, lab).result(timeout=120)
    finally:
        lab.restart_controller("12345")
    assert result.ok, result.report()
    dialled = [at for at, e in result.ami["12345"] if e.get("Event") == "Newchannel"
               and e.get("Channel", "").startswith("PJSIP/followup-out-")]
    assert len(dialled) == 1, dialled
    assert dialled[0] >= opens.timestamp() - 0.5, f"dialled {opens.timestamp() - dialled[0]:.1f} s before the hours"
    resolved = next(e["at"] for e in result.tickets["12345"][0]["history"] if e["type"] == "resolved")
    assert datetime.fromisoformat(resolved.replace("Z", "+00:00")).timestamp() < opens.timestamp() - 3
    log = Path(desc["sites"]["12345"]["logs"]["controller"]).read_text(encoding="utf-8")
    assert '"followup.waiting_for_hours"' in log
    assert time.time() >= opens.timestamp()
