"""Failure cases that need more than one scenario run: the far controller is down during the transfer."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from test_bad_input import call

from linkage_lab.harness.runner import run_scenario
from linkage_lab.harness.scenario import AmiExpectation, TicketExpectation, load

SCENARIOS = Path(__file__).parents[1] / "scenarios"


def test_far_controller_down_the_call_still_goes_and_the_ticket_waits(desc: dict[str, Any]) -> None:
    """110's controller is down: its PBX's AGI fails, so the call rings all 110 agents and is answered; the
    ticket waits in 12345's outbox and is delivered once the 110 controller is back."""
    scenario = load(SCENARIOS / "onekey_happy.yaml")
    scenario.down = ["controller:110"]
    scenario.actions = []
    scenario.ami = []  # the 110 PBX rings all its agents: checked below
    scenario.tickets = [TicketExpectation("12345", 1, "created", ["created"], {}, {})]
    result = run_scenario(scenario, desc)  # restarts the 110 controller when done
    print(result.report())
    assert result.ok, result.report()
    answered = [e for _, e in result.ami["110"] if e.get("Event") == "DialEnd" and e.get("DialStatus") == "ANSWER"]
    assert len(answered) == 1 and answered[0]["DestChannel"].startswith("PJSIP/agent2001-")
    ticket_id = result.tickets["12345"][0]["id"]
    s12345, s110 = desc["sites"]["12345"], desc["sites"]["110"]
    deadline = time.time() + 40
    while time.time() < deadline:
        status, mine = call("GET", f"{s12345['http']}/v1/tickets/{ticket_id}", s12345["token"])
        if mine["status"] == "delivered":
            break
        time.sleep(0.5)
    assert mine["status"] == "delivered", mine["history"]
    status, theirs = call("GET", f"{s110['http']}/v1/tickets/{ticket_id}", s110["token"])
    assert status == 200 and [e["type"] for e in theirs["history"]] == ["created", "delivered"]
    assert theirs["history"][1]["payload"] == {"via": "push"}


def test_overdue_detection_survives_a_controller_restart(lab: Any, desc: dict[str, Any]) -> None:
    """The 110 controller is restarted while a linked call rings: the reloaded supervisor still raises the
    sign-for alert on time (deadlines are derived from the stored tickets, not kept in memory)."""
    import threading

    env = {"LINKAGE_SUPERVISION__SIGNED_FOR": "3"}
    scenario = load(SCENARIOS / "overdue_alert.yaml")
    scenario.controller_env = {}  # restarted here, so the mid-call restart below cannot overlap another
    scenario.roles[0] = type(scenario.roles[0])(**{**scenario.roles[0].__dict__, "params": {"ring": "6000"}})
    scenario.roles[2] = type(scenario.roles[2])(**{**scenario.roles[2].__dict__,
                                                   "params": {"caller": "13300000017", "hold": "8500"}})
    scenario.tickets = [TicketExpectation("110", 1, None, None, {"flags": ["overdue"]}, {"overdue": {
        "state": "signed_for"}})]
    lab.restart_controller("110", env=env)
    restarter = threading.Timer(2.6, lambda: lab.restart_controller("110", env=env))
    restarter.start()
    try:
        result = run_scenario(scenario, desc, lab)
    finally:
        restarter.join()
        lab.restart_controller("110")
    print(result.report())
    assert result.ok, result.report()
    log = Path(desc["sites"]["110"]["logs"]["controller"]).read_text()
    assert log.count('"event": "controller.started"') >= 2 and '"supervision.overdue"' in log


def test_controller_restarted_mid_call_still_transfers_it(lab: Any, desc: dict[str, Any]) -> None:
    """The 12345 controller is killed and restarted while a citizen talks to an agent. On login it rebuilds its
    calls from Asterisk (CoreShowChannels), so the agent's key press afterwards still transfers the call."""
    import threading

    scenario = load(SCENARIOS / "onekey_happy.yaml")
    scenario.actions = []
    scenario.roles[1] = type(scenario.roles[1])(**{**scenario.roles[1].__dict__, "params": {"talk": "3500"}})
    scenario.roles[2] = type(scenario.roles[2])(**{**scenario.roles[2].__dict__,
                                                   "params": {"caller": "13912300031", "hold": "6500"}})
    scenario.media = []
    scenario.tickets = [TicketExpectation("12345", 1, "signed_for", ["created", "delivered", "offered",
                                                                    "signed_for"], {}, {})]
    restarter = threading.Timer(1.2, lambda: lab.restart_controller("12345"))
    restarter.start()
    try:
        result = run_scenario(scenario, desc, lab)
    finally:
        restarter.join()
    print(result.report())
    assert result.ok, result.report()
    log = Path(desc["sites"]["12345"]["logs"]["controller"]).read_text()
    assert '"ami.resynced"' in log


