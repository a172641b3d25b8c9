"""`make run`: bring the lab up, place one demo call through the one-key transfer, print a short summary
(the timeline and the ticket as the 110 side holds it), then keep the lab serving until Ctrl-C.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, TextIO

from linkage_lab.harness.runner import run_scenario
from linkage_lab.harness.scenario import load
from linkage_lab.lab.lab import Lab

DEMO = Path(__file__).resolve().parents[2] / "tests" / "scenarios" / "onekey_happy.yaml"
VIEWER_WAIT = 120.0  # seconds `make run` in a terminal waits for Enter before its demo call
SHOWN = ("id", "direction", "status", "caller_number", "agent_id", "offered_to", "signed_for_by", "created_at",
         "division", "category", "content", "address")


def _ticket(site: dict[str, Any], ticket_id: str) -> dict[str, Any]:
    req = urllib.request.Request(f"{site['http']}/v1/tickets/{ticket_id}",
                                 headers={"Authorization": f"Bearer {site['token']}"})
    with urllib.request.urlopen(req, timeout=3) as resp:
        data: dict[str, Any] = json.loads(resp.read())
        return data


def console_help(desc: dict[str, Any]) -> str:
    """Where each site's console is and how to sign in (tokens are not printed: they come from describe)."""
    lines = ["consoles (open one per site, sign in, then watch the demo call pop up at 110):"]
    for name, site in desc["sites"].items():
        agents = ", ".join(a["id"] for a in site["accounts"]["agents"])
        lines.append(f"  {name:11} {site['http']}/console  agents {agents}")
    lines.append("  sign in with an agent's token (`linkage lab describe`: sites.<site>.accounts.agents[].token)"
                 " or, as the supervisor, with the site's token (sites.<site>.token)")
    return "\n".join(lines)


def wait_for_viewer(stream: TextIO, timeout: float) -> str:
    """In a terminal, the demo call waits until the user has opened a console and signed in (Enter), at most
    `timeout` seconds: placed at once, it popped up before anyone could be watching. Anything else (a pipe, CI,
    no stdin) does not wait. Says why it went on: "enter", "timeout" or "not a terminal"."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return "not a terminal"
    if not os.isatty(fd):
        return "not a terminal"
    print(f"open a console above and sign in, then press Enter for the demo call (it goes in {timeout:.0f} s anyway)",
          flush=True)
    ready, _, _ = select.select([fd], [], [], timeout)
    if not ready:
        return "timeout"
    os.read(fd, 4096)  # the line typed
    return "enter"


def demo(serve: bool = True, skip: bool = False) -> int:
    lab = Lab()
    t0 = time.monotonic()
    desc = lab.up(log=lambda m: print(m, file=sys.stderr))
    print(f"lab ready in {time.monotonic() - t0:.1f}s; `linkage lab describe` prints its endpoints")
    print(console_help(desc))
    rc = 0
    if not skip:
        # only when the lab goes on serving: with --exit-after it goes down right after the call
        if serve and wait_for_viewer(sys.stdin, VIEWER_WAIT) == "enter":
            print("placing the demo call")
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
