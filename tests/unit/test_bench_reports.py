"""The load and soak benchmarks' reports and their BENCHMARKS.md sections, from made-up results (no lab)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from linkage_lab.bench import latency, load, screen_pop, soak
from linkage_lab.bench.report import replace_section


def _step(key: str, rate: float, ok: bool, signed: int | None = None) -> dict[str, Any]:
    calls = int(rate * 10)
    step: dict[str, Any] = {"key": key, "rate": rate, "calls": calls, "citizen_exit": 0 if ok else 1,
                            "citizens_connected": calls if ok else calls - 1, "failed": 0 if ok else 3,
                            "agent_exit": 0, "far_answered": calls if ok else calls - 3, "ok": ok,
                            "cpu_ms_per_call_12345": 4.5, "cpu_ms_per_call_110": 3.6, "sipp_errors": {},
                            "machine_busy": 0.97, "machine_cpu_ms_per_call": 24.3,
                            "machine_cpu_ms_per_call_step": 30.1, "lab_cpu_ms_per_call": 20.2,
                            "sipp_cpu_ms_per_call": 8.4}
    if key == "onekey":
        step["tickets_signed_for_at_110"] = calls if signed is None else signed
    return step


def test_the_highest_rate_is_the_last_before_the_first_failure() -> None:
    steps = [_step("onekey", 64, True), _step("bench_baseline", 64, True),
             _step("onekey", 72, False, 715), _step("bench_baseline", 72, True),
             _step("onekey", 80, True), _step("bench_baseline", 80, True),  # a pass after a failure: noise
             _step("bench_floor", 64, False)]
    report = load.summarise(steps, "python -m linkage_lab.bench.load --rates 64,72,80", 10, 500)
    assert report["highest_ok_rate"] == {"onekey": 64, "bench_baseline": 80, "bench_floor": None}
    assert report["onekey_share_of_baseline"] == 0.8
    assert report["machine"]["nproc"] and report["command"].startswith("python -m linkage_lab.bench.load")
    text = load.section(report)
    assert text.startswith(f"{load.HEADING} (`python -m linkage_lab.bench.load --rates 64,72,80`")
    assert report["sip_timer_t1"] == 500 and "SIP T1 =\n500 ms" in text
    busy = "machine 97% busy, 30.1 ms/transfer (lab 20.2, SIPp 8.4)"
    failed = "FAIL (3 failed: 719/720 connected, 717 answered, 715 signed for)"
    assert f"| 72 | {failed}, 4.5 / 3.6, {busy} | ok, 4.5 / 3.6, {busy} | — |" in text
    assert "one-key 64/s, pure dialplan (baseline) 80/s" in text and "none of the rates tried" in text
    assert "one-key / baseline: 80% (target ≥ 90 %)" in text


def _soak(rss_110: list[int]) -> dict[str, Any]:
    samples = [{"t": 30 * (i + 1), "12345": 58000, "110": kb} for i, kb in enumerate(rss_110)]
    step = _step("onekey", 5, True)
    step["calls"], step["tickets_created"], step["tickets_signed_for_at_110"] = 9000, 9000, 9000
    return {"rate": 5.0, "minutes": 30, "step": step, "rss_kb_start": {"12345": 57000, "110": 57000},
            "rss_kb_end": {"12345": 58000, "110": rss_110[-1]}, "lost_tickets": 0, "rss_samples": samples,
            "file": "soak-20261129T120000Z.json"}


def test_soak_memory_is_flat_only_when_the_second_half_barely_grows() -> None:
    growing = soak.summarise(_soak([58000 + 30 * i for i in range(60)]))  # +1.7 MB over 30 min
    assert growing["memory"]["12345"]["flat"] is True and growing["memory"]["110"]["flat"] is False
    assert growing["memory"]["110"]["kb_per_transfer"] == round(30 * 59 / 9000, 3)
    flat = soak.summarise(_soak([58000 + (i % 3) * 40 for i in range(60)]))  # wobbles, does not climb
    assert flat["memory"]["110"]["flat"] is True
    text = soak.section(growing)
    assert text.startswith(f"{soak.HEADING} (`python -m linkage_lab.bench.soak`, bench/results/soak-20261129T120000Z")
    assert "**0 lost**" in text and "| 110 | " in text and "| no |" in text and "Date 20261129T120000Z." in text


def test_a_section_is_replaced_in_place_and_the_rest_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\nlatency\n\n## Sustained load (old)\nold rows\n\n## Notes\nkept\n")
    replace_section(path, load.HEADING, "## Sustained load (new)\nnew rows\n")
    replace_section(path, soak.HEADING, "## Soak (x)\nsoak\n")
    text = path.read_text()
    assert text == "# Benchmarks\nlatency\n\n## Sustained load (new)\nnew rows\n\n## Notes\nkept\n\n## Soak (x)\nsoak\n"


def test_sipp_errors_are_counted_by_what_went_wrong(tmp_path: Path) -> None:
    (tmp_path / "agent_onekey_7640_errors.log").write_text(
        "The following events occurred:\n"
        "2026-11-29\t12:06:12.610879\t1795953972.610879: Aborting call on unexpected message for Call-Id "
        "'240c-a128': while expecting 'ACK' (index 4), received 'INVITE sip:1001@127.0.0.1:15081 SIP/2.0\n"
        "Via: SIP/2.0/UDP 127.0.0.1:15060;rport\nCSeq: 2217 INVITE\n\n"
        "'2026-11-29\t12:06:12.622027\t1795953972.622027: Dead call 240c (aborted at index 4), received 'ACK sip:x\n"
        "2026-11-29\t12:06:13.000001\t1795953973.000001: Aborting call on unexpected message for Call-Id "
        "'99-zz': while expecting 'ACK' (index 4), received 'INVITE sip:1002@127.0.0.1:15082 SIP/2.0\n"
        "2026-11-29\t12:06:14.1\t1795953974.1: Aborting call on an unexpected BYE for call: 5ad-3c\t12:06:14.2\t"
        "1795953974.2: Aborting call on an unexpected BYE for call: 6be-4d\n")
    (tmp_path / "citizen_errors.log").write_text(
        "2026-12-02\t17:27:34.353192\t1796232454.353192: Aborting call on unexpected message for Call-Id "
        "'1-12641@127.0.0.1': while expecting '200' (index 8), received 'SIP/2.0 481 Call/Transaction Does Not "
        "Exist\nVia: SIP/2.0/UDP 127.0.0.1:5192;branch=z9hG4bK-a-1\nCSeq: 2 BYE\nContent-Length: 0\n")
    unexpected = "Aborting call on unexpected message for Call-Id: while expecting"
    assert load._sipp_errors(tmp_path) == {  # a response keeps its status, a dumped message its CSeq's method
        f"agent: {unexpected} 'ACK' (index 4), received 'INVITE' (CSeq: INVITE)": 1,
        f"agent: {unexpected} 'ACK' (index 4), received 'INVITE'": 1,
        "agent: Dead call <id> (aborted at index 4), received 'ACK'": 1,
        "agent: Aborting call on an unexpected BYE for call: <id>": 1,
        f"citizen: {unexpected} '200' (index 8), received 'SIP/2.0 481' (CSeq: BYE)": 1,
    }


def test_the_latency_summary_replaces_only_the_top_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\nold summary\n\n## Sustained load (x)\nrows\n")
    paths = {"p50": 9.6, "p95": 12.3, "p99": 12.7, "ok": 60, "failed": 0}
    stats = {"date": "20261129T132535Z", "n_per_mode": 60, "onekey": paths, "baseline": {**paths, "p50": 3.8},
             "machine": {"cpu": "AMD EPYC", "cores": "2", "kernel": "6", "python": "3.11", "asterisk": "22"},
             "ratio_p50": 2.56, "p99_minus_baseline_ms": 7.7, "ticket_before_ring_share": 1.0}
    latency.write_markdown(stats, path, "make bench BENCH_N=60")
    text = path.read_text()
    assert text.startswith("# Benchmarks\n\nCurrent summary of `make bench BENCH_N=60`") and "old summary" not in text
    assert text.endswith("own.\n\n## Sustained load (x)\nrows\n")
    assert "ratio of medians (one-key / baseline): 2.56" in text


def test_screen_pop_statistics_count_the_unmeasured_as_failed_and_the_section_names_the_goal() -> None:
    latencies: list[float | None] = [float(v) for v in range(1, 21)] + [None]
    s = screen_pop.stats(latencies)
    assert s == {"count": 20, "failed": 1, "p50": 10.5, "p95": 19.0, "max": 20.0}
    assert screen_pop.stats([None])["p95"] is None
    m = {"cpu": "AMD EPYC", "nproc": "2", "kernel": "6.1", "python": "3.11.7", "asterisk": "Asterisk 22",
         "commit": "abc1234"}
    report = {"command": "python -m linkage_lab.bench.screen_pop --n 21", "file": "screen-pop-20261201T120000Z.json",
              "n": 21, "date": "20261201T120000Z", "machine": m, "stats": s}
    text = screen_pop.section(report)
    assert text.startswith(f"{screen_pop.HEADING} (`python -m linkage_lab.bench.screen_pop --n 21`, "
                           "bench/results/screen-pop-20261201T120000Z.json)")
    assert "| 20 | 1 | 10.5 | 19.0 | 20.0 |" in text and "goal p95 ≤ 100 ms: met" in text
    assert "commit abc1234" in text and "Date 20261201T120000Z" in text
    assert "missed" in screen_pop.section({**report, "stats": {**s, "p95": 140.0}})
