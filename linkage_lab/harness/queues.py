"""What scenarios need of the queue (排队): agents' queue states set before the calls (`setup: [{site, queue:
{agent, action, reason?}}]`), the console's queue buttons during them (`actions: [{at, site, queue: …}]`), every
agent of the lab back in the queue and unpaused afterwards whatever happened, and the states a site must show
once the calls are over (`expect.queue: {SITE: {AGENT: {logged_in, paused, reason}}}`)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from linkage_lab.harness.http import SiteHttp
from linkage_lab.harness.report import Result
from linkage_lab.harness.scenario import Action, Scenario


async def queue_step(http: SiteHttp, desc: dict[str, Any], site_name: str, step: dict[str, str],
                     result: Result, what: str) -> None:
    site = desc["sites"][site_name]
    body = {"action": step["action"], **({"reason": step["reason"]} if "reason" in step else {})}
    status, reply = await http.call(f"{site['http']}/v1/queue/members/{step['agent']}", site["token"], "POST", body)
    result.timeline.append((time.time(), site_name, f"{what}: queue {step['agent']} {step['action']} -> HTTP {status}"))
    if status != 200:
        result.failures.append(f"{what} on {site_name}: queue {step['action']} of {step['agent']} got HTTP "
                               f"{status} {reply}")


async def queue_before(http: SiteHttp, scenario: Scenario, desc: dict[str, Any], result: Result) -> None:
    for step in scenario.queue_setup:
        await queue_step(http, desc, step.site, step.queue, result, "setup")


async def queue_action(http: SiteHttp, action: Action, desc: dict[str, Any], result: Result) -> None:
    await asyncio.sleep(action.at or 0.0)
    assert action.queue is not None
    await queue_step(http, desc, action.site, action.queue, result, "console")


def touches_queue(scenario: Scenario) -> bool:
    return bool(scenario.queue_setup or any(a.queue for a in scenario.actions)
                or any(r.dial for r in scenario.roles))


async def queue_after(http: SiteHttp, scenario: Scenario, desc: dict[str, Any]) -> None:
    """Every agent of every site back in the queue, unpaused: the next scenario starts as the lab does."""
    if not touches_queue(scenario):
        return
    for site in desc["sites"].values():
        for agent in site["accounts"]["agents"]:
            for action in ("login", "unpause"):
                try:
                    await http.call(f"{site['http']}/v1/queue/members/{agent['id']}", site["token"], "POST",
                                    {"action": action})
                except OSError:
                    pass  # a controller a drill stopped: its next start puts every agent in again


async def check_queue(http: SiteHttp, scenario: Scenario, desc: dict[str, Any], settle: float) -> list[str]:
    deadline = time.time() + settle
    while True:
        failures = []
        for site_name, agents in scenario.queue.items():
            site = desc["sites"][site_name]
            data = await http.get(f"{site['http']}/v1/queue", site["token"])
            members = {m["agent"]: m for m in data.get("members", [])}
            for agent, fields in agents.items():
                got = members.get(agent, {})
                wrong = {k: got.get(k) for k, v in fields.items() if got.get(k) != v}
                if wrong:
                    failures.append(f"site {site_name}: agent {agent} in the queue shows {wrong}, expected "
                                    f"{ {k: fields[k] for k in wrong} }")
        if not failures or time.time() > deadline:
            return failures
        await asyncio.sleep(0.2)
