"""Scope advice (智能转办): quality on the held-out part of the corpus (never trained on) and answer time.

Quality: accuracy and macro-F1 over 110 / 12345 / other, the confusion matrix, the recall of danger cases to
110 and the count of danger cases advised to 12345 (goal 0), the hard near-misses apart; the training part's
figures beside them, to show how much is memorised. Time: the service in-process (cache cleared before each
answer), the ticket's record on the key-press path, the longest content allowed, and the HTTP round trip to the
real 12345 controller of the lab (keep-alive, agent's token) against GET /v1/health on the same connection in
the same run (the floor of any HTTP answer). Goals: macro-F1 ≥ 0.90, danger to 12345 = 0, p95 ≤ 20 ms."""

from __future__ import annotations

import http.client
import json
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from linkage_lab.bench.report import machine, replace_section
from linkage_lab.lab.lab import Lab
from telephony.advice.services import AdviceService
from telephony.advice.train import Sentence, corpus

ROOT = Path(__file__).resolve().parents[2]
HEADING = "## Scope advice (智能转办)"
LABELS = ("110", "12345", "other")
GOAL_F1, GOAL_P95_MS = 0.90, 20.0
PACE = 0.01  # s between questions: within the API's rate limit per caller (200/s), as a typing agent is
LONGEST = ("来电人称听到邻居家有人呼救并有打斗声，请求警方处置。" * 200)[:5000]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def timing(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50": round(statistics.median(values), 3), "p95": round(_pct(values, 0.95), 3),
            "max": round(max(values), 3)}


def quality(advisor: AdviceService, sentences: list[Sentence]) -> dict[str, Any]:
    matrix = {t: dict.fromkeys(LABELS, 0) for t in LABELS}
    danger_total = danger_110 = danger_12345 = near_total = near_right = 0
    wrong = []
    for s in sentences:
        got = advisor.advise(s.text).platform
        matrix[s.platform][got] += 1
        if s.danger:
            danger_total += 1
            danger_110 += got == "110"
            danger_12345 += got == "12345"
        if s.tag != "-":
            near_total += 1
            near_right += got == s.platform
        if got != s.platform:
            wrong.append({"text": s.text, "want": s.platform, "got": got})
    per = {}
    for label in LABELS:
        tp = matrix[label][label]
        fp = sum(matrix[t][label] for t in LABELS if t != label)
        fn = sum(matrix[label][g] for g in LABELS if g != label)
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        per[label] = {"precision": round(p, 3), "recall": round(r, 3),
                      "f1": round(2 * p * r / (p + r) if p + r else 0.0, 3), "n": tp + fn}
    return {"n": len(sentences), "accuracy": round(sum(matrix[t][t] for t in LABELS) / len(sentences), 3),
            "macro_f1": round(sum(v["f1"] for v in per.values()) / len(LABELS), 3), "per_class": per,
            "matrix": matrix, "danger": {"n": danger_total, "to_110": danger_110, "to_12345": danger_12345,
                                         "recall_110": round(danger_110 / danger_total, 3) if danger_total else None},
            "near_misses": {"n": near_total, "right": near_right}, "wrong": wrong}


def in_process(advisor: AdviceService, texts: list[str], rounds: int) -> dict[str, Any]:
    answer, record = [], []
    for _ in range(rounds):
        for text in texts:
            advisor.cache.clear()
            t0 = time.perf_counter()
            advisor.advise(text)
            answer.append((time.perf_counter() - t0) * 1000)
            advisor.cache.clear()
            t0 = time.perf_counter()
            advisor.record(text, "", "110", "transfer")  # what the key press pays when the draft was not saved
            record.append((time.perf_counter() - t0) * 1000)
    cached = []
    for text in texts:
        advisor.advise(text)
        t0 = time.perf_counter()
        advisor.record(text, "", "110", "transfer")
        cached.append((time.perf_counter() - t0) * 1000)
    longest = []
    for _ in range(20):
        advisor.cache.clear()
        t0 = time.perf_counter()
        advisor.advise(LONGEST)
        longest.append((time.perf_counter() - t0) * 1000)
    return {"answer_ms": timing(answer), "key_press_record_ms": timing(record),
            "key_press_record_after_draft_save_ms": timing(cached), "longest_content_ms": timing(longest)}


