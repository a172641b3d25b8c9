"""The SIP side of the bad-input corpus: what a caller or a forged trunk peer puts in the headers the controller
reads (caller ID from the citizen's INVITE; X-Linkage-Id and Call-Info on a linked call) never reaches a ticket,
a dialplan variable, an AMI header, an HTTP request or a log line as it came, and the call itself still goes.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from test_bad_input import call

from linkage_lab.harness.roles import _udp_bound
from linkage_lab.harness.runner import run_scenario
from linkage_lab.harness.scenario import Role, TicketExpectation, load
from linkage_lab.lab.lab import Lab

SCENARIOS = Path(__file__).parents[1] / "scenarios"
SIPP = SCENARIOS / "sipp"
PWNED = "/tmp/linkage-pwned"  # inside the PBX's root filesystem: created only if a dialplan evaluated our text
SHELL = "${SHELL(touch " + PWNED + ")}"


def _log_lines_are_json(path: str, since: int) -> list[str]:
    """Every line the controller wrote since `since` is one JSON object: nothing split a line or forged one."""
    text = Path(path).read_bytes()[since:].decode("utf-8", errors="replace")
    bad = []
    for line in text.splitlines():
        try:
            json.loads(line)
        except ValueError:
            if line.strip() and line.strip() != "Connection lost":  # panoramisk's own print on a lost link
                bad.append(line[:200])
    return bad


@pytest.mark.parametrize(("display", "caller", "number"), [
    (SHELL + "&a,b|c", "13900000000$(id)&x,y", ""),  # `$[..]` is SIPp's own syntax here; the trunk case has it
    # PJSIP unescapes the user part and Asterisk writes it into its AMI events with the CR/LF in it; the AMI
    # stream then shows "CallerIDNum: 13900000000" and a stray line "Event" with no colon, which is no header:
    # the number is the caller's leading digits and nothing else of the event changed.
    ("Eve\\\" <sip:110@evil>", "13900000000%0D%0AEvent:%20Hangup%0D%0A", "13900000000"),
    ("张三" * 40, "1" * 200, ""),
], ids=["dialplan-functions", "crlf-and-quotes", "oversize"])
def test_hostile_caller_id(lab: Lab, desc: dict[str, Any], display: str, caller: str, number: str) -> None:
    """The transfer works and both tickets carry no caller number unless what came was one; the dialplan
    evaluated nothing; the controllers' logs stay one JSON object per line."""
    rootfs = Path(desc["sites"]["12345"]["dir"]).parents[2]
    logs = {s: desc["sites"][s]["logs"]["controller"] for s in ("12345", "110")}
    sizes = {s: Path(p).stat().st_size for s, p in logs.items()}
    scenario = load(SCENARIOS / "onekey_happy.yaml")
    scenario.actions = []
    scenario.media = []
    citizen = scenario.roles[2]
    scenario.roles[2] = Role(**{**citizen.__dict__, "sipp": SIPP / "citizen_call_hostile.xml",
                                "params": {"caller": caller, "display": display, "hold": "4000"}})
    scenario.tickets = [
        TicketExpectation("12345", 1, "signed_for", ["created", "delivered", "offered", "signed_for"],
                          {"caller_number": number}, {}),
        TicketExpectation("110", 1, "signed_for", ["created", "delivered", "offered", "signed_for"],
                          {"caller_number": number}, {}),
    ]
    result = run_scenario(scenario, desc, lab)
    print(result.report())
    assert result.ok, result.report()
    assert not (rootfs / PWNED.lstrip("/")).exists()
    for site, path in logs.items():
        assert _log_lines_are_json(path, sizes[site]) == [], site
        assert "$(id)" not in Path(path).read_bytes()[sizes[site]:].decode(errors="replace")


