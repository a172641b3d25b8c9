"""恶意骚扰 in the browser against the real lab: an agent flags the caller of a real call from the call card;
the 110 supervisor flags a number from the console and the 110 agent's screen pop of a real transfer from that
number says it is flagged; the 12345 supervisor sees both changes in the audit (who, when, why), lifts the
flag, and sees a number that called five times suggested. Hostile reasons stay text."""

from __future__ import annotations

import dataclasses
import json
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser
from test_console import HOSTILE, WAIT, browser, open_console, run_while, shot  # noqa: F401  (browser: fixture)

from linkage_lab.harness.runner import run_scenario
from linkage_lab.harness.scenario import load
from linkage_lab.lab.lab import Lab

pytestmark = pytest.mark.lab

ROOT = Path(__file__).parents[2]
AGENT_FLAGGED = "13900000024"  # the caller of unflagged_caller_unchanged.yaml
POP_FLAGGED = "13912345678"  # the caller of onekey_happy.yaml
REPEAT = "13900000023"  # the caller of repeat_caller_suggested.yaml


@pytest.fixture
def unflag_after(desc: dict[str, Any]) -> Iterator[None]:
    """The flags this test sets are lifted whatever it reached: later scenarios call from these numbers."""
    yield
    for site, number in (("12345", AGENT_FLAGGED), ("110", POP_FLAGGED)):  # whatever the test reached
        s = desc["sites"][site]
        req = urllib.request.Request(f"{s['http']}/v1/callers/unflag", method="POST",
                                     data=json.dumps({"number": number, "reason": "test over"}).encode(),
                                     headers={"Authorization": f"Bearer {s['token']}",
                                              "Content-Type": "application/json"})
        try:
            urllib.request.urlopen(req, timeout=3).close()
        except OSError:
            pass  # not flagged (404): nothing to lift


def test_flag_from_the_console_the_pop_shows_it_and_the_supervisor_audits_and_lifts_it(
        desc: dict[str, Any], lab: Lab, browser: Browser, unflag_after: None) -> None:  # noqa: F811
    # the agent flags the caller of a real call from the call card
    agent = open_console(browser, desc, "12345", "1001")
    with run_while("unflagged_caller_unchanged.yaml", desc, lab, hold="6000") as future:
        agent.wait_for_selector("#call-state[data-state=answered]", timeout=30_000)
        assert agent.text_content("#call-number") == AGENT_FLAGGED
        assert agent.locator("#call-flag-note").count() == 0
        agent.fill("#flag-reason", HOSTILE)
        agent.click("#flag-caller")
        agent.wait_for_selector("#call-flag-note:has-text('已标记为骚扰来电')", timeout=WAIT)
        assert HOSTILE in (agent.text_content("#call-flag-note") or "")  # as the characters it is
        shot(agent, "caller-flagged-by-agent")
        result = future.result(timeout=90)
    assert result.ok, result.report()
    agent.wait_for_selector("#call-state[data-state=idle]", timeout=WAIT)
    assert agent.locator("#call-flag-note").count() == 0  # the call is over: no caller, no flag shown

    # the 110 supervisor flags a number; the 110 agent's screen pop of a real transfer from it says so
    sup110 = open_console(browser, desc, "110", "")
    sup110.wait_for_selector("#flag-form", timeout=WAIT)
    sup110.fill("#flag-number", "139-not-a-number")
    sup110.fill("#flag-number-reason", "x")
    sup110.click("#flag-submit")
    sup110.wait_for_selector("#caller-error:has-text('number')", timeout=WAIT)  # the server's 400, nothing stored
    assert sup110.locator(f"#caller-flags tr[data-number='{POP_FLAGGED}']").count() == 0
    sup110.fill("#flag-number", POP_FLAGGED)
    sup110.fill("#flag-number-reason", "曾多次谎报警情")
    sup110.click("#flag-submit")
    sup110.wait_for_selector(f"#caller-flags tr[data-number='{POP_FLAGGED}']", timeout=WAIT)
    far = open_console(browser, desc, "110", "2001")
    with run_while("onekey_happy.yaml", desc, lab) as future:
        far.wait_for_selector("#pop:not([hidden]) #pop-flag:has-text('曾多次谎报警情')", timeout=30_000)
        shot(far, "screen-pop-flagged-110")
        result = future.result(timeout=90)
    assert result.ok, result.report()  # flagged or not, the transferred caller reached the 110 agent
    assert "班长" in (far.text_content("#pop-flag") or "")

    # the 12345 supervisor: the agent's flag in the audit (who, when, why), then lifted with a reason
    sup = open_console(browser, desc, "12345", "")
    row = f"#caller-audit tr[data-action=flag][data-number='{AGENT_FLAGGED}']"
    sup.wait_for_selector(row, timeout=WAIT)
    assert sup.text_content(f"{row} td.by") == "坐席 1001"
    assert sup.text_content(f"{row} td.reason") == HOSTILE
    sup.click(f"#caller-flags tr[data-number='{AGENT_FLAGGED}'] button.unflag")
    sup.fill(f"#caller-flags tr[data-number='{AGENT_FLAGGED}'] input.unflag-reason", "核实为误标")
    sup.click(f"#caller-flags tr[data-number='{AGENT_FLAGGED}'] button.unflag-confirm")
    lifted = f"#caller-audit tr[data-action=unflag][data-number='{AGENT_FLAGGED}']"
    sup.wait_for_selector(lifted, timeout=WAIT)
    assert sup.text_content(f"{lifted} td.by") == "班长"
    assert sup.locator(f"#caller-flags tr[data-number='{AGENT_FLAGGED}']").count() == 0
    shot(sup, "caller-audit")
    for page in (agent, sup110, far, sup):
        assert page.evaluate("window.__pwned") is None  # the hostile reason ran nothing
        assert page.locator("main img").count() == 0
        page.context.close()


def test_the_supervisor_sees_a_repeat_caller_suggested(desc: dict[str, Any], lab: Lab,
                                                       browser: Browser) -> None:  # noqa: F811
    """Five calls in a row (the lab's default harassment.repeat_calls, within its 10 minutes)."""
    scenario = load(ROOT / "tests" / "scenarios" / "repeat_caller_suggested.yaml")
    roles = [dataclasses.replace(r, params={**r.params, "calls": "5"}) for r in scenario.roles]
    scenario = dataclasses.replace(scenario, controller_env={}, roles=roles, ami=[])
    sup = open_console(browser, desc, "12345", "")
    sup.wait_for_selector("#caller-suggestions", timeout=WAIT)
    with ThreadPoolExecutor(max_workers=1) as pool:
        result = pool.submit(run_scenario, scenario, desc, lab).result(timeout=120)
    assert result.ok, result.report()
    row = f"#caller-suggestions tr[data-number='{REPEAT}']"
    sup.wait_for_selector(row, timeout=WAIT)
    assert "5" in (sup.text_content(f"{row} td:nth-child(2)") or "")
    sup.wait_for_selector(f"#caller-counts tr[data-number='{REPEAT}']", timeout=WAIT)
    assert sup.locator(f"#caller-flags tr[data-number='{REPEAT}']").count() == 0  # suggested, never flagged
    shot(sup, "caller-suggestions")
    sup.context.close()
