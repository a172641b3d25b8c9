"""Sustained load: SIPp-driven transfers per second, one-key against the pure-dialplan baseline, each rate held
for a fixed time; failures, tickets, and the controllers' CPU time and memory.

Every call: a citizen calls 12345, agent 1001 answers (agent 1002's phone rings until the queue CANCELs it),
presses the key (the one-key code or the bench baseline key), a 110 agent answers, the citizen hangs up. One
SIPp process per role handles all calls of a step.

The PBXes run the standard SIP T1 (500 ms, `--sip-t1`) and the roles play the bench's own scenarios (`sipp/`),
which answer a retransmitted INVITE or BYE instead of counting the call as failed: under load a PBX retransmits
whenever SIPp's answer is late, and that is not a lost transfer. A call fails when it does: the citizen's call
rejected or hung up on, or no 110 agent answering it."""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from linkage_lab.bench.report import machine, replace_section
from linkage_lab.harness.drain import channel_count
from linkage_lab.harness.dtmf import write_pcap
from linkage_lab.harness.scenario import fill_sipp
from linkage_lab.lab.lab import Lab

ROOT = Path(__file__).resolve().parents[2]
SIPP = Path(__file__).resolve().parent / "sipp"
TICKS = os.sysconf("SC_CLK_TCK")
SIP_TIMER_T1 = 500  # ms: RFC 3261's default, what the issue's load target is stated for
# how long every role keeps a finished call to answer its peer's retransmissions (SIPp answers them by itself
# then): a BYE answered late is retransmitted after T1, 3 T1, 7 T1
LINGER_MS = 4000

def _cpu_and_rss(pid: int) -> tuple[float, int]:
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(stat[11]) + int(stat[12])) / TICKS  # utime + stime, seconds
    rss = int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1))  # type: ignore[union-attr]
    return cpu, rss


def _cpu(pid: int) -> float:
    """utime + stime of a process, seconds; 0 when it is gone."""
    try:
        return _cpu_and_rss(pid)[0]
    except (OSError, AttributeError):
        return 0.0


