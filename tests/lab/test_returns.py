"""退回 end to end, through the real PBXes and the real consoles in headless Chromium: the 110 agent returns a
linked call from the console with a reason, the 12345 agent's console shows it and has the caller back; a return
by the key alone holds no trunk channel on either PBX afterwards (counted through AMI) and the 110 console asks
for the reason it left pending."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser
from test_console import HOSTILE, WAIT, browser, open_console, shot  # noqa: F401 (browser is a fixture)

from linkage_lab.harness.ami import channels
from linkage_lab.harness.runner import run_scenario
from linkage_lab.harness.scenario import Scenario, TicketExpectation, load
from linkage_lab.lab.lab import Lab

pytestmark = pytest.mark.lab

ROOT = Path(__file__).parents[2]


def scenario(name: str, hold: str = "", tickets: list[TicketExpectation] | None = None, **fields: Any) -> Scenario:
    """A scenario file without its console actions (the browser does them); `fields` are added to its ticket
    expectations, or `tickets` replace them; `hold` is how long the citizen stays (ms)."""
    s = load(ROOT / "tests" / "scenarios" / name)
    if tickets is None:
        tickets = [dataclasses.replace(t, fields={**t.fields, **fields}) for t in s.tickets]
    roles = [dataclasses.replace(r, params={**r.params, "hold": hold}) if hold and r.account == "citizen" else r
             for r in s.roles]
    return dataclasses.replace(s, actions=[a for a in s.actions if a.draft], tickets=tickets, roles=roles)


def test_a_return_from_the_console_reaches_the_sending_agent(desc: dict[str, Any], lab: Lab,
                                                             browser: Browser) -> None:  # noqa: F811
    far = open_console(browser, desc, "110", "2001")
    near = open_console(browser, desc, "12345", "1001")
    why = f"属12345受理范围（非警务事项）：{HOSTILE}"
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(run_scenario, scenario("return_by_console.yaml", return_reason=why), desc, lab)
        far.wait_for_selector("#return-box:not([hidden])", timeout=15_000)  # a linked call came in: it can go back
        far.select_option("#return-reason", "属12345受理范围（非警务事项）")
        far.fill("#return-text", HOSTILE)
        shot(far, "return-110")
        far.keyboard.press("Alt+0")
        try:
            near.wait_for_selector("#progress-return:has-text('来电已回到您这里')", timeout=WAIT)
        except Exception:
            shot(near, "returned-12345-failed")
            shot(far, "return-110-failed")
            raise AssertionError(f"12345 console: {near.text_content('#progress')!r}; 110 console: "
                                 f"{far.text_content('#progress')!r} {far.text_content('#call')!r}") from None
        assert near.text_content("#progress-return") == f"退回：{why}，来电已回到您这里"
        near.wait_for_selector("#call-state[data-state=answered]", timeout=WAIT)  # the caller is back here
        shot(near, "returned-12345")
        result = future.result(timeout=90)
    assert result.ok, result.report()
    assert near.evaluate("window.__pwned") is None and far.evaluate("window.__pwned") is None
    assert near.locator("main img").count() == 0
    for page in (far, near):
        page.context.close()


def trunks(desc: dict[str, Any]) -> dict[str, list[str]]:
    async def both() -> dict[str, list[str]]:
        out = {}
        for site in ("12345", "110"):
            out[site] = [c["Channel"] for c in await channels(site, desc["sites"][site]["ami"])]
        return out
    with ThreadPoolExecutor(max_workers=1) as pool:  # its own thread: Playwright's loop runs in this one
        return pool.submit(asyncio.run, both()).result(timeout=10)


def test_a_return_by_key_holds_no_trunk_and_the_console_completes_the_reason(desc: dict[str, Any], lab: Lab,
                                                                              browser: Browser) -> None:  # noqa: F811
    far = open_console(browser, desc, "110", "2001")
    near = open_console(browser, desc, "12345", "1001")
    with ThreadPoolExecutor(max_workers=1) as pool:
        completed = "非警务事项：物业纠纷，属12345受理"
        expect = [TicketExpectation(site, 1, "returned", ["created", "delivered", "offered", "signed_for", "returned",
                                                          "returned"], {"return_reason": completed}, {})
                  for site in ("12345", "110")]
        future = pool.submit(run_scenario, scenario("return_by_key.yaml", hold="9000", tickets=expect), desc, lab)
        near.wait_for_selector("#progress-return:has-text('原因待补充')", timeout=30_000)
        # once the caller is back with the 12345 agent, no trunk channel of the call is left on either PBX
        deadline = time.time() + 10
        while True:
            now = trunks(desc)
            back = any(c.startswith("PJSIP/agent1001-") for c in now["12345"])
            if back or time.time() > deadline:
                break
            time.sleep(0.1)
        assert back, now
        assert any(c.startswith("PJSIP/citizen-") for c in now["12345"]), now
        assert [c for cs in now.values() for c in cs if c.startswith("PJSIP/trunk-")] == [], now
        assert now["110"] == [], now
        # the 110 agent completes the reason the key left pending; the 12345 console follows
        tid = near.get_attribute("#progress-steps", "data-ticket-id")
        row = f"#inbox tr[data-ticket-id='{tid}']"
        far.wait_for_selector(f"{row}[data-status=returned] button[data-action=returned-complete]", timeout=WAIT)
        far.click(f"{row} button[data-action=returned-complete]")
        far.fill(f"{row} input[data-need=reason]", completed)
        far.click(f"{row} form.ask button[type=submit]")
        far.wait_for_selector(f"{row}[data-status=returned]:not(:has(button[data-action=returned-complete]))",
                              timeout=WAIT)
        near.wait_for_selector("#progress-return:has-text('物业纠纷')", timeout=WAIT)
        shot(far, "return-reason-110")
        result = future.result(timeout=90)
    assert result.ok, result.report()
    for page in (far, near):
        page.context.close()
