"""Transfer latency: the one-key transfer against a pure-dialplan blind transfer of the same call path (no AGI,
no ticket, no controller on either PBX), interleaved in one run on the same lab, with a third path between them:
that blind transfer plus one bare FastAGI round trip on each PBX (the floor under any FastAGI-driven transfer).

Measured from the agent's last DTMF end packet to the INVITE arriving at the far agent. For the one-key path it
also records whether the far controller held the ticket before that INVITE (its `delivered` time)."""

from __future__ import annotations

import copy
import csv
import json
import os
import statistics
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from linkage_lab.bench.capture import TransferCapture
from linkage_lab.bench.report import machine as site_machine
from linkage_lab.bench.report import replace_section
from linkage_lab.harness.runner import MEDIA_BASE, run_scenario
from linkage_lab.harness.scenario import Role, Scenario
from linkage_lab.lab.lab import Lab

ROOT = Path(__file__).resolve().parents[2]
SIPP = ROOT / "tests" / "scenarios" / "sipp"


@dataclass
class Sample:
    mode: str
    index: int
    latency_ms: float | None
    ticket_before_ring: bool | None
    failure: str = ""  # why a transfer has no latency: the scenario's failures, or what the capture missed
    near_ms: float | None = None  # of latency_ms: the DTMF end to the trunk INVITE at the far PBX (the sending PBX)


# The paths measured, interleaved: the product, the dialplan alone, and the dialplan plus one bare FastAGI round
# trip on each PBX (the floor under any FastAGI-driven transfer; the lab describes its key as bench_floor).
KEYS = ("onekey", "bench_baseline", "bench_floor")
MODES = {"onekey": "onekey", "bench_baseline": "baseline", "bench_floor": "floor"}


def _scenario(key: str) -> Scenario:
    roles = [
        Role("agent-110", "110", "agents[0]", SIPP / "agent_answer.xml", {"ring": "100"}, None, False),
        Role("agent-12345", "12345", "agents[0]", SIPP / "agent_onekey.xml", {"talk": "400"}, key, False),
        Role("citizen", "12345", "citizen", SIPP / "citizen_call.xml", {"caller": "13900000000", "hold": "1600"},
             None, True),
    ]
    return Scenario(f"bench-{key}", "", ROOT, 20, 0.5, roles, watch_ami=False)


def _delivered_at(site: dict[str, Any], ticket_id: str) -> float | None:
    req = urllib.request.Request(f"{site['http']}/v1/tickets/{ticket_id}",
                                 headers={"Authorization": f"Bearer {site['token']}"})
    with urllib.request.urlopen(req, timeout=3) as resp:
        ticket = json.loads(resp.read())
    at = next((e["at"] for e in ticket["history"] if e["type"] == "delivered"), None)
    return datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp() if at else None


