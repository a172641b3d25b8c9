"""Run scenarios against the lab: drain the lab, start SIPp roles, watch AMI on every site, run the console
actions, check tickets, media and AMI, print a timeline, write JUnit XML. `linkage scenario run FILE…` and the
pytest suite both come through `run_scenario`.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from linkage_lab.harness.actions import act, act_after
from linkage_lab.harness.ami import AmiWatcher
from linkage_lab.harness.callers import check_suggestions, flag_before, unflag_after
from linkage_lab.harness.checks import check_ami, check_media, check_tickets, epoch, iso
from linkage_lab.harness.drain import IN_FLIGHT, Pbxes, drain
from linkage_lab.harness.http import SiteHttp
from linkage_lab.harness.media import RtpSniffer
from linkage_lab.harness.queues import check_queue, queue_action, queue_after, queue_before
from linkage_lab.harness.report import TIMELINE_EVENTS, Result, describe_ami, write_junit
from linkage_lab.harness.roles import MEDIA_BASE, account, media_port, run_role, wait_bound
from linkage_lab.harness.scenario import Scenario, load
from linkage_lab.lab.lab import SITES, Lab

__all__ = ["MEDIA_BASE", "Result", "run_files", "run_scenario", "run_scenario_async", "write_junit"]

DRAIN_TIMEOUT = 10.0  # the hangups at the end of a scenario (and a PBX's Timer F of their BYEs), with room


async def _wait_quiet(http: SiteHttp, desc: dict[str, Any], scenario: Scenario, timeout: float) -> None:
    """Start on idle controllers: a call left over from the scenario before (a recall still ringing an agent,
    say) would reach this scenario's SIPp agents first. Asks each running controller for its live calls."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        busy = False
        for name, site in desc["sites"].items():
            if f"controller:{name}" in scenario.down or f"asterisk:{name}" in scenario.down:
                continue
            try:
                busy = busy or bool((await http.get(f"{site['http']}/v1/calls", site["token"])).get("items"))
                # and no message still waiting for a peer: a controller the scenario before restarted leaves its
                # peers' outboxes in a retry backoff that would hold this scenario's feedback past its settle time
                peers = (await http.get(f"{site['http']}/v1/delivery", site["token"])).get("peers", [])
                busy = busy or any(p.get("queued") for p in peers)
            except (OSError, ValueError, AttributeError):
                continue
        if not busy:
            return
        await asyncio.sleep(0.2)


async def _drain(lab: Pbxes, desc: dict[str, Any], scenario: Scenario, result: Result, when: str,
                 watchers: dict[str, AmiWatcher] | None = None) -> None:
    sites = [name for name in desc["sites"] if f"asterisk:{name}" not in scenario.down]
    events = {name: list(w.events) for name, w in (watchers or {}).items()}
    note = (await drain(lab, sites, DRAIN_TIMEOUT, events, desc)).note(when)
    if note:
        result.timeline.append((time.time(), "-", note))


async def _clear_addresses(desc: dict[str, Any], scenario: Scenario, result: Result) -> None:
    """The scenario's SIPp take their accounts' addresses only once no INVITE of an earlier unanswered leg can
    still reach them (drain.py: the drain after a scenario leaves that wait to whoever binds the address)."""
    addresses = {}
    for role in scenario.roles:
        acc = account(desc["sites"][role.site], role)
        addresses[(str(acc["host"]), int(acc["port"]))] = role.name
    waited, pending = await IN_FLIGHT.wait(addresses)
    if pending:
        result.timeline.append((time.time(), "-", f"lab before the scenario: waited {waited:.1f}s for Timer B of "
                                "an earlier unanswered INVITE to " + ", ".join(
                                    f"{host}:{port} ({addresses[(host, port)]})" for host, port in sorted(pending))))


async def _fetch_tickets(http: SiteHttp, desc: dict[str, Any], scenario: Scenario, result: Result,
                         begin: float) -> None:
    """Read every site's tickets of this scenario until they match or the settle time runs out."""
    deadline = time.time() + scenario.settle
    while True:
        result.tickets = {}
        unreachable = []
        for name, site in desc["sites"].items():
            try:
                data = await http.get(f"{site['http']}/v1/tickets?since={begin:.3f}", site["token"])
            except OSError:
                unreachable.append(name)  # a drill may have stopped it; only a failure if expected
                continue
            # from `begin` on, not earlier: the test before may have just completed a ticket of its own (a press
            # made while its controller was down is completed at the controller's restart)
            result.tickets[name] = [t for t in data["items"] if t["created_at"] >= iso(begin)]
        failures = check_tickets(scenario, result)
        failures += [f"site {e.site}: controller unreachable" for e in scenario.tickets if e.site in unreachable]
        if not failures or time.time() > deadline:
            result.failures += failures
            return
        await asyncio.sleep(0.2)


