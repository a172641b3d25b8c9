"""Fault drills: a stream of real one-key transfers (SIPp against the lab's PBXes) while something breaks, then
an account of what the two controllers hold: tickets sent (created at 12345), delivered (12345 holds the
far side's `delivered` and 110 holds the ticket) and duplicated (a second ticket for one call, an event
applied twice, a lifecycle step recorded twice).

The 12345 agent behaves as a person would: presses the key, and presses it again every few seconds while the
call is still with them (a press while the controller is down or restarting leaves the call with the agent).
Each drill prints one line `fault=<name> calls=<n> sent=<n> delivered=<n> duplicated=<n>`.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from linkage_lab.harness.drain import IN_FLIGHT
from linkage_lab.harness.dtmf import write_pcap
from linkage_lab.harness.scenario import fill_sipp

SIPP = Path(__file__).resolve().parents[2] / "tests" / "scenarios" / "sipp"
ONCE = ("created", "delivered", "signed_for")  # lifecycle steps a ticket copy records at most once



class Traffic:
    """`calls` citizen calls to 12345 at `rate` per second, each transferred to 110 with the one-key code."""

    def __init__(self, desc: dict[str, Any], workdir: Path, calls: int, rate: float = 1.0, hold_ms: int = 9000,
                 retry_ms: int = 2000, caller: str = "13900000000", talk_ms: int = 500) -> None:
        self.desc, self.workdir, self.calls, self.rate = desc, workdir, calls, rate
        self.hold_ms, self.retry_ms, self.caller, self.talk_ms = hold_ms, retry_ms, caller, talk_ms
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.begin = 0.0
        self.citizen_exit: int | None = None

    @property
    def duration(self) -> float:
        return self.calls / self.rate + self.hold_ms / 1000

    def start(self, citizens: bool = True) -> Traffic:
        """`citizens=False`: only the agents' SIPp; the drill places each call itself with `call()`."""
        if self.procs:
            return self  # already running (`with traffic.start():` enters a started stream)
        s12345, s110 = self.desc["sites"]["12345"], self.desc["sites"]["110"]
        mine = [*s110["accounts"]["agents"], s12345["accounts"]["agents"][0], s12345["accounts"]["citizen"]]
        IN_FLIGHT.wait_sync((a["host"], int(a["port"])) for a in mine)  # no INVITE of an earlier call still on its way
        wd = self.workdir
        wd.mkdir(parents=True, exist_ok=True)
        for n in range(1, 7):  # one file per press, each later in RTP time than the one before
            write_pcap(s12345["keys"]["onekey"], wd / f"keys{n}.pcap", seq0=1000 + 100 * n, ts0=160000 + 80000 * n)
        limit = ["-timeout", f"{int(self.duration + 120)}s", "-nostdin", "-trace_stat", "-trace_err"]
        for i, far in enumerate(s110["accounts"]["agents"]):
            self.procs[f"far{i}"] = subprocess.Popen(
                ["sipp", "-sf", str(fill_sipp(SIPP / "agent_answer.xml", {"ring": "100"}, wd)),
                 "-i", far["host"], "-p", str(far["port"]), "-mp", str(46000 + 10 * i), "-m", "100000",
                 "-stf", f"far{i}.csv", *limit],
                cwd=wd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        agent = s12345["accounts"]["agents"][0]
        self.procs["agent"] = subprocess.Popen(
            ["sipp", "-sf", str(fill_sipp(SIPP / "agent_onekey_retry.xml",
                                          {"talk": str(self.talk_ms), "retry": str(self.retry_ms)}, wd)),
             "-i", agent["host"], "-p", str(agent["port"]), "-mp", "46100", "-m", "100000", "-stf", "agent.csv",
             *limit], cwd=wd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        self.begin = time.time()
        if citizens:
            self.procs["citizen"] = self._citizens(self.calls, "citizen")
        return self

    def _citizens(self, calls: int, name: str) -> subprocess.Popen[bytes]:
        s12345 = self.desc["sites"]["12345"]
        cit = s12345["accounts"]["citizen"]
        limit = ["-timeout", f"{int(self.duration + 120)}s", "-nostdin", "-trace_stat", "-trace_err"]
        return subprocess.Popen(
            ["sipp", f"{s12345['sip']['host']}:{s12345['sip']['port']}", "-sf",
             str(fill_sipp(SIPP / "citizen_call.xml", {"caller": self.caller, "hold": str(self.hold_ms)},
                           self.workdir)),
             "-s", cit["dial"], "-i", cit["host"], "-p", str(cit["port"]), "-mp", "46200", "-r", str(self.rate),
             "-rp", "1000", "-m", str(calls), "-stf", f"{name}.csv", *limit],
            cwd=self.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def call(self, n: int) -> subprocess.Popen[bytes]:
        """Paced drills (`start(citizens=False)`): place the n-th call now, one SIPp citizen of one call; the
        caller waits for it to end before the next (they share the citizen's SIP port)."""
        proc = self._citizens(1, f"citizen{n}")
        self.procs[f"citizen{n}"] = proc
        return proc

    def wait(self) -> None:
        """Until every citizen call has ended; then the agents' SIPp processes are stopped by pid."""
        try:
            if "citizen" in self.procs:
                self.citizen_exit = self.procs["citizen"].wait(timeout=self.duration + 150)
        finally:
            self.stop()

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def __enter__(self) -> Traffic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class Tally:
    fault: str
    calls: int
    sent: int
    delivered: int
    duplicated: int
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (f"fault={self.fault} calls={self.calls} sent={self.sent} delivered={self.delivered} "
                f"duplicated={self.duplicated}")


def _get(site: dict[str, Any], path: str) -> tuple[int, Any]:
    req = urllib.request.Request(f"{site['http']}{path}", headers={"Authorization": f"Bearer {site['token']}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, None


def tickets_since(site: dict[str, Any], since: float) -> list[dict[str, Any]]:
    status, page = _get(site, f"/v1/tickets?since={since:.3f}&page_size=1000")
    if status != 200:
        raise RuntimeError(f"ticket query at {site['http']} answered {status}")
    return list(page["items"])


def account(desc: dict[str, Any], fault: str, calls: int, since: float, caller: str | None = None) -> Tally:
    """`caller`: only the tickets of the drill's own calls (its Traffic's number) — a test just before may have
    made one inside the window (a prepared press completed at its controller's restart, 0.6 s before a drill
    began, was counted as the drill's 25th of 24)."""
    s12345, s110 = desc["sites"]["12345"], desc["sites"]["110"]
    ours = (lambda t: True) if caller is None else (lambda t: t.get("caller_number") == caller)
    mine = [t for t in tickets_since(s12345, since) if t["source"]["site"] == "12345" and ours(t)]
    theirs = {t["id"]: t for t in tickets_since(s110, since) if ours(t)}
    problems: list[str] = []
    delivered = 0
    for t in mine:
        steps = [e["type"] for e in t["history"]]
        if t["id"] in theirs and "delivered" in steps:
            delivered += 1
        else:
            problems.append(f"{t['id']} not delivered: 12345 has {steps}, 110 has it: {t['id'] in theirs}")
    duplicated = 0
    for copy in [*mine, *theirs.values()]:
        ids = Counter(e["id"] for e in copy["history"])
        types = Counter(e["type"] for e in copy["history"])
        extra = sum(n - 1 for n in ids.values()) + sum(max(0, types[k] - 1) for k in ONCE)
        if extra:
            problems.append(f"{copy['id']}: repeated events {[e['type'] for e in copy['history']]}")
        duplicated += extra
    unknown = set(theirs) - {t["id"] for t in mine}
    duplicated += len(unknown)
    problems += [f"110 holds {t} that 12345 never sent" for t in sorted(unknown)]
    # one transfer per call: a second ticket for a call is a duplicate unless the first one failed (a recall)
    per_call = Counter(t["linkedid"] for t in mine if "transfer_failed" not in {e["type"] for e in t["history"]})
    for linkedid, n in per_call.items():
        if n > 1:
            duplicated += n - 1
            problems.append(f"call {linkedid} has {n} live tickets")
    return Tally(fault, calls, len(mine), delivered, duplicated, problems)


def settle(desc: dict[str, Any], fault: str, calls: int, since: float, timeout: float,
           expect_sent: int | None = None, caller: str | None = None) -> Tally:
    """Poll the account until everything sent is delivered (the outboxes drain at their own pace)."""
    deadline = time.monotonic() + timeout
    while True:
        tally = account(desc, fault, calls, since, caller)
        done = tally.sent == tally.delivered and (expect_sent is None or tally.sent >= expect_sent)
        if done or time.monotonic() > deadline:
            return tally
        time.sleep(1.0)


def live_calls(site: dict[str, Any]) -> int:
    status, body = _get(site, "/v1/calls")
    return len(body["items"]) if status == 200 and isinstance(body, dict) and "items" in body else -1