def test_a_hung_ami_is_detected_and_the_controller_reconnects(lab: Any, desc: dict[str, Any]) -> None:
    """Asterisk stops answering (SIGSTOP, the TCP connection stays open): unanswered pings are noticed, the
    controller drops the connection, reports not ready, and logs in again once Asterisk answers."""
    import os
    import signal
    import urllib.request

    from linkage_lab.lab.processes import alive

    proc = next(p for p in lab._state() if p.name == "asterisk-12345")
    assert alive(proc)
    site = desc["sites"]["12345"]
    log = Path(site["logs"]["controller"])
    size = log.stat().st_size
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        deadline = time.time() + 20  # two unanswered pings (ping_interval 2 s each way), then the drop
        while time.time() < deadline and '"ami.disconnected"' not in log.read_text()[size:]:
            time.sleep(0.2)
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    text = log.read_text()[size:]
    assert '"ami.ping_unanswered"' in text and '"ami.disconnected"' in text
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{site['http']}/v1/health", timeout=2) as resp:
                if json.loads(resp.read())["ami"]:
                    break
        except OSError:
            pass
        time.sleep(0.3)
    assert '"ami.logged_in"' in log.read_text()[size:]
    assert '"ami.resynced"' in log.read_text()[size:]


def test_a_press_after_a_recall_sends_the_new_ticket_id_to_the_far_side(desc: dict[str, Any]) -> None:
    """The first transfer meets a busy 110 phone and the caller is recalled; the agent presses again. The
    caller's channel still carries the first ticket's inheritable SIP headers (removing them crashed Asterisk
    22.10.1), so the second press must *update* them: the far side has to route the second call by the second
    ticket's id, which then, and only then, reaches signed_for at 110."""
    scenario = load(SCENARIOS / "failure_busy_recall.yaml")
    far, agent, citizen = scenario.roles
    scenario.roles = [
        type(far)(**{**far.__dict__, "sipp": SCENARIOS / "sipp" / "agent_busy_then_answer.xml",
                     "params": {"ring": "100", "calls": "2"}}),
        type(agent)(**{**agent.__dict__, "sipp": SCENARIOS / "sipp" / "agent_onekey_recall_again.xml",
                       "dtmf_then": "onekey"}),
        type(citizen)(**{**citizen.__dict__, "params": {"caller": "13912300011", "hold": "6000"}}),
    ]
    scenario.media = []
    scenario.ami = [AmiExpectation("12345", {"Event": "BlindTransfer", "Result": "Success"}, 2),
                    AmiExpectation("12345", {"Event": "DialEnd", "DialStatus": "BUSY",
                                             "DestChannel": "PJSIP/trunk-110-*"}, 1),
                    AmiExpectation("110", {"Event": "DialEnd", "DialStatus": "ANSWER",
                                           "DestChannel": "PJSIP/agent2001-*"}, 1)]
    scenario.tickets = [TicketExpectation("12345", 2, None, None, {}, {})]
    result = run_scenario(scenario, desc)
    print(result.report())
    assert result.ok, result.report()
    first, second = sorted(result.tickets["12345"], key=lambda t: t["created_at"])
    assert first["status"] == "transfer_failed"
    s110 = desc["sites"]["110"]
    deadline = time.time() + 10
    while time.time() < deadline:
        status, theirs = call("GET", f"{s110['http']}/v1/tickets/{second['id']}", s110["token"])
        if status == 200 and theirs["status"] == "signed_for":
            break
        time.sleep(0.3)
    assert theirs["status"] == "signed_for", theirs["history"]
    status, old = call("GET", f"{s110['http']}/v1/tickets/{first['id']}", s110["token"])
    assert "signed_for" not in [e["type"] for e in old["history"]]  # the answered call was not the old ticket's
