"""The ACD queue (app_queue) against the real lab: a linked call waits ahead of fresh calls when no agent is
free; surge support sends a burst's new calls to the county seat with surge tickets and stops once the city queue
drains; log-in, log-out and pause from the console's HTTP reach Asterisk (read back with AMI QueueStatus), bad
requests change nothing, and the console's buttons in a real browser do the same."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser
from test_console import WAIT, browser, open_console, shot  # noqa: F401  (browser: fixture)

from linkage_lab.harness.ami import AmiWatcher
from linkage_lab.harness.runner import run_scenario, run_scenario_async
from linkage_lab.harness.scenario import load
from linkage_lab.lab.lab import Lab

pytestmark = pytest.mark.lab

SCENARIOS = Path(__file__).parents[1] / "scenarios" / "queue"


def _call(site: dict[str, Any], method: str, path: str, body: Any = None, token: str = "") -> tuple[int, Any]:
    req = urllib.request.Request(f"{site['http']}{path}", method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {token or site['token']}",
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def _pbx_members(site: dict[str, Any], queue: str) -> dict[str, dict[str, str]]:
    """What Asterisk itself says of the queue's members (AMI QueueStatus, the tester's account)."""
    async def read() -> list[dict[str, str]]:
        watcher = AmiWatcher("pbx", site["ami"])
        await watcher.start()
        try:
            reply = await watcher.manager.send_action({"Action": "QueueStatus", "Queue": queue}, as_list=True)
        finally:
            watcher.close()
        return [{str(k): str(v) for k, v in m.items()} for m in reply]
    with ThreadPoolExecutor(1) as pool:  # its own thread: Playwright's sync API runs a loop in this one
        replies = pool.submit(asyncio.run, read()).result(timeout=15)
    return {m.get("Name", ""): {k: m.get(k, "") for k in ("Location", "Paused", "PausedReason")}
            for m in replies if m.get("Event") == "QueueMember"}


@pytest.fixture
def everyone_back(desc: dict[str, Any]) -> Iterator[None]:
    """Whatever the test reached, every agent is back in the queue and unpaused for the tests after it."""
    yield
    for site in desc["sites"].values():
        for agent in site["accounts"]["agents"]:
            for action in ("login", "unpause"):
                _call(site, "POST", f"/v1/queue/members/{agent['id']}", {"action": action})


def test_a_linked_call_waits_ahead_of_a_fresh_one(desc: dict[str, Any], lab: Lab, everyone_back: None) -> None:
    result = run_scenario(load(SCENARIOS / "linked_ahead_of_fresh.yaml"), desc, lab)
    assert result.ok, result.report()
    events = [e for _, e in result.ami["110"]]
    joins = [e for e in events if e.get("Event") == "QueueCallerJoin"]
    rings = [e for e in events if e.get("Event") == "DialBegin" and e.get("DestChannel", "").startswith("PJSIP/agent")]
    assert [j["Channel"].split("-")[0] for j in joins] == ["PJSIP/citizen", "PJSIP/trunk"]  # the fresh call came first
    assert rings[0]["Channel"].startswith("PJSIP/trunk-12345-")  # … and the linked call rang first
    assert any(r["Channel"].startswith("PJSIP/citizen-") for r in rings)  # the fresh call was answered after it


def test_surge_overflows_a_burst_to_the_county_and_stops_when_the_queue_drains(
        desc: dict[str, Any], lab: Lab, browser: Browser, everyone_back: None) -> None:  # noqa: F811
    burst = load(SCENARIOS / "surge_burst.yaml")
    after = load(SCENARIOS / "city_after_surge.yaml")
    s110 = desc["sites"]["110"]
    lab.restart_controller("110", env=burst.controller_env["110"])  # both runs under the burst's low bounds
    try:
        sup = open_console(browser, desc, "110", "")  # the 110 supervisor watches it happen
        sup.wait_for_selector("#surge-state:has-text('未启动')", timeout=WAIT)
        with ThreadPoolExecutor(1) as pool:
            future = pool.submit(asyncio.run, run_scenario_async(dataclasses.replace(burst, controller_env={}),
                                                                 desc, lab))
            sup.wait_for_selector("#surge-state:has-text('县级支援中')", timeout=30_000)
            shot(sup, "surge-110")
            first = future.result(timeout=120)
        assert first.ok, first.report()
        sup.wait_for_selector("#surge-history li:has-text('停止')", timeout=WAIT)
        status, queue = _call(s110, "GET", "/v1/queue")
        assert status == 200
        history = [(h["active"], h["waiting"]) for h in queue["surge"]["history"]]
        assert history[0] == (True, 2) and history[-1][0] is False and len(history) == 2, history
        assert queue["surge"]["active"] is False
        with ThreadPoolExecutor(1) as pool:  # surge is off: the next call stays here
            second = pool.submit(asyncio.run, run_scenario_async(after, desc, lab)).result(timeout=60)
        assert second.ok, second.report()
    finally:
        lab.restart_controller("110")
    metrics = urllib.request.urlopen(f"{s110['http']}/metrics", timeout=5).read().decode()
    assert "linkage_surge_active 0.0" in metrics


def test_log_in_out_and_pause_reach_asterisk_and_bad_requests_change_nothing(
        desc: dict[str, Any], everyone_back: None) -> None:
    s = desc["sites"]["110"]
    queue = "linkage-110"
    own = s["accounts"]["agents"][1]  # 2002, with its own token
    other = s["accounts"]["agents"][0]
    path = f"/v1/queue/members/{own['id']}"
    assert _call(s, "POST", path, {"action": "pause", "reason": "meeting"}, own["token"])[0] == 200
    member = _pbx_members(s, queue)[own["id"]]
    assert (member["Paused"], member["PausedReason"]) == ("1", "meeting")
    before = _pbx_members(s, queue)
    for body, token, code in (({"action": "dance"}, own["token"], 400),
                              ({"action": "pause", "reason": "<script>x</script>"}, own["token"], 400),
                              ({"action": "unpause", "reason": "meal"}, own["token"], 400),
                              ({"action": "logout", "extra": 1}, own["token"], 400),
                              ({"action": "logout"}, other["token"], 403)):
        status, reply = _call(s, "POST", path, body, token)
        assert status == code and reply["message"], (body, status, reply)
    assert _call(s, "POST", "/v1/queue/members/9999", {"action": "logout"})[0] == 404
    assert _call(s, "POST", "/v1/queue/members/x;Action:Originate", {"action": "logout"})[0] in (400, 404)
    assert _pbx_members(s, queue) == before  # nothing changed in Asterisk
    assert _call(s, "POST", path, {"action": "unpause"}, own["token"])[0] == 200
    assert _call(s, "POST", path, {"action": "logout"}, own["token"])[0] == 200
    assert own["id"] not in _pbx_members(s, queue)
    lab = Lab()
    lab.restart_controller("110")  # a controller start does not put back an agent who logged out on purpose
    status, view = _call(s, "GET", "/v1/queue")
    assert status == 200 and view["known"]
    assert next(m for m in view["members"] if m["agent"] == own["id"])["logged_in"] is False
    assert own["id"] not in _pbx_members(s, queue)
    assert _call(s, "POST", path, {"action": "login"}, own["token"])[0] == 200
    assert own["id"] in _pbx_members(s, queue)


def test_the_console_buttons_pause_and_resume_and_the_supervisor_sees_it(
        desc: dict[str, Any], browser: Browser, everyone_back: None) -> None:  # noqa: F811
    s = desc["sites"]["12345"]
    agent = open_console(browser, desc, "12345", "1002")
    agent.wait_for_selector("#queue-state:has-text('已签入')", timeout=WAIT)
    agent.select_option("#queue-reason", "training")
    agent.click("#queue-pause")
    agent.wait_for_selector("#queue-state:has-text('小休中（培训）')", timeout=WAIT)
    member = _pbx_members(s, "linkage-12345")["1002"]
    assert (member["Paused"], member["PausedReason"]) == ("1", "training")
    sup = open_console(browser, desc, "12345", "")
    sup.wait_for_selector("#queue-panel tr[data-agent='1002'] .queue-member-state:has-text('小休中（培训）')",
                          timeout=WAIT)
    assert "县级支援" in (sup.text_content("#surge-state") or "")
    shot(sup, "queue-supervisor")
    shot(agent, "queue-agent-paused")
    agent.click("#queue-unpause")
    agent.wait_for_selector("#queue-state:has-text('已签入')", timeout=WAIT)
    assert _pbx_members(s, "linkage-12345")["1002"]["Paused"] == "0"
    agent.click("#queue-logout")
    agent.wait_for_selector("#queue-state:has-text('已签出')", timeout=WAIT)
    assert "1002" not in _pbx_members(s, "linkage-12345")
    sup.wait_for_selector("#queue-panel tr[data-agent='1002'] .queue-member-state:has-text('已签出')", timeout=WAIT)
    agent.click("#queue-login")
    agent.wait_for_selector("#queue-state:has-text('已签入')", timeout=WAIT)
    assert "1002" in _pbx_members(s, "linkage-12345")
