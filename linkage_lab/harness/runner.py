"""Run scenarios against the lab: start SIPp roles, watch AMI on every site, check tickets, print a timeline,
write JUnit XML. `linkage scenario run FILE…` and the pytest suite both come through `run_scenario`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from xml.etree import ElementTree as ET

from panoramisk import Manager

from linkage_lab.harness.dtmf import write_pcap
from linkage_lab.harness.media import RtpSniffer, check_window
from linkage_lab.harness.scenario import Action, Role, Scenario, fill_sipp, load
from linkage_lab.lab.lab import Lab, LabError
from telephony.errors import ConfigError

TIMELINE_EVENTS = {"Newchannel", "DialBegin", "DialEnd", "BridgeEnter", "BlindTransfer", "Hangup",
                   "DTMFEnd", "MusicOnHoldStart", "AgentCalled"}
MEDIA_BASE = 42000


@dataclass
class Result:
    scenario: Scenario
    failures: list[str] = field(default_factory=list)
    timeline: list[tuple[float, str, str]] = field(default_factory=list)
    tickets: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    ami: dict[str, list[tuple[float, dict[str, str]]]] = field(default_factory=dict)
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures

    def report(self) -> str:
        lines = [f"scenario {self.scenario.name}: {'PASS' if self.ok else 'FAIL'} in {self.duration:.1f}s"]
        start = self.timeline[0][0] if self.timeline else 0.0
        for at, site, text in self.timeline:
            lines.append(f"  +{at - start:7.3f}s  {site:>6}  {text}")
        for f in self.failures:
            lines.append(f"  FAILED: {f}")
        return "\n".join(lines)


class AmiWatcher:
    """Records every AMI event of one site (tester account) with its arrival time."""

    def __init__(self, site: str, ami: dict[str, Any]) -> None:
        self.site = site
        self.events: list[tuple[float, dict[str, str]]] = []
        self.ready = asyncio.Event()
        self.manager = Manager(host=ami["host"], port=ami["port"], username=ami["username"],
                               secret=ami["secret"], ping_delay=60, ping_interval=60,
                               log=logging.getLogger("harness.ami"), on_login=lambda _: self.ready.set())
        self.manager.register_event("*", self._on_event)

    def _on_event(self, _: Any, message: Any) -> None:
        self.events.append((time.time(), {str(k): str(v) for k, v in message.items() if isinstance(v, str)}))

    async def start(self) -> None:
        self.manager.connect()
        try:
            await asyncio.wait_for(self.ready.wait(), 5)
        except TimeoutError as exc:
            self.close()
            raise LabError(f"cannot log in to the AMI of site {self.site}: is the lab up?") from exc

    def close(self) -> None:
        self.manager.close()


def _account(site: dict[str, Any], role: Role) -> dict[str, Any]:
    if role.account == "citizen":
        acc: dict[str, Any] = site["accounts"]["citizen"]
        return acc
    if role.account.startswith("target:"):
        phone: dict[str, Any] = site["targets"][role.account.split(":", 1)[1]]["phone"]
        return phone
    index = int(role.account[len("agents["):-1])
    agent: dict[str, Any] = site["accounts"]["agents"][index]
    return agent


def _get(url: str, token: str, method: str = "GET", body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=3) as resp:
        return json.loads(resp.read())


def _call(url: str, token: str, method: str, body: Any) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=3) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"{}")
        except ValueError:
            return exc.code, {}


async def _act_after(action: Action, desc: dict[str, Any], result: Result, begin: float,
                     settle: float) -> None:
    """A lifecycle transition or amendment of the scenario's ticket on a site, once the calls are over.
    Feedback is asynchronous, so a 409 (not yet in the right state here) or a missing ticket is retried
    until the settle time runs out."""
    site = desc["sites"][action.site]
    deadline = time.time() + settle
    status, reply, what = 0, cast(Any, {}), ""
    while True:
        listing = await asyncio.to_thread(_get, f"{site['http']}/v1/tickets?since={begin - 1:.3f}", site["token"])
        items = [t for t in listing["items"] if t["created_at"] >= _iso(begin - 1)]
        if len(items) == 1:
            tid = items[0]["id"]
            if action.transition is not None:
                what = f"transition {action.transition.get('type')}"
                status, reply = await asyncio.to_thread(
                    _call, f"{site['http']}/v1/tickets/{tid}/transitions", site["token"], "POST", action.transition)
            else:
                what = "amend"
                status, reply = await asyncio.to_thread(
                    _call, f"{site['http']}/v1/tickets/{tid}", site["token"], "PATCH", action.amend)
            wanted = action.expect or 200
            if status == wanted or (status not in (404, 409) and action.expect is None) or time.time() > deadline:
                break
        elif time.time() > deadline:
            result.failures.append(f"action on {action.site}: expected one ticket there, found {len(items)}")
            return
        await asyncio.sleep(0.2)
    result.timeline.append((time.time(), action.site, f"console: {what} -> HTTP {status}"))
    if status != (action.expect or 200):
        result.failures.append(f"action on {action.site}: {what} got HTTP {status} "
                               f"{reply.get('message', '') if isinstance(reply, dict) else ''}, "
                               f"expected {action.expect or 200}")


async def _act(action: Action, desc: dict[str, Any], result: Result) -> None:
    """Type the draft into the console of the site's bridged call, as an agent would before the key press."""
    await asyncio.sleep(action.at or 0.0)
    site = desc["sites"][action.site]
    try:
        deadline = time.time() + 3.0  # a loaded machine may answer a little later than the scenario says
        while True:
            calls = await asyncio.to_thread(_get, f"{site['http']}/v1/calls", site["token"])
            bridged = [c for c in calls["items"] if c["bridged"]]
            if len(bridged) == 1 or time.time() > deadline:
                break
            await asyncio.sleep(0.1)
        if len(bridged) != 1:
            result.failures.append(f"action at {action.at}s: expected one bridged call on {action.site}, "
                                   f"found {len(bridged)}")
            return
        if action.transfer is not None or action.threeway is not None:
            verb = "transfer" if action.transfer is not None else "threeway"
            url = f"{site['http']}/v1/calls/{bridged[0]['linkedid']}/{verb}"
            status, reply = await asyncio.to_thread(_call, url, site["token"], "POST",
                                                    action.transfer if action.transfer is not None else action.threeway)
            result.timeline.append((time.time(), action.site, f"console: {verb} button -> HTTP {status}"))
            if status != (action.expect or 200) and not (action.expect is None and status == 202):
                result.failures.append(f"console transfer on {action.site} got HTTP {status}: {reply}")
            return
        url = f"{site['http']}/v1/calls/{bridged[0]['linkedid']}/draft"
        await asyncio.to_thread(_get, url, site["token"], "PUT", action.draft)
        result.timeline.append((time.time(), action.site, f"console: draft {sorted(action.draft)}"))
    except (OSError, ValueError) as exc:
        result.failures.append(f"action at {action.at}s on {action.site} failed: {exc}")


