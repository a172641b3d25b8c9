"""SIPp roles of a scenario: which lab account a role plays, its DTMF pcap and scenario file, the SIPp process,
and the wait until every answering role listens before any caller dials."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from linkage_lab.harness.dtmf import write_pcap
from linkage_lab.harness.scenario import Role, fill_sipp
from telephony.errors import ConfigError

MEDIA_BASE = 42000  # SIPp's media ports: MEDIA_BASE + 4 × the role's index; a desc may set its own `media_base`


def media_port(desc: dict[str, Any], index: int) -> int:
    """Sites other than the lab's (the container sites of tests/images) run beside it with their own ports."""
    return int(desc.get("media_base", MEDIA_BASE)) + 4 * index


def account(site: dict[str, Any], role: Role) -> dict[str, Any]:
    if role.account == "citizen":
        acc: dict[str, Any] = site["accounts"]["citizen"]
        return acc
    if role.account == "followup":  # the outbound route of follow-up calls: the lab's stand-in carrier
        gateway: dict[str, Any] = site["followup"]["gateway"]
        return gateway
    if role.account.startswith("target:"):
        phone: dict[str, Any] = site["targets"][role.account.split(":", 1)[1]]["phone"]
        return phone
    index = int(role.account[len("agents["):-1])
    agent: dict[str, Any] = site["accounts"]["agents"][index]
    return agent


async def run_role(role: Role, index: int, desc: dict[str, Any], workdir: Path, budget: float) -> tuple[int, str]:
    site = desc["sites"][role.site]
    acc = account(site, role)
    rdir = workdir / role.name
    rdir.mkdir()
    params = dict(role.params)
    for name, pcap, seq0 in ((role.dtmf, "keys.pcap", 1000), (role.dtmf_then, "keys2.pcap", 20000)):
        if not name:
            continue
        keys = site["keys"]
        digits = name[len("digits:"):] if name.startswith("digits:") else (
            keys.get(name) if isinstance(keys.get(name), str) else keys["targets"].get(name))
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
            "-mp", str(media_port(desc, index)), "-m", params.get("calls", "1"), "-timeout", f"{int(budget)}s",
            "-timeout_error",
            "-nostdin", "-trace_err", "-trace_msg"]
    if "limit" in params:  # at most this many calls at once: `calls: 3, limit: 1` calls three times in a row
        argv += ["-l", params["limit"]]
    if "rate" in params:  # new calls per second (SIPp -r): a burst spread over time, as callers pile up
        argv += ["-r", params["rate"]]
    if role.calls:
        argv += [f"{site['sip']['host']}:{site['sip']['port']}", "-s", role.dial or acc["dial"]]
    proc = await asyncio.create_subprocess_exec(*argv, cwd=rdir, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.DEVNULL)
    try:
        async with asyncio.timeout(budget + 5):
            code = await proc.wait()
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


async def wait_bound(ports: list[int], timeout: float) -> None:
    """Callers start only once every UAS role has bound its SIP port: an INVITE sent earlier is lost and
    retransmitted seconds later (a SIPp can take seconds to start on a loaded machine)."""
    deadline = time.time() + timeout
    while time.time() < deadline and not set(ports) <= _udp_bound():
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.1)
