"""Scope advice in the browser console (headless Chromium) against the real lab: typing the content into the
12345 agent's form shows the advice live — the platform, the annex line, the deciding words — and changes as
the text changes; hostile text stays text; and a real one-key transfer (the phone's *8, SIPp) of a call whose
content the agent typed carries `advice` on its ticket at both sites."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from playwright.sync_api import Browser
from test_console import HOSTILE, ROOT, WAIT, browser, open_console, shot

from linkage_lab.harness.runner import run_scenario
from linkage_lab.harness.scenario import load
from linkage_lab.lab.lab import Lab

pytestmark = pytest.mark.lab
__all__ = ["browser"]  # the fixture, from test_console

DANGER = "来电人称听到邻居家有人呼救并有打斗声，请求警方处置。"


def test_typing_the_content_shows_the_advice_live(desc: dict[str, Any], browser: Browser) -> None:
    page = open_console(browser, desc, "12345", "1001")
    assert page.is_hidden("#advice")
    page.fill("#f-content", "新房子想办燃气开户，要带什么材料")
    page.wait_for_selector("#advice[data-platform='12345']", timeout=WAIT)
    assert "本平台受理" in (page.text_content("#advice [data-field=verdict]") or "")
    assert "水电气热网等公共设施报装" in (page.text_content("#advice [data-field=clause]") or "")
    assert "开户" in (page.text_content("#advice [data-field=terms]") or "")
    assert page.locator("#advice [data-field=danger]").count() == 0
    page.fill("#f-content", "家里闻到很浓的煤气味，不敢开灯")  # the near-miss: the advice follows the text
    page.wait_for_selector("#advice[data-platform='110'][data-danger=true]", timeout=WAIT)
    assert "建议一键转110" in (page.text_content("#advice [data-field=verdict]") or "")
    assert "煤气味" in (page.text_content("#advice [data-field=terms]") or "")
    assert "危及人身" in (page.text_content("#advice [data-field=danger]") or "")
    shot(page, "advice-12345")
    page.fill("#f-content", HOSTILE)
    page.wait_for_selector("#advice:not([data-danger=true])", timeout=WAIT)
    assert page.locator("main img").count() == 0 and page.evaluate("window.__pwned") is None
    page.fill("#f-content", "")
    page.wait_for_selector("#advice", state="hidden", timeout=WAIT)
    page.context.close()


def test_a_real_one_key_transfer_records_the_advice_on_its_ticket(desc: dict[str, Any], lab: Lab,
                                                                 browser: Browser) -> None:
    """The agent types the form while talking; the phone's one-key code (SIPp) moves the call."""
    near = open_console(browser, desc, "12345", "1001")
    scenario = load(ROOT / "tests" / "scenarios" / "onekey_happy.yaml")
    roles = [dataclasses.replace(r, params={**r.params, "talk": "6000"}) if r.name == "agent-12345" else
             dataclasses.replace(r, params={**r.params, "hold": "10000"}) if r.account == "citizen" else r
             for r in scenario.roles]
    scenario = dataclasses.replace(scenario, roles=roles, actions=[])  # the browser types the form instead
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(run_scenario, scenario, desc, lab)
        near.wait_for_selector("#call-state[data-state=answered]", timeout=15_000)
        near.select_option("#f-category", "report")
        near.select_option("#f-division", "370800")
        near.fill("#f-address", "济宁市某小区3号楼2单元")
        near.fill("#f-content", DANGER)
        near.wait_for_selector("#advice[data-platform='110'][data-danger=true]", timeout=WAIT)
        near.wait_for_selector("#draft-state[data-saved]", timeout=WAIT)
        result = future.result(timeout=90)
    assert result.ok, result.report()
    sent, received = result.tickets["12345"][0], result.tickets["110"][0]
    assert sent["content"] == DANGER and sent["mode"] == "transfer"
    advice = sent["advice"]
    assert (advice["platform"], advice["danger"], advice["followed"], advice["category"]) == ("110", True, True,
                                                                                              "report")
    assert advice["clause"].startswith("report.110.") and advice["catalogue"] and advice["model"]
    assert received["advice"] == advice  # the peer has the same record
    near.context.close()