async def _run_role(role: Role, index: int, desc: dict[str, Any], workdir: Path,
                    budget: float) -> tuple[int, str]:
    site = desc["sites"][role.site]
    acc = _account(site, role)
    rdir = workdir / role.name
    rdir.mkdir()
    params = dict(role.params)
    for name, pcap, seq0 in ((role.dtmf, "keys.pcap", 1000), (role.dtmf_then, "keys2.pcap", 20000)):
        if not name:
            continue
        keys = site["keys"]
        digits = keys.get(name) if isinstance(keys.get(name), str) else keys["targets"].get(name)
        if not digits:
            return 97, f"site {role.site} has no key {name!r}"
        write_pcap(digits * (role.dtmf_times if pcap == "keys.pcap" else 1), rdir / pcap, seq0=seq0,
                   ts0=seq0 * 160)
        params[pcap.replace(".", "_")] = pcap
    try:
        fill_sipp(role.sipp, params, rdir, "scenario.xml")
    except ConfigError as exc:
        return 99, exc.message
    argv = ["sipp", "-sf", "scenario.xml", "-i", acc["host"], "-p", str(acc["port"]),
            "-mp", str(MEDIA_BASE + 4 * index), "-m", params.get("calls", "1"), "-timeout", f"{int(budget)}s",
            "-timeout_error",
            "-nostdin", "-trace_err", "-trace_msg"]
    if role.calls:
        argv += [f"{site['sip']['host']}:{site['sip']['port']}", "-s", acc["dial"]]
    proc = await asyncio.create_subprocess_exec(*argv, cwd=rdir, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.DEVNULL)
    try:
        code = await asyncio.wait_for(proc.wait(), budget + 5)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return 98, "did not finish within the budget"
    errors = "".join(p.read_text(errors="replace")[-400:] for p in rdir.glob("*_errors.log"))
    return code, errors.strip()