async def _play(http: SiteHttp, scenario: Scenario, desc: dict[str, Any], result: Result, workdir: Path,
                begin: float) -> None:
    """The SIPp roles (answering ones first, bound before any caller dials) and the console actions."""
    uas = [(i, r) for i, r in enumerate(scenario.roles) if not r.calls]
    uac = [(i, r) for i, r in enumerate(scenario.roles) if r.calls]
    tasks = {}
    for i, role in uas:
        tasks[role.name] = asyncio.create_task(run_role(role, i, desc, workdir, scenario.budget))
        result.timeline.append((time.time(), role.site, f"sipp {role.name} listening ({role.sipp.name})"))
    await wait_bound([int(account(desc["sites"][r.site], r)["port"]) for _, r in uas], 10.0)
    for i, role in uac:
        tasks[role.name] = asyncio.create_task(run_role(role, i, desc, workdir, scenario.budget))
        result.timeline.append((time.time(), role.site, f"sipp {role.name} calls ({role.sipp.name})"))
    actions = [asyncio.create_task(queue_action(http, a, desc, result) if a.queue is not None
                                   else act(http, a, desc, result) if a.transition is None and a.amend is None
                                   else _at(a.at or 0.0, act_after(http, a, desc, result, begin, scenario.settle)))
               for a in scenario.actions if a.at is not None]
    for name, task in tasks.items():
        code, errors = await task
        role = next(r for r in scenario.roles if r.name == name)
        result.timeline.append((time.time(), role.site, f"sipp {name} exited {code}"))
        if code != 0:
            result.failures.append(f"role {name}: sipp exit {code}: {errors[-300:]}")
    await asyncio.gather(*actions)
    for action in scenario.actions:
        if action.at is None:
            await act_after(http, action, desc, result, begin, scenario.settle)


async def _call_off_followups(http: SiteHttp, desc: dict[str, Any], result: Result) -> None:
    """Follow-up calls the scenario left scheduled (its ticket resolved, its carrier gone) would ring the next
    scenario's SIPp on the same port: they are called off once this scenario's tickets are read."""
    for name, site in desc["sites"].items():
        if "followup" not in site:
            continue
        try:
            jobs = (await http.get(f"{site['http']}/v1/followups", site["token"]))["items"]
            for job in jobs:
                if job["state"] in ("scheduled", "dialling"):
                    await http.call(f"{site['http']}/v1/followups/{job['ticket_id']}", site["token"], "DELETE")
                    result.timeline.append((time.time(), name, f"follow-up of {job['ticket_id']} called off"))
        except (OSError, ValueError, KeyError):
            continue  # a controller that is down has nothing to call


async def _at(delay: float, step: Any) -> None:
    """A lifecycle step `at: N` seconds into the scenario (while a role still waits for what it causes)."""
    await asyncio.sleep(delay)
    await step


async def run_scenario_async(scenario: Scenario, desc: dict[str, Any], lab: Pbxes | None = None) -> Result:
    """`desc` is shaped like `linkage lab describe`; `lab` runs `asterisk -rx` on its PBXes (default the lab's)."""
    lab = lab or Lab()
    result = Result(scenario)
    async with aiohttp.ClientSession() as session:
        http = SiteHttp(session)
        await _wait_quiet(http, desc, scenario, 30.0)
        await _drain(lab, desc, scenario, result, "before the scenario")
        await _clear_addresses(desc, scenario, result)
        begin = time.time()
        watchers = {name: AmiWatcher(name, site["ami"]) for name, site in desc["sites"].items()
                    if f"asterisk:{name}" not in scenario.down and scenario.watch_ami}
        workdir = Path(tempfile.mkdtemp(prefix=f"linkage-{scenario.name}-"))
        index = {r.name: i for i, r in enumerate(scenario.roles)}
        sniffers = {m.role: RtpSniffer(media_port(desc, index[m.role])) for m in scenario.media}
        try:
            for s in sniffers.values():
                s.start()
            await asyncio.gather(*(w.start() for w in watchers.values()))
            await flag_before(http, scenario, desc, result)
            await queue_before(http, scenario, desc, result)
            await _play(http, scenario, desc, result, workdir, begin)
            await _fetch_tickets(http, desc, scenario, result, begin)
            await _call_off_followups(http, desc, result)
            result.failures += await check_suggestions(http, scenario, desc)
            result.failures += await check_queue(http, scenario, desc, scenario.settle)
            result.failures += check_media(scenario, watchers, sniffers)
            result.failures += check_ami(scenario, watchers)
            checked = {name: len(w.events) for name, w in watchers.items()}
            # the next scenario's SIPp take these ports: nothing of this one may still be sent to them. The
            # watchers keep recording meanwhile, so a leg dialled during the drain is waited for too.
            await _drain(lab, desc, scenario, result, "after the scenario", watchers)
        finally:
            await unflag_after(http, scenario, desc)
            await queue_after(http, scenario, desc)
            for s in sniffers.values():
                s.stop()
            for w in watchers.values():
                w.close()
            _keep_logs(scenario, result, workdir)
    _timeline(result, watchers, checked)
    result.duration = time.time() - begin
    return result


