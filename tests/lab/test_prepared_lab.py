"""Prepared transfers against the real lab: the 12345 controller is stopped while its agent talks (after the call
was bridged, so its ticket is reserved, and after the agent typed the draft) and is still down when the agent
presses the one-key code. The caller reaches the 110 agent anyway (the press is pure dialplan). Once the
controller is back, the ticket exists once, delivered, with the draft's content, and the facts 110 recorded
against the X-Linkage-Id while it had no ticket (offered, signed for) are on it at both sites."""

from __future__ import annotations

import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from test_draft_restart import _http, _until

from linkage_lab.harness.runner import run_scenario
from linkage_lab.harness.scenario import AmiExpectation, load
from linkage_lab.lab.lab import Lab

pytestmark = pytest.mark.lab

ROOT = Path(__file__).parents[2]


def _answered_call(site: dict[str, Any], token: str) -> str | None:
    status, body = _http("GET", f"{site['http']}/v1/calls?agent=1001", token)
    calls = [c for c in body["items"] if c["bridged"]] if status == 200 else []
    return str(calls[0]["linkedid"]) if calls else None


def _ticket_of(site: dict[str, Any], linkedid: str, since: float) -> dict[str, Any] | None:
    status, page = _http("GET", f"{site['http']}/v1/tickets?since={since:.3f}&page_size=100", site["token"])
    mine = [t for t in page["items"] if t["linkedid"] == linkedid] if status == 200 else []
    return mine[0] if len(mine) == 1 else None


def test_a_press_while_the_sending_controller_is_down_still_transfers(desc: dict[str, Any], lab: Lab) -> None:
    s12345, s110 = desc["sites"]["12345"], desc["sites"]["110"]
    token = next(a["token"] for a in s12345["accounts"]["agents"] if a["id"] == "1001")
    scenario = load(ROOT / "tests" / "scenarios" / "onekey_happy.yaml")
    roles = [dataclasses.replace(r, params={**r.params, "talk": "5000"}) if r.name == "agent-12345" else
             dataclasses.replace(r, params={**r.params, "hold": "12000"}) if r.account == "citizen" else r
             for r in scenario.roles]  # the press comes 5 s after the answer: the controller is down by then
    ami = [AmiExpectation("12345", {"Event": "BlindTransfer", "Result": "Success"}, 1),
           AmiExpectation("110", {"Event": "DialEnd", "DialStatus": "ANSWER"}, 1)]
    scenario = dataclasses.replace(scenario, actions=[], roles=roles, budget=45, tickets=[], media=[], ami=ami)
    draft = {"category": "report", "division": "370800", "address": "济宁市某小区5号楼",
             "content": f"按键时控制器已停止 {int(time.time() * 1000)}"}
    begin = time.time()
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(run_scenario, scenario, desc, lab)
        try:
            linkedid = _until("agent 1001's answered call", lambda: _answered_call(s12345, token), 15)
            status, saved = _http("PUT", f"{s12345['http']}/v1/calls/{linkedid}/draft", token, draft)
            assert status == 200, saved
            lab.stop_controller("12345")  # well before the press, 5 s after the answer
            result = future.result(timeout=120)
        finally:
            if not lab.is_up():
                lab.restart_controller("12345")
    assert result.ok, result.report()  # the caller reached the 110 agent with the controller down
    ticket = _until("the 12345 ticket with 110's feedback", lambda: (
        t if (t := _ticket_of(s12345, linkedid, begin - 1)) and t["status"] == "signed_for" else None), 30)
    assert [e["type"] for e in ticket["history"]] == ["created", "delivered", "offered", "signed_for"], ticket
    assert ticket["content"] == draft["content"] and ticket["address"] == draft["address"]
    assert ticket["caller_number"] == "13912345678" and ticket["agent_id"] == "1001"
    far = _until("the 110 copy", lambda: (
        t if (t := _ticket_of_id(s110, ticket["id"])) and t["status"] == "signed_for" else None), 10)
    assert [e["type"] for e in far["history"]] == ["created", "delivered", "offered", "signed_for"], far
    assert far["signed_for_by"] in {a["id"] for a in s110["accounts"]["agents"]}
    assert far["content"] == draft["content"]
    log = Path(s12345["logs"]["controller"]).read_text()
    assert '"press.found_in_resync"' in log


def _ticket_of_id(site: dict[str, Any], ticket_id: str) -> dict[str, Any] | None:
    status, body = _http("GET", f"{site['http']}/v1/tickets/{ticket_id}", site["token"])
    return body if status == 200 and isinstance(body, dict) else None