def _children_cpu() -> float:
    """CPU seconds of this process's ended and reaped children: the step's SIPp processes."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine since boot, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _count_tickets(site: dict[str, Any], since: float, status: str | None = None) -> int:
    q = f"since={since:.3f}&page_size=1" + (f"&status={status}" if status else "")
    req = urllib.request.Request(f"{site['http']}/v1/tickets?{q}", headers={"Authorization": f"Bearer {site['token']}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return int(json.loads(resp.read())["total"])


def _profilers(pids: dict[str, int], seconds: float, out: Path, tag: str) -> list[subprocess.Popen[bytes]]:
    """py-spy (PyPI, pinned in the dev extras) sampling each controller for `seconds`: a raw collapsed-stack
    file per controller (`--profile`; read with `python -m linkage_lab.bench.profile`)."""
    out.mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).with_name("py-spy")
    return [subprocess.Popen([str(spy), "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate",
                              "200", "--format", "raw", "--nonblocking", "--output",
                              str(out / f"profile-{tag}-{name}.txt")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for name, pid in pids.items()]


def _sipp(role: str, scenario: Path, account: dict[str, Any], media_port: int, seconds: float, workdir: Path,
          *extra: str) -> subprocess.Popen[bytes]:
    """One SIPp role of a step: its stat file `<role>.csv`, its unexpected messages in `<role>_errors.log`."""
    argv = ["sipp", *extra, "-sf", str(scenario), "-i", account["host"], "-p", str(account["port"]),
            "-mp", str(media_port), "-aa", "-timeout", f"{int(seconds + 30)}s", "-nostdin", "-trace_stat",
            "-stf", f"{role}.csv", "-trace_err", "-error_file", f"{role}_errors.log"]
    return subprocess.Popen(argv, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def step(desc: dict[str, Any], lab: Lab, key: str, rate: float, seconds: float, workdir: Path,
         profile: Path | None = None) -> dict[str, Any]:
    s12345, s110 = desc["sites"]["12345"], desc["sites"]["110"]
    total = max(1, int(rate * seconds))
    digits = s12345["keys"].get(key) or s12345["keys"]["targets"][key]
    write_pcap(digits, workdir / "keys.pcap")
    linger = {"linger": str(LINGER_MS)}
    sipp_before = _children_cpu()
    # Every 110 agent is played (the one-key path rings the first idle one, so concurrent calls spread out);
    # they run until stopped and report their successful calls in their stat files.
    far_xml = fill_sipp(SIPP / "load_far.xml", {"ring": "100", **linger}, workdir)
    procs = {f"far{i}": _sipp(f"far{i}", far_xml, far, 44000 + 10 * i, seconds, workdir, "-m", "100000")
             for i, far in enumerate(s110["accounts"]["agents"])}
    agent_xml = fill_sipp(SIPP / "load_agent.xml", {"talk": "300", "keys_pcap": "keys.pcap", **linger}, workdir)
    procs["agent"] = _sipp("agent", agent_xml, s12345["accounts"]["agents"][0], 44100, seconds, workdir,
                           "-m", str(total))
    # the hotline queue rings every agent at once: the others ring until the queue CANCELs them
    ring_xml = fill_sipp(SIPP / "load_ring.xml", linger, workdir)
    procs |= {f"ring{i}": _sipp(f"ring{i}", ring_xml, other, 44300 + 10 * i, seconds, workdir, "-m", "100000")
              for i, other in enumerate(s12345["accounts"]["agents"][1:], 1)}
    time.sleep(0.5)
    lab_pids = {p.name: p.pid for p in lab._state()}
    pids = {n: lab_pids[f"controller-{n}"] for n in ("12345", "110")}
    before = {n: _cpu_and_rss(pid) for n, pid in pids.items()}
    lab_before = {name: _cpu(pid) for name, pid in lab_pids.items()}
    ticks = _machine_ticks()
    begin = time.time()
    spies = _profilers(pids, seconds, profile, f"{key}-{rate:g}") if profile is not None else []
    cit = s12345["accounts"]["citizen"]
    citizen_xml = fill_sipp(SIPP / "load_citizen.xml", {"caller": "13900000000", "hold": "2500", **linger},
                            workdir)
    citizens = _sipp("citizen", citizen_xml, cit, 44200, seconds, workdir,
                     f"{s12345['sip']['host']}:{s12345['sip']['port']}", "-s", cit["dial"], "-r", str(rate),
                     "-rp", "1000", "-m", str(total))
    hung = False
    try:
        citizens.wait(timeout=seconds + 60)
    except subprocess.TimeoutExpired:  # the step failed (calls that never ended): say so, go on with the next
        hung = True
        citizens.kill()  # ours: stopped by pid
        citizens.wait()
    citizen_exit = -9 if hung else citizens.returncode
    busy, total_ticks = (a - b for a, b in zip(_machine_ticks(), ticks, strict=True))
    for spy in spies:
        spy.wait(timeout=60)
    try:
        procs["agent"].wait(timeout=15 + LINGER_MS / 1000)
    except subprocess.TimeoutExpired:
        procs["agent"].kill()
    time.sleep(LINGER_MS / 1000 + 2)  # the far calls end, wait out their linger, and feedback is in flight
    for _name, p in procs.items():
        if p.poll() is None:
            p.terminate()  # these SIPp processes are ours: stopped by pid
        p.wait()
    after = {n: _cpu_and_rss(pid) for n, pid in pids.items()}
    lab_cpu = {name: _cpu(pid) - lab_before[name] for name, pid in lab_pids.items()}
    step_busy = _machine_ticks()[0] - ticks[0]
    sipp_cpu = _children_cpu() - sipp_before
    roles = {role: _stats(workdir / f"{role}.csv") for role in ("citizen", *procs)}
    answered = sum(v["SuccessfulCall"] for r, v in roles.items() if r.startswith("far"))
    connected = roles["citizen"]["SuccessfulCall"]
    result: dict[str, Any] = {"key": key, "rate": rate, "calls": total, "citizen_exit": citizen_exit,
                              "citizens_hung": hung, "citizens_connected": connected,
                              "agent_exit": procs["agent"].returncode, "far_answered": answered,
                              # calls lost: the caller's call failed, or no 110 agent answered one
                              "failed": max(total - connected, total - answered, 0),
                              # retransmissions each role sent or answered (a peer's retransmission answered
                              # counts), and messages of calls it had already ended
                              "retransmissions": {r: v["Retransmissions"] for r, v in roles.items()},
                              "dead_call_msgs": {r: v["DeadCallMsgs"] for r, v in roles.items()},
                              # the whole machine while the calls were placed: how much room was left
                              "machine_busy": round(busy / total_ticks, 3) if total_ticks else None,
                              # all processes' CPU time (PBXes, SIPp, controllers, Redis) per call placed
                              "machine_cpu_ms_per_call": round(busy * 1000 / TICKS / total, 2),
                              # the same over the whole step (the calls' ends and the feedback after them)
                              "machine_cpu_ms_per_call_step": round(step_busy * 1000 / TICKS / total, 2),
                              # of that: the lab's processes (PBXes, Redis, controllers) and the SIPp roles
                              "lab_cpu_ms_per_call": round(sum(lab_cpu.values()) * 1000 / total, 2),
                              "lab_cpu_ms_per_call_by_process": {n: round(v * 1000 / total, 2)
                                                                 for n, v in sorted(lab_cpu.items())},
                              "sipp_cpu_ms_per_call": round(sipp_cpu * 1000 / total, 2)}
    if key == "onekey":
        result["tickets_created"] = _count_tickets(s12345, begin - 1)
        result["tickets_signed_for_at_110"] = _count_tickets(s110, begin - 1, "signed_for")
    for n in pids:
        result[f"cpu_ms_per_call_{n}"] = round((after[n][0] - before[n][0]) * 1000 / total, 2)
        result[f"rss_kb_{n}"] = after[n][1]
    result["ok"] = result["failed"] == 0 and not hung and (
        key != "onekey" or result["tickets_signed_for_at_110"] == total)
    result["sipp_errors"] = _sipp_errors(workdir)
    result["left_channels"], result["drained_after_s"] = _drain(lab, lab.sip_timer_t1)
    return result


def _drain(lab: Lab, t1_ms: int) -> tuple[dict[str, int], float]:
    """Wait until neither PBX has a channel left (at most Timer B, 64 × T1, plus a second): the next step's SIPp
    plays the same accounts, and a call of this step still ringing there would be taken for one of its own.
    Returns the channels left at the start of the wait and how long it took."""
    begin = time.monotonic()
    first: dict[str, int] | None = None
    while True:
        left = {site: _channels(lab, site) for site in ("12345", "110")}
        first = left if first is None else first
        if not any(left.values()) or time.monotonic() - begin > 64 * t1_ms / 1000 + 1:
            return {s: n for s, n in first.items() if n}, round(time.monotonic() - begin, 1)
        time.sleep(0.5)


def _channels(lab: Lab, site: str) -> int:
    out = subprocess.run(lab.rx_argv(site, "core show channels count"), capture_output=True, text=True,
                         timeout=10, check=False).stdout
    return channel_count(out) or 0


SIPP_EVENT = re.compile(r"^\d{4}-\d\d-\d\d\t[\d:.]+\t[\d.]+: (.*)$")


def _sipp_errors(workdir: Path) -> dict[str, int]:
    """What SIPp said went wrong in a step (its -trace_err files), as role: message -> count, with call ids and
    long numbers blanked and a received message cut to its first line's request or status and its CSeq: a
    failed step says why."""
    counts: dict[str, int] = {}
    for log in workdir.glob("*_errors.log"):
        key: str | None = None
        for line in [*log.read_text(errors="replace").splitlines(), "\t"]:
            found = SIPP_EVENT.match(line.lstrip("'"))
            if key is not None and (found is not None or line.startswith(("CSeq:", "\t"))):
                if line.startswith("CSeq:"):
                    key += f" ({re.sub(r'[0-9]+ ', '', line)})"  # the transaction the message was for
                counts[key] = counts.get(key, 0) + 1
                key = None
            if found is None:
                continue  # the dumped message that follows an event line
            text = found.group(1).split("\t", 1)[0]  # SIPp sometimes runs two events into one line
            text = re.sub(r"Call-I[dD] '[^']*'", "Call-Id", text)
            text = re.sub(r"(Dead call|for call:) \S+", r"\1 <id>", text)
            text = re.sub(r"(received ')(SIP/2\.0 \d+|\S+).*", r"\1\2'", text)
            text = re.sub(r"[0-9]{4,}", "N", text)[:160]
            key = f"{log.name.split('_')[0]}: {text}"
    return dict(sorted(counts.items(), key=lambda kv: -kv[1])[:8])


STATS = ("SuccessfulCall", "FailedCall", "Retransmissions", "DeadCallMsgs")


def _stats(stat_file: Path) -> dict[str, int]:
    """SIPp's cumulative counts (`STATS`) from the last line of its -trace_stat CSV; 0 for a missing one."""
    try:
        lines = stat_file.read_text().splitlines()
    except OSError:
        lines = []
    if len(lines) < 2:
        return dict.fromkeys(STATS, 0)
    header, last = lines[0].split(";"), lines[-1].split(";")
    return {name: int(last[header.index(f"{name}(C)")]) if f"{name}(C)" in header else 0 for name in STATS}


