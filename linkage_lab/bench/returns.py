"""退回 latency and the trunk legs a return leaves held.

Real returns (tests/scenarios/return_by_key.yaml) one after another: 12345 transfers with the one-key code, the
110 agent presses the same key toward 12345, and the 12345 controller takes its caller back to the agent who
sent it. Measured from Asterisk's own event times (`Timestamp`, one wall clock for both PBXes of the lab):

- return: from the 110 agent's key (DTMFEnd of its last digit on the 110 PBX) to the caller's phone call back
  ringing at the sending agent (DialBegin to PJSIP/agent1001 on the 12345 PBX);
- baseline, in the same runs: from the 12345 agent's key (DTMFEnd) to the far agent's phone ringing (DialBegin to
  PJSIP/agent2001 on the 110 PBX), the one-key transfer the return undoes;
- trunk channels held after the return: trunk channels of the call still up on both PBXes when the caller is
  bridged to the 12345 agent again (Newchannel minus Hangup of PJSIP/trunk-*). Goal 0: no hairpin.
"""

from __future__ import annotations

import copy
import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from linkage_lab.bench.latency import machine
from linkage_lab.bench.report import replace_section
from linkage_lab.harness.runner import Result, run_scenario
from linkage_lab.harness.scenario import load
from linkage_lab.lab.lab import Lab

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "tests" / "scenarios" / "return_by_key.yaml"
HEADING = "## Return (退回)"


def _first(events: list[tuple[float, dict[str, str]]], after: float, **match: str) -> float | None:
    return next((at for at, e in events if at >= after and all(
        e.get(k, "").startswith(v[:-1]) if v.endswith("*") else e.get(k) == v for k, v in match.items())), None)


def measure(result: Result) -> dict[str, Any]:
    """The return's and the transfer's latency (ms) and the trunk channels held after the return, from one run."""
    near, far = result.ami.get("12345", []), result.ami.get("110", [])
    pressed = _first(near, 0, Event="DTMFEnd", Channel="PJSIP/agent1001-*", Digit="8")
    rang = _first(far, pressed or 0, Event="DialBegin", DestChannel="PJSIP/agent2001-*") if pressed else None
    returned = _first(far, rang or 0, Event="DTMFEnd", Channel="PJSIP/agent2001-*", Digit="8") if rang else None
    back = _first(near, returned or 0, Event="DialBegin", DestChannel="PJSIP/agent1001-*") if returned else None
    bridged = _first(near, back or 0, Event="BridgeEnter", Channel="PJSIP/agent1001-*") if back else None
    held = None
    if bridged is not None:
        held = 0
        for events in (near, far):
            up: set[str] = set()
            for at, e in events:
                if at > bridged:
                    break
                channel = e.get("Channel", "")
                if channel.startswith("PJSIP/trunk-"):
                    if e.get("Event") == "Newchannel":
                        up.add(channel)
                    elif e.get("Event") == "Hangup":
                        up.discard(channel)
            held += len(up)
    return {"return_ms": None if back is None or returned is None else 1000 * (back - returned),
            "transfer_ms": None if rang is None or pressed is None else 1000 * (rang - pressed),
            "trunks_held": held}


def _median(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def run(n: int) -> tuple[list[dict[str, Any]], list[str]]:
    lab = Lab()
    desc = lab.up(log=lambda m: None)
    scenario = load(SCENARIO)
    rows, failures = [], []
    with ThreadPoolExecutor(max_workers=1) as pool:
        for i in range(n):
            result = pool.submit(run_scenario, copy.deepcopy(scenario), desc, lab).result(timeout=120)
            if not result.ok:
                failures.append(f"return {i}: {'; '.join(result.failures)[:300]}")
                rows.append({"return_ms": None, "transfer_ms": None, "trunks_held": None})
                continue
            rows.append(measure(result))
    return rows, failures


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1f}"


def section(report: dict[str, Any]) -> str:
    s, m = report["stats"], report["machine"]
    held = s["trunks_held_max"]
    ratio = "n/a" if not (s["return_p50"] and s["transfer_p50"]) else f"{s['return_p50'] / s['transfer_p50']:.2f}"
    return f"""{HEADING} (`{report['command']}`, bench/results/{report['file']})

{report['n']} real returns by the key (`tests/scenarios/return_by_key.yaml`), one after another, Asterisk's own
event times. Return: the 110 agent's key (DTMFEnd) to the caller ringing back at the 12345 agent who sent it
(DialBegin); baseline in the same runs: the 12345 agent's key to the 110 agent's phone ringing (the transfer the
return undoes). Date {report['date']}; {m['cpu']}, nproc {m['nproc']}, kernel {m['kernel']}, Python {m['python']},
{m.get('asterisk', '')}, commit {m['commit']}.

| returns measured | failed | return p50 ms | transfer p50 ms | return / transfer | trunks held after (max) |
|---|---|---|---|---|---|
| {s['count']} | {s['failed']} | {_fmt(s['return_p50'])} | {_fmt(s['transfer_p50'])} | {ratio} | {held} |

- goal for trunk channels held after a return: 0 (the sending PBX takes its own caller back; nothing hairpins)
- the return crosses one push (110 → 12345) and two AMI actions (Setvar, Redirect) on the sending side
"""


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m linkage_lab.bench.returns")
    parser.add_argument("--n", type=int, default=30, help="returns")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    t0 = time.monotonic()
    rows, failures = run(args.n)
    held = [r["trunks_held"] for r in rows if r["trunks_held"] is not None]
    stats = {"count": sum(1 for r in rows if r["return_ms"] is not None),
             "failed": sum(1 for r in rows if r["return_ms"] is None),
             "return_p50": _median([r["return_ms"] for r in rows]),
             "transfer_p50": _median([r["transfer_ms"] for r in rows]),
             "trunks_held_max": max(held) if held else "n/a"}
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "date": stamp, "command": f"python -m linkage_lab.bench.returns --n {args.n}", "n": args.n,
        "file": f"returns-{stamp}.json", "machine": machine(), "stats": stats, "runs": rows, "failures": failures,
        "wall_seconds": round(time.monotonic() - t0, 1)}
    (out / report["file"]).write_text(json.dumps(report, indent=2, ensure_ascii=False))
    print(json.dumps(stats, indent=2))
    replace_section(ROOT / "BENCHMARKS.md", HEADING, section(report))
    return 0 if not failures else 1


if __name__ == "__main__":
    raise SystemExit(main())
