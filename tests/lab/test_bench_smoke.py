"""A quick smoke of the benchmark code (one transfer per path); no timing is asserted."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from telephony.bench.latency import run, write_markdown


def test_bench_runs_and_writes_its_files(desc: dict[str, Any], tmp_path: Path) -> None:
    stats = run(1, tmp_path)
    assert stats["onekey"]["ok"] == 1 and stats["baseline"]["ok"] == 1
    assert stats["onekey"]["p50"] > 0 and stats["baseline"]["p50"] > 0
    rows = list(csv.DictReader(next(tmp_path.glob("latency-*.csv")).open()))
    assert {r["mode"] for r in rows} == {"onekey", "baseline"}
    assert json.loads(next(tmp_path.glob("latency-*.json")).read_text())["n_per_mode"] == 1
    assert next(tmp_path.glob("latency-*.png")).stat().st_size > 1000
    write_markdown(stats, tmp_path / "BENCHMARKS.md", "make bench BENCH_N=1")
    text = (tmp_path / "BENCHMARKS.md").read_text()
    assert "make bench BENCH_N=1" in text and "ratio of medians" in text
