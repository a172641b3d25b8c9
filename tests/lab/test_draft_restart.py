"""A draft typed during a real call survives a SIGKILL and restart of the 12345 controller: the same draft is
read back, and the transfer pressed after the restart carries it into the 110 ticket."""

from __future__ import annotations

import dataclasses
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from linkage_lab.harness.runner import run_scenario
from linkage_lab.harness.scenario import load
from linkage_lab.lab.lab import Lab

pytestmark = pytest.mark.lab

ROOT = Path(__file__).parents[2]
T = TypeVar("T")


def _http(method: str, url: str, token: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def _until(what: str, probe: Callable[[], T | None], timeout: float) -> T:
    """Poll `probe` until it returns something (a condition with a deadline, not a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = probe()
        except OSError:  # the controller is not listening yet
            value = None
        if value is not None:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _answered_call(site: dict[str, Any], token: str) -> str | None:
    status, body = _http("GET", f"{site['http']}/v1/calls?agent=1001", token)
    calls = [c for c in body["items"] if c["bridged"]] if status == 200 else []
    return str(calls[0]["linkedid"]) if calls else None


def test_a_draft_survives_a_controller_restart_and_reaches_the_110_ticket(desc: dict[str, Any], lab: Lab) -> None:
    s = desc["sites"]["12345"]
    token = next(a["token"] for a in s["accounts"]["agents"] if a["id"] == "1001")
    scenario = load(ROOT / "tests" / "scenarios" / "console_transfer_button.yaml")
    roles = [dataclasses.replace(r, params={**r.params, "hold": "20000"}) if r.account == "citizen" else r
             for r in scenario.roles]  # the caller stays on the line across the restart
    scenario = dataclasses.replace(scenario, actions=[], roles=roles, budget=45)
    draft = {"category": "report", "division": "370800", "address": "济宁市某小区7号楼",
             "content": f"重启前填写的联动单 {int(time.time() * 1000)}"}
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(run_scenario, scenario, desc, lab)
        try:
            linkedid = _until("agent 1001's answered call", lambda: _answered_call(s, token), 15)
            status, saved = _http("PUT", f"{s['http']}/v1/calls/{linkedid}/draft", token, draft)
            assert status == 200, saved
            assert saved["draft"] == draft

            lab.restart_controller("12345", kill=True)
            _until("12345's /v1/health", lambda: _http("GET", f"{s['http']}/v1/health", s["token"])[0] == 200
                   or None, 20)
            # the restarted controller learns the call from Asterisk before it can transfer it
            assert _until("the call known again", lambda: _answered_call(s, token), 15) == linkedid
            status, read = _http("GET", f"{s['http']}/v1/calls/{linkedid}/draft", token)
            assert status == 200 and read["draft"] == draft, read

            status, sent = _http("POST", f"{s['http']}/v1/calls/{linkedid}/transfer", token,
                                 {"target": "110", "agent": "1001"})
            assert status == 202, sent
        finally:
            result = future.result(timeout=120)  # the calls end before the next test, whatever failed here
            if not lab.is_up():
                lab.restart_controller("12345")
    assert result.ok, result.report()
    assert result.tickets["12345"][0]["id"] == sent["ticket_id"]
    far = result.tickets["110"][0]
    assert far["content"] == draft["content"] and far["address"] == draft["address"], far
    assert far["category"] == "report" and far["division"] == "370800"
