"""Soak: one long load step (default 30 min at 5 transfers/s: five times the peak hour of a big city's whole
12345 volume if every call were transferred, far above real transfer volumes; see BENCHMARKS.md) with the
controllers' memory sampled every 30 s; reports memory growth and lost tickets (created at 12345 but not signed
for at 110)."""

from __future__ import annotations

import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from linkage_lab.bench.load import ROOT, SIP_TIMER_T1, _cpu_and_rss, step
from linkage_lab.bench.report import machine, replace_section
from linkage_lab.lab.lab import Lab

HEADING = "## Soak"
FLAT = 0.01  # growth over the second half of the run, as a share of RSS, below which memory counts as flat


def summarise(report: dict[str, Any]) -> dict[str, Any]:
    """Adds the memory verdict per controller: growth over the whole run and over its second half (the first
    minutes warm caches and pools up), absolute and per transfer."""
    samples = report["rss_samples"]
    transfers = report["step"]["calls"]
    memory: dict[str, Any] = {}
    for site in report["rss_kb_start"]:
        series = [(s["t"], s[site]) for s in samples if site in s]
        if len(series) < 2:
            continue
        first, last = series[0][1], series[-1][1]
        half = next(kb for t, kb in series if t >= series[-1][0] / 2)
        memory[site] = {"rss_mb_first_sample": round(first / 1024, 2), "rss_mb_half": round(half / 1024, 2),
                        "rss_mb_last_sample": round(last / 1024, 2),
                        "growth_mb": round((last - first) / 1024, 2),
                        "second_half_growth_mb": round((last - half) / 1024, 2),
                        "kb_per_transfer": round((last - first) / transfers, 3) if transfers else None,
                        "flat": (last - half) <= FLAT * half}
    return {**report, "memory": memory}


def section(report: dict[str, Any]) -> str:
    step = report["step"]
    m = report.get("machine", {})
    rows = [f"| {site} | {v['rss_mb_first_sample']} | {v['rss_mb_half']} | {v['rss_mb_last_sample']} | "
            f"{v['growth_mb']:+} | {v['second_half_growth_mb']:+} | {v['kb_per_transfer']} | "
            f"{'yes' if v['flat'] else 'no'} |" for site, v in report["memory"].items()]
    date = report.get("date") or report["file"].removeprefix("soak-").removesuffix(".json")
    machine_line = (f"; {m['cpu']}, nproc {m['nproc']}, kernel {m['kernel']}, Python {m['python']}, commit "
                    f"{m['commit']}" if m else "")
    return f"""{HEADING} (`{report.get('command', 'python -m linkage_lab.bench.soak')}`, bench/results/{report['file']})

{report['minutes']:g} minutes at {report['rate']:g} transfers/s (five times a big city's peak hour if every 12345 call
were transferred: up to 30,000 calls a day, 12 % of them in the peak hour, is 1/s). Date {date}{machine_line}.

- transfers {step['calls']}, tickets created at 12345 {step.get('tickets_created')}, signed for at 110 \
  {step.get('tickets_signed_for_at_110')}: **{report['lost_tickets']} lost**; every SIPp call completed: \
  {'yes' if step['ok'] else 'no'}
- controllers' CPU per transfer: 12345 {step['cpu_ms_per_call_12345']} ms, 110 {step['cpu_ms_per_call_110']} ms
  (at this low rate it includes their idle work)

Memory (RSS sampled every 30 s; flat = grew at most {FLAT:.0%} over the second half):

| controller | first sample MB | half-way MB | last sample MB | growth MB | second half MB | KB per transfer | flat |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}
"""


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="linkage bench soak")
    parser.add_argument("--rate", type=float, default=5.0)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--no-markdown", action="store_true", help="do not update BENCHMARKS.md")
    parser.add_argument("--markdown-from", metavar="JSON", help="only write BENCHMARKS.md's section from a "
                        "soak report already written (no lab)")
    args = parser.parse_args()
    if args.markdown_from:
        path = Path(args.markdown_from)
        report = summarise({**json.loads(path.read_text()), "file": path.name})
        replace_section(ROOT / "BENCHMARKS.md", HEADING, section(report))
        return 0
    lab = Lab(sip_timer_t1=SIP_TIMER_T1)  # the load bench's PBXes and scenarios, held for longer
    desc = lab.up(log=lambda m: None)
    pids = {p.name.removeprefix("controller-"): p.pid for p in lab._state() if p.name.startswith("controller-")}
    samples: list[dict[str, Any]] = []
    done = threading.Event()

    def sample() -> None:
        t0 = time.time()
        while not done.wait(30):
            samples.append({"t": round(time.time() - t0), **{n: _cpu_and_rss(pid)[1] for n, pid in pids.items()}})

    sampler = threading.Thread(target=sample, daemon=True)
    start_rss = {n: _cpu_and_rss(pid)[1] for n, pid in pids.items()}
    sampler.start()
    with tempfile.TemporaryDirectory(prefix="linkage-soak-") as tmp:
        result = step(desc, lab, "onekey", args.rate, args.minutes * 60, Path(tmp))
    done.set()
    sampler.join()
    end_rss = {n: _cpu_and_rss(pid)[1] for n, pid in pids.items()}
    date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    report = summarise({
        "command": f"python -m linkage_lab.bench.soak --rate {args.rate:g} --minutes {args.minutes:g}",
        "date": date, "machine": machine(), "file": f"soak-{date}.json", "rate": args.rate,
        "minutes": args.minutes, "step": result, "rss_kb_start": start_rss, "rss_kb_end": end_rss,
        "lost_tickets": result.get("tickets_created", 0) - result.get("tickets_signed_for_at_110", 0),
        "rss_samples": samples})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / report["file"]).write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "rss_samples"}, indent=2))
    if not args.no_markdown:
        replace_section(ROOT / "BENCHMARKS.md", HEADING, section(report))
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