HEADING = "## Sustained load"
NAMES = {"onekey": "one-key", "bench_baseline": "pure dialplan (baseline)",
         "bench_floor": "baseline + bare FastAGI on each PBX (floor)"}


def summarise(steps: list[dict[str, Any]], command: str, seconds: float, sip_timer_t1: int) -> dict[str, Any]:
    """The report: every step, and per path the highest rate with zero failures below which no step failed."""
    highest: dict[str, float | None] = {}
    for key in dict.fromkeys(s["key"] for s in steps):
        ok_rate = None
        for s in sorted((s for s in steps if s["key"] == key), key=lambda s: s["rate"]):
            if not s["ok"]:
                break
            ok_rate = s["rate"]
        highest[key] = ok_rate
    one, base = highest.get("onekey"), highest.get("bench_baseline")
    return {"command": command, "date": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()), "machine": machine(),
            "seconds_per_step": seconds, "sip_timer_t1": sip_timer_t1, "highest_ok_rate": highest,
            "onekey_share_of_baseline": one / base if one and base else None, "steps": steps}


def section(report: dict[str, Any]) -> str:
    m = report["machine"]
    keys = list(report["highest_ok_rate"])
    rates = sorted({s["rate"] for s in report["steps"]})
    cell: dict[tuple[str, float], str] = {}
    for s in report["steps"]:
        cell[(s["key"], s["rate"])] = _cell(s)
    head = "| rate (transfers/s) | " + " | ".join(NAMES.get(k, k) for k in keys) + " |"
    rows = [f"| {r:g} | " + " | ".join(cell.get((k, r), "—") for k in keys) + " |" for r in rates]
    best = ", ".join(f"{NAMES.get(k, k)} {_rate(v)}" for k, v in report["highest_ok_rate"].items())
    share = report["onekey_share_of_baseline"]
    return f"""{HEADING} (`{report['command']}`, bench/results/load-{report['date']}.json)

SIPp drives whole calls at a fixed rate for {report['seconds_per_step']:g} s per step, the PBXes at SIP T1 =
{report['sip_timer_t1']} ms: a citizen calls 12345, agent 1001 answers and presses the path's key, a 110 agent
answers, the citizen hangs up. The bench's SIPp scenarios answer retransmitted INVITEs and BYEs. A step passes
when every citizen call completed, every call was answered at 110 and (one-key) every ticket reached
signed_for at 110. Each cell: the outcome, the controllers' CPU milliseconds per call (12345 / 110, utime +
stime over the step), how busy the whole machine was while the calls were placed, and all its CPU time
(/proc/stat) per transfer over the whole step, of which the lab's processes (PBXes, Redis, controllers) and
the SIPp roles.
Date {report['date']}; {m['cpu']}, nproc {m['nproc']}, kernel {m['kernel']}, Python {m['python']}, commit
{m['commit']}.

{head}
|{"---|" * (len(keys) + 1)}
{chr(10).join(rows)}

- highest rate with zero failures: {best}
- one-key / baseline: {"n/a" if share is None else f"{share:.0%}"} (target ≥ 90 %)
- what SIPp said about failed calls is in the JSON (`sipp_errors` per step)
"""


