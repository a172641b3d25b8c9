"""`make run`: bring the lab up, place one demo call through the one-key transfer, print a short summary
(the timeline and the ticket as the 110 side holds it), then keep the lab serving until Ctrl-C.
"""

from __future__ import annotations

import json
import signal
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from linkage_lab.harness.runner import run_scenario
from linkage_lab.harness.scenario import load
from linkage_lab.lab.lab import Lab

DEMO = Path(__file__).resolve().parents[2] / "tests" / "scenarios" / "onekey_happy.yaml"
SHOWN = ("id", "direction", "status", "caller_number", "agent_id", "offered_to", "signed_for_by", "created_at",
         "division", "category", "content", "address")


def _ticket(site: dict[str, Any], ticket_id: str) -> dict[str, Any]:
    req = urllib.request.Request(f"{site['http']}/v1/tickets/{ticket_id}",
                                 headers={"Authorization": f"Bearer {site['token']}"})
    with urllib.request.urlopen(req, timeout=3) as resp:
        data: dict[str, Any] = json.loads(resp.read())
        return data


def print_consoles(desc: dict[str, Any]) -> None:
    """Where the browser consoles are; the tokens stay in `linkage lab describe`, not in this output."""
    print("browser consoles (sign in with an agent's id and its token from `linkage lab describe`, "
          "sites.<site>.accounts.agents[]; leave the id empty and use sites.<site>.token for the supervisor):")
    for name, site in desc["sites"].items():
        agents = ", ".join(a["id"] for a in site["accounts"]["agents"])
        print(f"  {name:12} {site['http']}/console   agents {agents}")


def demo(serve: bool = True, skip: bool = False) -> int:
    lab = Lab()
    t0 = time.monotonic()
    desc = lab.up(log=lambda m: print(m, file=sys.stderr))
    print(f"lab ready in {time.monotonic() - t0:.1f}s; `linkage lab describe` prints its endpoints")
    print_consoles(desc)
    rc = 0
    if not skip:
        result = run_scenario(load(DEMO), desc)
        print()
        print(result.report())
        items = result.tickets.get("110") or []
        if items:
            ticket = _ticket(desc["sites"]["110"], items[0]["id"])
            print("\nthe ticket as the 110 side holds it:")
            for key in SHOWN:
                print(f"  {key:14} {ticket.get(key)!s}")
            print("  history        " + " -> ".join(
                f"{e['type']}@{e['actor']['site']}" for e in ticket["history"]))
        rc = 0 if result.ok else 1
    if not serve:
        lab.down(log=lambda m: print(m, file=sys.stderr))
        return rc
    print("\nthe lab keeps serving; press Ctrl-C to stop it")
    stop = {"now": False}

    def _stop(*_: Any) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    while not stop["now"]:
        time.sleep(0.5)
    lab.down(log=lambda m: print(m, file=sys.stderr))
    return rc