def _udp_bound() -> set[int]:
    ports = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        ports |= {int(line.split()[1].rsplit(":", 1)[1], 16) for line in lines if line.strip()}
    return ports


async def _wait_bound(ports: list[int], timeout: float) -> None:
    """Callers start only once every UAS role has bound its SIP port: an INVITE sent earlier is lost and
    retransmitted seconds later (seen on a loaded machine: a SIPp that took seconds to start)."""
    deadline = time.time() + timeout
    while time.time() < deadline and not set(ports) <= _udp_bound():
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.1)


def _matches(event: dict[str, str], match: dict[str, str]) -> bool:
    """Exact header matches; a value ending in `*` matches by prefix."""
    return all(event.get(k, "").startswith(v[:-1]) if v.endswith("*") else event.get(k) == v
               for k, v in match.items())


def _check_media(scenario: Scenario, watchers: dict[str, AmiWatcher],
                 sniffers: dict[str, RtpSniffer]) -> list[str]:
    failures = []
    for exp in scenario.media:
        if exp.site not in watchers:
            failures.append(f"media {exp.role}: site {exp.site} has no AMI to watch")
            continue
        events = watchers[exp.site].events
        start = next((at for at, e in events if _matches(e, exp.start)), None)
        end = next((at for at, e in events if start is not None and at > start and _matches(e, exp.end)), None)
        if start is None or end is None:
            failures.append(f"media {exp.role}: window {exp.start} .. {exp.end} not found in AMI events")
            continue
        for problem in check_window(sniffers[exp.role].packets, start, end, exp.max_gap_ms, exp.min_audible_ms):
            failures.append(f"media {exp.role}: {problem}")
    return failures


def _check_tickets(scenario: Scenario, result: Result) -> list[str]:
    failures = []
    for exp in scenario.tickets:
        items = result.tickets.get(exp.site, [])
        if len(items) != exp.count:
            failures.append(f"site {exp.site}: expected {exp.count} ticket(s), found {len(items)}")
            continue
        for t in items:
            if exp.status and t["status"] != exp.status:
                failures.append(f"site {exp.site}: ticket {t['id']} is {t['status']}, expected {exp.status}")
            types = [e["type"] for e in t["history"]]
            if exp.history is not None and types != exp.history:
                failures.append(f"site {exp.site}: history {types}, expected {exp.history}")
            if exp.history_contains is not None and sorted(types) != sorted(exp.history_contains):
                failures.append(f"site {exp.site}: history {types}, expected these in any order: "
                                f"{exp.history_contains}")
            for k, v in exp.fields.items():
                if t.get(k) != v:
                    failures.append(f"site {exp.site}: field {k} is {t.get(k)!r}, expected {v!r}")
            for etype, want in exp.payload.items():
                got = [e["payload"] for e in t["history"] if e["type"] == etype]
                if not got or any(got[-1].get(k) != v for k, v in want.items()):
                    failures.append(f"site {exp.site}: {etype} payload {got[-1] if got else None}, expected {want}")
    return failures


