"""Duplicate and out-of-order events between real controllers: applied once, in each author's order, and a
transition from the wrong platform is refused (403) without changing the ticket."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from test_bad_input import call, signed

from linkage_lab.harness.runner import run_scenario
from linkage_lab.harness.scenario import load

SCENARIOS = Path(__file__).parents[1] / "scenarios"


def event(ticket: dict[str, Any], etype: str, seq: int, payload: dict[str, Any] | None = None,
          site: str = "110", agent: str = "2001") -> dict[str, Any]:
    return {"id": uuid.uuid4().hex, "ticket_id": ticket["id"], "type": etype,
            "at": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            "actor": {"platform": site.split("-")[0], "site": site, "agent": agent},
            "payload": payload or {}, "seq": seq}


def test_duplicate_and_out_of_order_events(desc: dict[str, Any]) -> None:
    result = run_scenario(load(SCENARIOS / "onekey_happy.yaml"), desc)
    assert result.ok, result.report()
    site = desc["sites"]["12345"]
    ticket = result.tickets["12345"][0]
    url = f"{site['http']}/v1/tickets/{ticket['id']}/events"
    last = ticket["sequences"]["110"]
    accepted = event(ticket, "accepted", last + 1)
    in_progress = event(ticket, "in_progress", last + 2)

    status, body = signed("POST", url, "110", "12345", json.dumps(in_progress).encode())
    assert (status, body["outcome"]) == (202, "queued")
    status, held = call("GET", f"{site['http']}/v1/tickets/{ticket['id']}", site["token"])
    assert held["status"] == "signed_for" and [e["id"] for e in held["pending"]] == [in_progress["id"]]

    status, body = signed("POST", url, "110", "12345", json.dumps(accepted).encode(), message_id="replay-me")
    assert (status, body["outcome"], body["status"]) == (200, "applied", "in_progress")
    status, body = signed("POST", url, "110", "12345", json.dumps(accepted).encode(), message_id="replay-me")
    assert (status, body["error"]) == (409, "replayed")  # the same signed message again: refused

    for dup in (accepted, in_progress, {**accepted, "id": uuid.uuid4().hex}):  # by id, by id, by seq
        status, body = signed("POST", url, "110", "12345", json.dumps(dup).encode())
        assert (status, body["outcome"]) == (200, "duplicate")

    status, after = call("GET", f"{site['http']}/v1/tickets/{ticket['id']}", site["token"])
    types = [e["type"] for e in after["history"]]
    assert types == ["created", "delivered", "offered", "signed_for", "accepted", "in_progress"]
    assert after["pending"] == [] and after["sequences"]["110"] == last + 2

    # a peer that is not a party to the ticket may not post its events, even validly signed
    status, body = signed("POST", url, "110-370811", "12345",
                          json.dumps(event(ticket, "resolved", last + 3, {"result": "x"})).encode())
    assert status == 401  # 12345 has no county peer: its signature cannot even be checked
    # the receiving platform may not close; the sender's own events cannot come back from a peer
    for bad, code in ((event(ticket, "closed", last + 3), 403),
                      (event(ticket, "followed_up", 1, {"satisfaction": "satisfied"}, site="12345",
                             agent="1001"), 409)):
        status, body = signed("POST", url, "110", "12345", json.dumps(bad).encode())
        assert status == code, body
    status, final = call("GET", f"{site['http']}/v1/tickets/{ticket['id']}", site["token"])
    assert final == after