def run(n: int, out_dir: Path) -> dict[str, Any]:
    lab = Lab()
    desc = lab.up(log=lambda m: None)
    capture = TransferCapture(MEDIA_BASE + 4 * 1, desc["sites"]["110"]["accounts"]["agents"][0]["port"],
                              desc["sites"]["110"]["sip"]["port"])
    capture.start()
    samples: list[Sample] = []
    try:
        for i in range(n):
            keys = [k for k in KEYS if k in desc["sites"]["12345"]["keys"]]
            for key in keys[i % len(keys):] + keys[:i % len(keys)]:  # each path first in turn
                capture.reset()
                result = run_scenario(copy.deepcopy(_scenario(key)), desc)
                marks = capture.marks
                latency = near = None
                if result.ok and marks.dtmf_end and marks.invites:
                    last = marks.dtmf_end[-1]
                    after = [t for t in marks.invites if t >= last]
                    latency = (after[0] - last) * 1000 if after else None
                    trunk = [t for t in marks.trunk_invites if t >= last]
                    near = (trunk[0] - last) * 1000 if trunk and latency is not None else None
                before = None
                if key == "onekey" and result.tickets.get("12345") and marks.invites:
                    delivered = _delivered_at(desc["sites"]["110"], result.tickets["12345"][0]["id"])
                    before = delivered is not None and delivered <= marks.invites[-1]
                failure = "; ".join(result.failures)[:300] if not result.ok else "" if latency is not None \
                    else f"capture: {len(marks.dtmf_end)} DTMF ends, {len(marks.invites)} INVITEs"
                samples.append(Sample(MODES[key], i, latency, before, failure, near))
    finally:
        capture.stop()
    return summarise(samples, out_dir, n)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def summarise(samples: list[Sample], out_dir: Path, n: int) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    with open(out_dir / f"latency-{stamp}.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["mode", "index", "latency_ms", "ticket_before_ring", "failure", "near_ms"])
        for s in samples:
            w.writerow([s.mode, s.index, "" if s.latency_ms is None else f"{s.latency_ms:.3f}",
                        "" if s.ticket_before_ring is None else int(s.ticket_before_ring), s.failure,
                        "" if s.near_ms is None else f"{s.near_ms:.3f}"])
    stats: dict[str, Any] = {"date": stamp, "n_per_mode": n, "machine": machine()}
    for mode in ("onekey", "baseline", "floor"):
        if mode == "floor" and not any(s.mode == mode for s in samples):
            continue
        vals = [s.latency_ms for s in samples if s.mode == mode and s.latency_ms is not None]
        near = [s.near_ms for s in samples if s.mode == mode and s.near_ms is not None]
        far = [s.latency_ms - s.near_ms for s in samples
               if s.mode == mode and s.near_ms is not None and s.latency_ms is not None]
        stats[mode] = {"ok": len(vals), "failed": sum(1 for s in samples if s.mode == mode) - len(vals),
                       "p50": statistics.median(vals) if vals else None, "p95": _pct(vals, 0.95) if vals else None,
                       "p99": _pct(vals, 0.99) if vals else None,
                       # the two PBXes' parts: DTMF end -> trunk INVITE at the far PBX, and from there -> the far
                       # agent's INVITE (medians of each part; they need not add up to the whole's median)
                       "near_p50": statistics.median(near) if near else None,
                       "far_p50": statistics.median(far) if far else None}
    one, base = stats["onekey"], stats["baseline"]
    if one["p50"] and base["p50"]:
        stats["ratio_p50"] = one["p50"] / base["p50"]
        stats["p99_minus_baseline_ms"] = one["p99"] - base["p99"]
    floor = stats.get("floor")
    if floor and floor["p50"] and base["p50"]:
        stats["floor_ratio_p50"] = floor["p50"] / base["p50"]
    flags = [s.ticket_before_ring for s in samples if s.mode == "onekey" and s.ticket_before_ring is not None]
    stats["ticket_before_ring_share"] = sum(flags) / len(flags) if flags else None
    _plot(samples, out_dir / f"latency-{stamp}.png")
    (out_dir / f"latency-{stamp}.json").write_text(json.dumps(stats, indent=2))
    return stats


def machine() -> dict[str, str]:
    asterisk = subprocess.run(["chroot", str(Lab().rootfs), "/usr/sbin/asterisk", "-V"], capture_output=True,
                              text=True, check=False).stdout.strip()
    return {**site_machine(), "cores": str(os.cpu_count() or 0), "asterisk": asterisk}


def _plot(samples: list[Sample], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    for mode, colour in (("baseline", "tab:gray"), ("floor", "tab:orange"), ("onekey", "tab:blue")):
        vals = sorted(s.latency_ms for s in samples if s.mode == mode and s.latency_ms is not None)
        if vals:
            ax.plot(vals, [(i + 1) / len(vals) for i in range(len(vals))], label=mode, color=colour)
    ax.set_xlabel("last DTMF digit -> INVITE at the far agent (ms)")
    ax.set_ylabel("share of transfers")
    ax.set_title("One-key transfer vs pure-dialplan blind transfer (same lab, interleaved)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="linkage bench")
    parser.add_argument("--n", type=int, default=30, help="transfers per mode")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    t0 = time.monotonic()
    stats = run(args.n, Path(args.out))
    stats["wall_seconds"] = round(time.monotonic() - t0, 1)
    print(json.dumps(stats, indent=2))
    write_markdown(stats, ROOT / "BENCHMARKS.md", f"make bench BENCH_N={args.n}")
    return 0


HEADING = "# Benchmarks"  # this benchmark's section is the top of BENCHMARKS.md, up to the first `## `


def _fmt(v: Any) -> str:
    return "n/a" if v is None else f"{v:.1f}" if isinstance(v, float) else str(v)


def _row(name: str, s: dict[str, Any]) -> str:
    return f"| {name} | {s['ok']} | {s['failed']} | {_fmt(s['p50'])} | {_fmt(s['p95'])} | {_fmt(s['p99'])} |"


def write_markdown(stats: dict[str, Any], path: Path, command: str) -> None:
    one, base = stats["onekey"], stats["baseline"]
    m = stats["machine"]
    ratio = stats.get("ratio_p50")
    floor = stats.get("floor_ratio_p50")
    share = stats.get("ticket_before_ring_share")
    text = f"""{HEADING}

Current summary of `{command}` (the full series is in `bench/results/`, one CSV, JSON and PNG per run).

- date: {stats['date']}; machine: {m['cpu']}, {m['cores']} cores, kernel {m['kernel']}, Python {m['python']},
  {m['asterisk']}; wall time {stats.get('wall_seconds', 'n/a')} s
- measured: from the agent's last DTMF end packet (RFC 4733) to the INVITE arriving at the far agent, captured on
  `lo` by one listener (each packet stamped with the kernel's receive time); one-key transfer (prepared: the
  ticket reserved at bridge time, the key pure dialplan — UserEvent, BlindTransfer; the AstDB record of the press
  written as the agent's leg ends — the ticket
  made from the event and pushed, trunk with ticket headers, the far PBX ringing its agent once the far
  controller holds the ticket: by the route it published, or by route_in over FastAGI) against a
  pure-dialplan blind transfer of the same call path (no AGI, no ticket, no controller on either PBX),
  interleaved in one run, {stats['n_per_mode']} transfers each

| path | transfers ok | failed | p50 ms | p95 ms | p99 ms |
|---|---|---|---|---|---|
{_row("one-key", one)}
{_row("pure dialplan (baseline)", base)}
{_row("baseline + bare FastAGI on each PBX (floor)", stats["floor"]) if stats.get("floor") else ""}

- where it goes (medians, ms): sending PBX (DTMF end → trunk INVITE at the far PBX) one-key
  {_fmt(one.get('near_p50'))}, baseline {_fmt(base.get('near_p50'))}; far PBX (→ the far agent's INVITE) one-key
  {_fmt(one.get('far_p50'))}, baseline {_fmt(base.get('far_p50'))}
- ratio of medians (one-key / baseline): {_fmt(ratio) if ratio is None else f'{ratio:.2f}'} (target ≤ 1.15)
- ratio of medians (floor / baseline): {_fmt(floor) if floor is None else f'{floor:.2f}'}: the same blind transfer
  with one FastAGI round trip (connect, the channel's variables, one SET VARIABLE, close) on each PBX and no
  controller work at all; no FastAGI-driven transfer can be faster than this floor
- p99 one-key minus p99 baseline: {_fmt(stats.get('p99_minus_baseline_ms'))} ms (target ≤ 5 ms)
- far controller held the ticket (the push verified; its `delivered` time) before the far agent's INVITE:
  {'n/a' if share is None else f'{share:.0%}'} of one-key transfers (target ≥ 99 %)

The machines are shared and noisy: compare ratios and medians, not single values. The other benchmarks' sections
follow; each run of a benchmark replaces only its own.
"""
    replace_section(path, HEADING, text)


if __name__ == "__main__":
    raise SystemExit(main())
