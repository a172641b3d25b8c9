"""What scenarios need of flagged and repeat callers (恶意骚扰): numbers flagged before the calls
(`setup: [{site, flag: {number, reason}}]`), lifted again afterwards whatever happened so the next scenario
starts unflagged, and the numbers a site must be suggesting once the calls are over
(`expect.suggestions: {SITE: [NUMBER, …]}`, the scenario's own callers that must be, and no others of them)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from linkage_lab.harness.http import SiteHttp
from linkage_lab.harness.report import Result
from linkage_lab.harness.scenario import Scenario

PBX_WAIT = 5.0  # seconds for a controller just restarted with controller_env to reach its PBX over AMI


async def flag_before(http: SiteHttp, scenario: Scenario, desc: dict[str, Any], result: Result) -> None:
    for step in scenario.setup:
        site = desc["sites"][step.site]
        deadline = time.time() + PBX_WAIT
        while True:  # `pbx: pending` until the controller's AMI login handed the PBX its flags
            status, reply = await http.call(f"{site['http']}/v1/callers/flags", site["token"], "POST", step.flag)
            if (status in (200, 201) and reply.get("pbx") == "synced") or time.time() > deadline:
                break
            await asyncio.sleep(0.2)
        result.timeline.append((time.time(), step.site, f"setup: flag -> HTTP {status} (pbx {reply.get('pbx')})"))
        if status not in (200, 201) or reply.get("pbx") != "synced":
            result.failures.append(f"setup on {step.site}: flag got HTTP {status} {reply}")


async def unflag_after(http: SiteHttp, scenario: Scenario, desc: dict[str, Any]) -> None:
    for step in scenario.setup:
        site = desc["sites"][step.site]
        try:
            await http.call(f"{site['http']}/v1/callers/unflag", site["token"], "POST",
                            {"number": step.flag["number"], "reason": "scenario over"})
        except OSError:
            pass  # a controller a drill stopped: the lab's next `up` starts with empty stores anyway


async def check_suggestions(http: SiteHttp, scenario: Scenario, desc: dict[str, Any]) -> list[str]:
    """Among the numbers this scenario's citizens call from, exactly the expected ones are suggested (other
    scenarios' callers may be suggested too: the counts outlive a scenario)."""
    ours = {r.params["caller"] for r in scenario.roles if "caller" in r.params}
    failures = []
    for site_name, numbers in scenario.suggestions.items():
        site = desc["sites"][site_name]
        try:
            data = await http.get(f"{site['http']}/v1/callers/suggestions", site["token"])
        except (OSError, ValueError) as exc:
            failures.append(f"site {site_name}: suggestions unreadable: {exc}")
            continue
        got = sorted(s["number"] for s in data.get("items", []) if s["number"] in ours)
        if got != sorted(numbers):
            failures.append(f"site {site_name}: suggested {got}, expected {sorted(numbers)}")
    return failures