def _keep_logs(scenario: Scenario, result: Result, workdir: Path) -> None:
    if result.failures:  # keep SIPp's logs of a failed scenario for the person reading the report
        kept = Path("reports") / "sipp" / scenario.name
        shutil.rmtree(kept, ignore_errors=True)
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(workdir), kept)
        result.timeline.append((time.time(), "-", f"SIPp logs kept in {kept}"))
    else:
        shutil.rmtree(workdir, ignore_errors=True)


def _timeline(result: Result, watchers: dict[str, AmiWatcher], checked: dict[str, int]) -> None:
    """The events the checks saw (not those of the drain after them), in time order with the tickets'."""
    for name, w in watchers.items():
        result.ami[name] = w.events[:checked[name]]
        for at, e in result.ami[name]:
            if e.get("Event") in TIMELINE_EVENTS:
                result.timeline.append((at, name, describe_ami(e)))
    for name, items in result.tickets.items():
        for t in items:
            for e in t["history"]:
                who = e["actor"]["site"] + ("/" + e["actor"]["agent"] if "agent" in e["actor"] else "")
                result.timeline.append((epoch(e["at"]), name, f"ticket {t['id']} {e['type']} by {who}"))
    result.timeline.sort(key=lambda x: x[0])


def _wait_trunks_unavailable(lab: Lab, stopped: list[str], timeout: float = 10.0) -> None:
    """Until the running PBXes' qualify has marked their trunks to the stopped ones unavailable (qualify every 2 s,
    1 s timeout: about 3 s), as a PBX gone for a while would be: a transfer to it then fails at once."""
    running = [p.name for p in SITES if p.name not in stopped]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pending = False
        for site in running:
            try:
                out = subprocess.run(lab.rx_argv(site, "pjsip show contacts"), capture_output=True, text=True,
                                     timeout=5, check=False).stdout
            except subprocess.TimeoutExpired:
                out = ""
            # "Contact:  trunk-110/sip:127.0.0.1:25060   79d534d378 Avail   0.685"
            pending = pending or any(f"trunk-{down}/" in line and " Unavail " not in f"{line} "
                                     for line in out.splitlines() for down in stopped)
        if not pending:
            return
        time.sleep(0.2)


def run_scenario(scenario: Scenario, desc: dict[str, Any], lab: Lab | None = None) -> Result:
    """Run one scenario; controllers named in `controller_env` run with those overrides meanwhile."""
    lab = lab or Lab()
    for site, env in scenario.controller_env.items():
        lab.restart_controller(site, env=env)
    for item in scenario.down:
        kind, site = item.split(":", 1)
        lab.stop_asterisk(site) if kind == "asterisk" else lab.stop_controller(site)
    if any(d.startswith("asterisk:") for d in scenario.down):
        _wait_trunks_unavailable(lab, [d.split(":", 1)[1] for d in scenario.down if d.startswith("asterisk:")])
    try:
        return asyncio.run(run_scenario_async(scenario, desc, lab))
    finally:
        for item in scenario.down:
            kind, site = item.split(":", 1)
            lab.start_asterisk(site) if kind == "asterisk" else lab.restart_controller(site)
        for site in scenario.controller_env:
            if f"controller:{site}" not in scenario.down:
                lab.restart_controller(site)


def run_files(files: list[str], junit: str, keep_lab: bool = False) -> int:
    scenarios = [load(f) for f in files]
    lab = Lab()
    was_up = lab.is_up()
    desc = lab.up(log=lambda m: None)
    results = []
    try:
        for s in scenarios:
            r = run_scenario(s, desc, lab)
            print(r.report(), flush=True)
            results.append(r)
    finally:
        if not (keep_lab or was_up):
            lab.down(quiet=True)
        else:  # the next command's SIPp may take any account's address at once
            IN_FLIGHT.wait_all()
    write_junit(results, junit)
    passed = sum(1 for r in results if r.ok)
    print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if passed == len(results) else 1
