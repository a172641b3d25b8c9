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

from telephony.bench.load import ROOT, _cpu_and_rss, step
from telephony.lab.lab import Lab


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="linkage bench soak")
    parser.add_argument("--rate", type=float, default=5.0)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    desc = Lab().up(log=lambda m: None)
    pids = {p.name.removeprefix("controller-"): p.pid for p in Lab()._state() if p.name.startswith("controller-")}
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
        result = step(desc, "onekey", args.rate, args.minutes * 60, Path(tmp))
    done.set()
    sampler.join()
    end_rss = {n: _cpu_and_rss(pid)[1] for n, pid in pids.items()}
    report = {"rate": args.rate, "minutes": args.minutes, "step": result, "rss_kb_start": start_rss,
              "rss_kb_end": end_rss, "lost_tickets": result.get("tickets_created", 0)
              - result.get("tickets_signed_for_at_110", 0), "rss_samples": samples}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"soak-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json").write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "rss_samples"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