async def _wait_quiet(desc: dict[str, Any], scenario: Scenario, timeout: float) -> None:
    """Start on idle PBXes: a call left over from the scenario before (a recall still ringing an agent, say)
    would reach this scenario's SIPp agents first. Asks each running controller for its live calls."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        busy = False
        for name, site in desc["sites"].items():
            if f"controller:{name}" in scenario.down or f"asterisk:{name}" in scenario.down:
                continue
            try:
                busy = busy or bool(_get(f"{site['http']}/v1/calls", site["token"]).get("items"))
            except (OSError, ValueError, AttributeError):
                continue
        if not busy:
            return
        await asyncio.sleep(0.2)


async def run_scenario_async(scenario: Scenario, desc: dict[str, Any]) -> Result:
    result = Result(scenario)
    await _wait_quiet(desc, scenario, 10.0)
    begin = time.time()
    watchers = {name: AmiWatcher(name, site["ami"]) for name, site in desc["sites"].items()
                if f"asterisk:{name}" not in scenario.down and scenario.watch_ami}
    workdir = Path(tempfile.mkdtemp(prefix=f"linkage-{scenario.name}-"))
    index = {r.name: i for i, r in enumerate(scenario.roles)}
    sniffers = {m.role: RtpSniffer(MEDIA_BASE + 4 * index[m.role]) for m in scenario.media}
    try:
        for s in sniffers.values():
            s.start()
        await asyncio.gather(*(w.start() for w in watchers.values()))
        uas = [(i, r) for i, r in enumerate(scenario.roles) if not r.calls]
        uac = [(i, r) for i, r in enumerate(scenario.roles) if r.calls]
        tasks = {}
        for i, role in uas:
            tasks[role.name] = asyncio.create_task(_run_role(role, i, desc, workdir, scenario.budget))
            result.timeline.append((time.time(), role.site, f"sipp {role.name} listening ({role.sipp.name})"))
        await _wait_bound([int(_account(desc["sites"][r.site], r)["port"]) for _, r in uas], 10.0)
        for i, role in uac:
            tasks[role.name] = asyncio.create_task(_run_role(role, i, desc, workdir, scenario.budget))
            result.timeline.append((time.time(), role.site, f"sipp {role.name} calls ({role.sipp.name})"))
        actions = [asyncio.create_task(_act(a, desc, result)) for a in scenario.actions if a.at is not None]
        for name, task in tasks.items():
            code, errors = await task
            role = next(r for r in scenario.roles if r.name == name)
            result.timeline.append((time.time(), role.site, f"sipp {name} exited {code}"))
            if code != 0:
                result.failures.append(f"role {name}: sipp exit {code}: {errors[-300:]}")
        await asyncio.gather(*actions)
        for action in scenario.actions:
            if action.at is None:
                await _act_after(action, desc, result, begin, scenario.settle)
        deadline = time.time() + scenario.settle
        while True:
            result.tickets = {}
            unreachable = []
            for name, site in desc["sites"].items():
                try:
                    data = _get(f"{site['http']}/v1/tickets?since={begin - 1:.3f}", site["token"])
                except OSError:
                    unreachable.append(name)  # a drill may have stopped it; only a failure if expected
                    continue
                result.tickets[name] = [t for t in data["items"] if t["created_at"] >= _iso(begin - 1)]
            ticket_failures = _check_tickets(scenario, result)
            ticket_failures += [f"site {e.site}: controller unreachable" for e in scenario.tickets
                                if e.site in unreachable]
            if not ticket_failures or time.time() > deadline:
                break
            await asyncio.sleep(0.2)
        result.failures += ticket_failures
        result.failures += _check_media(scenario, watchers, sniffers)
        for exp in scenario.ami:
            if exp.site not in watchers:
                result.failures.append(f"site {exp.site}: no AMI to watch (its PBX is down in this scenario)")
                continue
            got = sum(1 for _, e in watchers[exp.site].events if _matches(e, exp.match))
            if got != exp.count:
                result.failures.append(f"site {exp.site}: AMI {exp.match} seen {got} time(s), expected {exp.count}")
    finally:
        for s in sniffers.values():
            s.stop()
        for w in watchers.values():
            w.close()
        if result.failures:  # keep SIPp's logs of a failed scenario for the person reading the report
            kept = Path("reports") / "sipp" / scenario.name
            shutil.rmtree(kept, ignore_errors=True)
            kept.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(workdir), kept)
            result.timeline.append((time.time(), "-", f"SIPp logs kept in {kept}"))
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    for name, w in watchers.items():
        result.ami[name] = w.events
        for at, e in w.events:
            if e.get("Event") in TIMELINE_EVENTS:
                result.timeline.append((at, name, _describe_ami(e)))
    for name, items in result.tickets.items():
        for t in items:
            for e in t["history"]:
                who = e["actor"]["site"] + ("/" + e["actor"]["agent"] if "agent" in e["actor"] else "")
                result.timeline.append((_epoch(e["at"]), name, f"ticket {t['id']} {e['type']} by {who}"))
    result.timeline.sort(key=lambda x: x[0])
    result.duration = time.time() - begin
    return result


def _describe_ami(e: dict[str, str]) -> str:
    name = e.get("Event", "")
    chan = e.get("Channel", "")
    extra = {"DialBegin": f"-> {e.get('DestChannel', '')}", "DialEnd": f"-> {e.get('DestChannel', '')} "
             f"{e.get('DialStatus', '')}", "BlindTransfer": f"to {e.get('Extension', '')}@{e.get('Context', '')} "
             f"{e.get('Result', '')}", "Hangup": e.get("Cause-txt", ""), "DTMFEnd": f"digit {e.get('Digit', '')}",
             }.get(name, "")
    return f"AMI {name} {chan} {extra}".rstrip()


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 1000):03d}Z"


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def run_scenario(scenario: Scenario, desc: dict[str, Any], lab: Lab | None = None) -> Result:
    """Run one scenario; controllers named in `controller_env` run with those overrides meanwhile."""
    lab = lab or Lab()
    for site, env in scenario.controller_env.items():
        lab.restart_controller(site, env=env)
    for item in scenario.down:
        kind, site = item.split(":", 1)
        lab.stop_asterisk(site) if kind == "asterisk" else lab.stop_controller(site)
    if any(d.startswith("asterisk:") for d in scenario.down):
        time.sleep(4)  # let the peers' qualify notice the PBX is gone
    try:
        return asyncio.run(run_scenario_async(scenario, desc))
    finally:
        for item in scenario.down:
            kind, site = item.split(":", 1)
            lab.start_asterisk(site) if kind == "asterisk" else lab.restart_controller(site)
        for site in scenario.controller_env:
            if f"controller:{site}" not in scenario.down:
                lab.restart_controller(site)


def write_junit(results: list[Result], path: str | Path) -> None:
    suite = ET.Element("testsuite", name="linkage-scenarios", tests=str(len(results)),
                       failures=str(sum(1 for r in results if not r.ok)))
    for r in results:
        case = ET.SubElement(suite, "testcase", classname="scenarios", name=r.scenario.name,
                             time=f"{r.duration:.3f}")
        if not r.ok:
            ET.SubElement(case, "failure", message=r.failures[0]).text = "\n".join(r.failures)
        ET.SubElement(case, "system-out").text = r.report()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suite).write(out, encoding="utf-8", xml_declaration=True)


def run_files(files: list[str], junit: str, keep_lab: bool = False) -> int:
    scenarios = [load(f) for f in files]
    lab = Lab()
    was_up = lab.is_up()
    desc = lab.up(log=lambda m: None)
    results = []
    try:
        for s in scenarios:
            r = run_scenario(s, desc)
            print(r.report(), flush=True)
            results.append(r)
    finally:
        if not (keep_lab or was_up):
            lab.down(quiet=True)
    write_junit(results, junit)
    passed = sum(1 for r in results if r.ok)
    print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if passed == len(results) else 1