def _cell(s: dict[str, Any]) -> str:
    """A step as its table cell: outcome, controllers' ms per call, machine busy and ms per transfer."""
    if s["ok"]:
        text = "ok"
    else:
        why = [f"{s['failed']} failed: {s['citizens_connected']}/{s['calls']} connected",
               f"{s['far_answered']} answered"]
        if "tickets_signed_for_at_110" in s:
            why.append(f"{s['tickets_signed_for_at_110']} signed for")
        if s.get("citizens_hung"):
            why.append("citizen calls hung: SIPp stopped after its timeout")
        text = f"FAIL ({', '.join(why)})"
    busy = (f", machine {s['machine_busy']:.0%} busy, {s['machine_cpu_ms_per_call_step']} ms/transfer"
            f" (lab {s['lab_cpu_ms_per_call']}, SIPp {s['sipp_cpu_ms_per_call']})")
    return f"{text}, {s['cpu_ms_per_call_12345']} / {s['cpu_ms_per_call_110']}{busy}"


def _rate(value: float | None) -> str:
    return "none of the rates tried" if value is None else f"{value:g}/s"


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="linkage bench load")
    parser.add_argument("--rates", default="1,2,4,8")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--keys", default="onekey,bench_baseline", help="which paths to step (comma-separated)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--no-markdown", action="store_true", help="do not update BENCHMARKS.md")
    parser.add_argument("--profile", action="store_true",
                        help="sample both controllers with py-spy during each step (files next to the JSON)")
    parser.add_argument("--sip-t1", type=int, default=SIP_TIMER_T1, metavar="MS",
                        help="SIP T1 of the lab's PBXes (a running lab of another T1 is restarted)")
    args = parser.parse_args()
    lab = Lab(sip_timer_t1=args.sip_t1)
    desc = lab.up(log=lambda m: print(m, file=sys.stderr))
    steps = []
    for rate in [float(r) for r in args.rates.split(",")]:
        for key in args.keys.split(","):
            with tempfile.TemporaryDirectory(prefix="linkage-load-") as tmp:
                r = step(desc, lab, key, rate, args.seconds, Path(tmp), Path(args.out) if args.profile else None)
            print(json.dumps(r), flush=True)
            steps.append(r)
    command = (f"python -m linkage_lab.bench.load --rates {args.rates} --seconds {args.seconds:g} "
               f"--keys {args.keys}" + ("" if args.sip_t1 == SIP_TIMER_T1 else f" --sip-t1 {args.sip_t1}"))
    report = summarise(steps, command, args.seconds, args.sip_t1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"load-{report['date']}.json").write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "steps"}, indent=2))
    if not args.no_markdown:
        replace_section(ROOT / "BENCHMARKS.md", HEADING, section(report))
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