class _Listener:
    """A plain TCP listener standing for an attacker's server named in Call-Info: counts connections."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.is_set():
            try:
                conn, _ = self.sock.accept()
                self.connections += 1
                conn.close()
            except OSError:
                continue

    def close(self) -> None:
        self.done.set()
        self.thread.join()
        self.sock.close()


def test_forged_linked_calls_on_the_trunk(lab: Lab, desc: dict[str, Any], tmp_path: Path) -> None:
    """With 12345's PBX stopped, SIPp takes its trunk address and sends 110 linked calls whose X-Linkage-Id and
    Call-Info are hostile. Every call still reaches a 110 agent (as an unlinked call); 110 stores no ticket,
    makes no request to a URL it was not configured with, evaluates nothing, and logs one JSON line per line."""
    s110, s12345 = desc["sites"]["110"], desc["sites"]["12345"]
    rootfs = Path(s110["dir"]).parents[2]
    evil = _Listener()
    cases = [
        (SHELL, f"<http://127.0.0.1:{evil.port}/v1/tickets/1>;purpose=linkage-ticket"),
        ("1;2|3&4,5$[6+7]", f"<{s12345['http']}/v1/tickets/../../metrics>;purpose=linkage-ticket"),
        ("9" * 300, "<javascript:alert(1)>"),
        ("37080020261129000000000000", f"<{s12345['http']}/v1/tickets/37080020261129000000000000>"),
        ("%0D%0AX-Evil: 1", f"<http://evil.invalid/{'a' * 280}>"),
    ]
    inf = tmp_path / "headers.csv"
    inf.write_text("SEQUENTIAL\n" + "".join(f"{a};{b}\n" for a, b in cases))
    (tmp_path / "trunk_forged.xml").write_text((SIPP / "trunk_forged.xml").read_text().replace("{{hold}}", "1500"))
    (tmp_path / "agent_answer.xml").write_text((SIPP / "agent_answer.xml").read_text().replace("{{ring}}", "100"))
    status, before = call("GET", f"{s110['http']}/v1/tickets?page_size=1", s110["token"])
    log = s110["logs"]["controller"]
    size = Path(log).stat().st_size
    agents = [subprocess.Popen(["sipp", "-sf", "agent_answer.xml", "-i", a["host"], "-p", str(a["port"]),
                                "-mp", str(47000 + 10 * i), "-m", "100", "-timeout", "60s", "-nostdin",
                                "-trace_stat", "-stf", f"agent{i}.csv"], cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
              for i, a in enumerate(s110["accounts"]["agents"])]
    lab.stop_asterisk("12345")
    # its SIP socket may outlive the pid a moment (full make test at ff8b8cc: SIPp "Unable to bind main socket,
    # errno = 98"): the forger takes the trunk's address only once it is free
    deadline = time.time() + 15
    while s12345["sip"]["port"] in _udp_bound() and time.time() < deadline:
        time.sleep(0.1)
    try:
        forged = subprocess.run(
            ["sipp", f"{s110['sip']['host']}:{s110['sip']['port']}", "-sf", "trunk_forged.xml", "-inf",
             str(inf), "-s", "110", "-i", "127.0.0.1", "-p", str(s12345["sip"]["port"]), "-mp", "47100",
             "-m", str(len(cases)), "-l", "1", "-timeout", "90s", "-nostdin", "-trace_err"],
            cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    finally:
        for p in agents:
            p.terminate()
            p.wait(timeout=10)
        evil.close()
        lab.start_asterisk("12345")
    assert forged.returncode == 0, forged.stdout[-2000:] + forged.stderr[-2000:]  # every call was answered
    assert evil.connections == 0
    status, after = call("GET", f"{s110['http']}/v1/tickets?page_size=1", s110["token"])
    assert status == 200 and after["total"] == before["total"]
    assert not (rootfs / PWNED.lstrip("/")).exists()
    assert _log_lines_are_json(log, size) == []
    text = Path(log).read_bytes()[size:].decode(errors="replace")
    assert "route_in" in text and "javascript" not in text and "X-Evil" not in text