def over_http(desc: dict[str, Any], texts: list[str], rounds: int) -> dict[str, Any]:
    site = desc["sites"]["12345"]
    url = urlsplit(site["http"])
    token = site["accounts"]["agents"][0]["token"]
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=5)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    advice, health = [], []
    try:
        for n in range(rounds):
            for i, text in enumerate(texts):
                # a fresh text each time (the service caches recent answers): the round number makes it new
                body = json.dumps({"content": f"{text}（{n}-{i}）"}, ensure_ascii=False).encode()
                t0 = time.perf_counter()
                conn.request("POST", "/v1/advice", body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                advice.append((time.perf_counter() - t0) * 1000)
                if resp.status != 200:
                    raise RuntimeError(f"advice answered {resp.status}")
                t0 = time.perf_counter()
                conn.request("GET", "/v1/health")
                conn.getresponse().read()
                health.append((time.perf_counter() - t0) * 1000)
                time.sleep(PACE)
    finally:
        conn.close()
    return {"advice_ms": timing(advice), "health_ms": timing(health)}


def _matrix(q: dict[str, Any]) -> str:
    rows = [f"| {t} | " + " | ".join(str(q["matrix"][t][g]) for g in LABELS) + " |" for t in LABELS]
    return "| labelled \\ advised | 110 | 12345 | other |\n|---|---|---|---|\n" + "\n".join(rows)


def _part(name: str, q: dict[str, Any]) -> str:
    d, near = q["danger"], q["near_misses"]
    return (f"| {name} | {q['n']} | {q['accuracy']:.3f} | {q['macro_f1']:.3f} | {d['n']} | {d['to_110']} | "
            f"{d['to_12345']} | {near['right']}/{near['n']} |")


def _time(name: str, t: dict[str, Any]) -> str:
    return f"| {name} | {t['n']} | {t['p50']} | {t['p95']} | {t['max']} |"


def section(r: dict[str, Any]) -> str:
    h, t, q, m = r["held_out"], r["training"], r["in_process"], r["machine"]
    web = r["http"]
    verdict_f1 = "met" if h["macro_f1"] >= GOAL_F1 else "missed"
    verdict_p95 = "met" if web["advice_ms"]["p95"] <= GOAL_P95_MS else "missed"
    verdict_danger = "met" if h["danger"]["to_12345"] == 0 else "missed"
    per = ", ".join(f"{k} {v['f1']:.3f} (n {v['n']})" for k, v in h["per_class"].items())
    times = "\n".join([
        _time("POST /v1/advice, HTTP round trip to the real 12345 controller", web["advice_ms"]),
        _time("GET /v1/health on the same connection (baseline)", web["health_ms"]),
        _time("in-process advise (cache cleared)", q["answer_ms"]),
        _time("key press: the ticket's record, draft not saved before", q["key_press_record_ms"]),
        _time("key press: the ticket's record after the draft's save", q["key_press_record_after_draft_save_ms"]),
        _time("in-process, the longest content (5000 characters)", q["longest_content_ms"])])
    return f"""{HEADING} (`{r['command']}`, bench/results/{r['file']})

Held-out part of the corpus (telephony/advice/corpus.txt, sentences whose SHA-256 starts below 52/256, never
trained on; model {r['model']}, catalogue {r['catalogue']}). Date {r['date']}; {m['cpu']}, nproc {m['nproc']},
Python {m['python']}, commit {m['commit']}.

| part | sentences | accuracy | macro-F1 | danger cases | danger → 110 | danger → 12345 | near-misses right |
|---|---|---|---|---|---|---|---|
{_part("held out", h)}
{_part("trained on", t)}

Held out, F1 per class: {per}.

{_matrix(h)}

| answer time (ms) | n | p50 | p95 | max |
|---|---|---|---|---|
{times}

- goal macro-F1 ≥ {GOAL_F1:.2f} on the held-out part: {verdict_f1}; goal danger → 12345 = 0: {verdict_danger};
  goal p95 ≤ {GOAL_P95_MS:.0f} ms (HTTP round trip): {verdict_p95}
- against published figures (85–93 % for fastText and BERT-family classifiers on 12345 complaint texts): ours
  is in or above that band, but on a different task and data — three platforms instead of dozens of
  departments, and a corpus of {h['n'] + t['n']} sentences the project wrote itself, short and clean, whose
  held-out part resembles its training part more than real calls would. The danger lexicon and the
  hyper-parameters were written and chosen with the whole corpus in view, so the held-out danger recall is not
  an unbiased estimate for new text. Treat these figures as a regression check, not as field accuracy; a
  sample of real, labelled call texts is what would measure that.
"""


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m linkage_lab.bench.advice")
    parser.add_argument("--rounds", type=int, default=5, help="passes over the held-out sentences for timing")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    sentences = corpus()
    held = [s for s in sentences if s.held_out]
    advisor = AdviceService.build()
    report: dict[str, Any] = {"command": f"python -m linkage_lab.bench.advice --rounds {args.rounds}",
                              "model": advisor.model.version, "catalogue": advisor.catalogue.version,
                              "held_out": quality(advisor, held),
                              "training": quality(advisor, [s for s in sentences if not s.held_out])}
    report["in_process"] = in_process(advisor, [s.text for s in held], args.rounds)
    desc = Lab().up(log=lambda m: None)
    report["http"] = over_http(desc, [s.text for s in held], args.rounds)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    report.update(date=stamp, file=f"advice-{stamp}.json", machine=machine())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / report["file"]).write_text(json.dumps(report, indent=2, ensure_ascii=False))
    replace_section(ROOT / "BENCHMARKS.md", HEADING, section(report))
    h = report["held_out"]
    print(json.dumps({"accuracy": h["accuracy"], "macro_f1": h["macro_f1"], "danger": h["danger"],
                      "http": report["http"], "in_process": report["in_process"]}, indent=2))
    ok = h["macro_f1"] >= GOAL_F1 and h["danger"]["to_12345"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
