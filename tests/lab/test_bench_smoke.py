"""A quick smoke of the benchmark code (one transfer per path); no timing is asserted."""

from __future__ import annotations

import csv
import json
import re
import urllib.request
from pathlib import Path
from typing import Any

from linkage_lab.bench.latency import run, write_markdown


def _floor_agis(site: dict[str, Any]) -> float:
    req = urllib.request.Request(f"{site['http']}/metrics", headers={"Authorization": f"Bearer {site['token']}"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        text = resp.read().decode()
    found = re.search(r'^linkage_agi_requests_total\{script="bench_floor"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_bench_runs_and_writes_its_files(desc: dict[str, Any], tmp_path: Path) -> None:
    before = [_floor_agis(desc["sites"][s]) for s in ("12345", "110")]
    stats = run(1, tmp_path)
    after = [_floor_agis(desc["sites"][s]) for s in ("12345", "110")]
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1]  # the floor's one FastAGI on each PBX
    for mode in ("onekey", "baseline", "floor"):  # floor: the baseline plus a bare FastAGI on each PBX
        assert stats[mode]["ok"] == 1 and stats[mode]["p50"] > 0, stats
    assert stats["floor_ratio_p50"] > 0
    rows = list(csv.DictReader(next(tmp_path.glob("latency-*.csv")).open()))
    assert {r["mode"] for r in rows} == {"onekey", "baseline", "floor"}
    assert json.loads(next(tmp_path.glob("latency-*.json")).read_text())["n_per_mode"] == 1
    assert next(tmp_path.glob("latency-*.png")).stat().st_size > 1000
    write_markdown(stats, tmp_path / "BENCHMARKS.md", "make bench BENCH_N=1")
    text = (tmp_path / "BENCHMARKS.md").read_text()
    assert "make bench BENCH_N=1" in text and "ratio of medians" in text and "(floor)" in text


def test_the_return_bench_measures_a_real_return() -> None:
    """One real return: both latencies measured from Asterisk's event times, and no trunk channel held."""
    from linkage_lab.bench.returns import run as run_returns

    rows, failures = run_returns(1)
    assert failures == [], failures
    [row] = rows
    assert row["return_ms"] > 0 and row["transfer_ms"] > 0, row
    assert row["trunks_held"] == 0, row
