"""The console's statistics page (统计) in headless Chromium against a real controller process (`linkage serve`):
app_queue lines written to a queue_log file are tailed by the controller into its SQLite reporting database, a
ticket with hostile text is in it too, and the supervisor's page shows the figures with their formulas — the
numbers worked out by hand, the hostile text as text. No lab is needed: the controller's PBX is unreachable
(its AMI retries), its Redis the session's throwaway one; its ports are free ones above the lab's range."""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from playwright.sync_api import Browser, sync_playwright

from linkage_lab.lab.lab import PLANS, Lab
from telephony.reporting.db import connect
from telephony.reporting.ingest import write
from telephony.reporting.migrations import migrate
from telephony.tickets.models import Event, Party, Ticket

pytestmark = pytest.mark.lab

ROOT = Path(__file__).parents[2]
SHOTS = ROOT / "reports" / "console"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
WAIT = 15_000
REDIS_DB = 14  # the reporting tests' database of the session's Redis
HOSTILE = '<img src=x onerror="window.__pwned=1">不属于本平台职责'
E = 1790812800  # 2026-10-01T00:00:00Z = 08:00 in Asia/Shanghai
# (callid, entered, event, wait) in queue q110: 9 entered, 5 answered (a3 then transferred), b1 and b3 abandoned
# within 10 s; waits answered 5 12 30 15 40 → SL 3/5, SL2 (3 + 3 abandoned ≤ 15 s) / (5 + 3)
CALLS = [("a1", E, "CONNECT", 5), ("a2", E + 60, "CONNECT", 12), ("a3", E + 120, "CONNECT", 30),
         ("b1", E + 180, "ABANDON", 4), ("b2", E + 240, "ABANDON", 14), ("t1", E + 300, "EXITWITHTIMEOUT", 60),
         ("a4", E + 3600, "CONNECT", 15), ("a5", E + 3660, "CONNECT", 40), ("b3", E + 3720, "ABANDON", 10)]


def free_port() -> int:
    for _ in range(200):
        port = random.randint(40000, 60999)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port")


def queue_log() -> str:
    lines = []
    for callid, t, event, wait in CALLS:
        lines.append(f"{t}|{callid}|q110|NONE|ENTERQUEUE||13912345678|1")
        data = f"{wait}|{callid}.b|1" if event == "CONNECT" else f"1|1|{wait}"
        lines.append(f"{t + wait}|{callid}|q110|{'PJSIP/2001' if event == 'CONNECT' else 'NONE'}|{event}|{data}")
    lines.append("a line no PBX writes 13912345678")
    return "".join(line + "\n" for line in lines)


def returned_ticket() -> Ticket:
    tid = "37080020261001080000123456"
    history = [Event(f"{i:032d}", tid, kind, f"2026-10-01T08:00:{10 * i:02d}.000Z", {"platform": "110", "site": "110"},
                     payload, i + 1, i + 1)
               for i, (kind, payload) in enumerate([("created", {}), ("delivered", {"via": "push"}),
                                                    ("signed_for", {}), ("returned", {"reason": HOSTILE})])]
    return Ticket(id=tid, direction="110->12345", source=Party("110", "110"), target=Party("12345", "12345"),
                  caller_number="13912345678", created_at="2026-10-01T08:00:00.000Z", history=history,
                  version=len(history), status="returned", category="complaint_report", return_reason=HOSTILE)


@pytest.fixture(scope="module")
def controller(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[dict[str, Any]]:
    tmp_path = tmp_path_factory.mktemp("stats")
    db_url = f"sqlite:///{tmp_path}/reporting.sqlite3"
    db = connect(db_url)
    migrate(db)
    write(db, "110", [returned_ticket()])
    db.close()
    (tmp_path / "queue_log").write_text(queue_log(), encoding="utf-8")
    raw = Lab(rootfs=str(tmp_path)).site_raw(PLANS["110"])
    http = free_port()
    raw["pbx"]["ami"]["port"] = free_port()  # nothing listens: the AMI session keeps retrying
    raw["pbx"]["agi"]["port"] = free_port()
    raw["controller"]["http"]["port"] = http
    raw["controller"]["public_url"] = f"http://127.0.0.1:{http}"
    raw["redis"]["url"] = redis_url.rsplit("/", 1)[0] + f"/{REDIS_DB}"
    raw["peers"] = [{**p, "url": f"http://127.0.0.1:{free_port()}"} for p in raw["peers"]]
    raw["reporting"] = {"url": db_url, "queue_log": "queue_log", "early_release_seconds": 10}
    site_file = tmp_path / "110.yaml"
    site_file.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    with (tmp_path / "controller.log").open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "telephony", "serve", "--config", str(site_file)],
                                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        base = f"http://127.0.0.1:{http}"
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "controller.log").read_text()[-3000:]
            try:
                urllib.request.urlopen(f"{base}/v1/health", timeout=1).read()
                break
            except urllib.error.HTTPError:
                break  # answering (503: no AMI) is up
            except OSError:
                assert time.monotonic() < deadline, "the controller did not start listening"
                time.sleep(0.2)
        yield {"http": base, "token": raw["controller"]["api_token"], "log": tmp_path / "controller.log",
               "agent_token": raw["accounts"]["agents"][0]["token"]}
    finally:
        proc.terminate()  # this process, by its own handle
        proc.wait(timeout=15)


def stats(base: str, token: str, query: str) -> tuple[int, Any]:
    request = urllib.request.Request(f"{base}/v1/stats?{query}", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        yield b
        b.close()


def test_the_statistics_page_shows_the_figures_with_their_formulas(controller: dict[str, Any],
                                                                   browser: Browser) -> None:
    base, token = controller["http"], controller["token"]
    deadline = time.monotonic() + 20  # the tailer polls the file every second
    while True:
        status, body = stats(base, token, "from=2026-10-01&to=2026-12-31")
        answered = next((f for f in body.get("figures", []) if f["key"] == "queue_answered"), {})
        if status == 200 and (answered.get("rate") or {}).get("den") == 9:
            break
        assert time.monotonic() < deadline, (status, body, controller["log"].read_text()[-2000:])
        time.sleep(0.5)
    assert "13912345678" not in controller["log"].read_text()  # the bad line was logged masked

    page = browser.new_context(viewport={"width": 1400, "height": 900}, locale="zh-CN").new_page()
    page.goto(f"{base}/console")
    page.fill("#sign-in-agent", "")
    page.fill("#sign-in-token", token)
    page.click("#sign-in-submit")
    page.wait_for_selector("#stats-form", timeout=WAIT)
    page.fill("#stats-from", "2026-10-01")
    page.fill("#stats-to", "2026-12-31")
    page.click("#stats-submit")
    page.wait_for_selector("#stats [data-key=queue_answered] .rate:has-text('5 / 9 = 55.6%')", timeout=WAIT)
    figure = "#stats [data-key=queue_answered]"
    assert page.text_content(f"{figure} h3") == "接通率"
    assert page.text_content(f"{figure} .formula") == "公式：接通的来电（结果为接通或接通后转出）÷ 进入排队的来电"
    assert page.text_content("#stats [data-key=queue_early] .rate") == "2 / 9 = 22.2%"
    sl = page.text_content("#stats [data-key=queue_sl]") or ""
    assert "3 / 5 = 60.0%" in sl and "6 / 8 = 75.0%" in sl and "SL2 = （等待 ≤ 15 秒接通的来电" in sl
    heads = page.locator("#stats [data-key=queue_by_hour] th").all_text_contents()
    assert heads == ["站点", "时段", "进入排队", "接通率", "早释率", "平均等待（秒）", "p90 等待（秒）", "SL", "SL2"]
    assert page.text_content("#stats [data-key=returned] td.text") == HOSTILE  # as text, never markup
    assert page.evaluate("window.__pwned") is None
    assert "13912345678" not in (page.text_content("#stats") or "")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("#stats").screenshot(path=str(SHOTS / "statistics.png"))

    page.fill("#stats-from", "2026-12-31")
    page.fill("#stats-to", "2026-10-01")
    page.click("#stats-submit")
    page.wait_for_selector("#stats-error:has-text('is after to')", timeout=WAIT)
    page.context.close()


@pytest.mark.parametrize(("query", "status", "message"), [
    ("from=2026-12-31&to=2026-10-01", 400, "from 2026-12-31 is after to 2026-10-01"),
    ("from=2026-13-01&to=2026-12-31", 400, "from: '2026-13-01' is not a date"),
    ("from=2020-01-01&to=2026-12-31", 400, "spans more than 400 days"),
    ("to=2026-12-31", 400, "from: required"),
    ("from=2026-10-01&to=2026-12-31&tz=Mars/Base", 400, "'Mars/Base' is not a time zone"),
])
def test_bad_dates_are_a_clear_400(controller: dict[str, Any], query: str, status: int, message: str) -> None:
    got, body = stats(controller["http"], controller["token"], query)
    assert got == status and message in body["message"], body


def test_the_statistics_are_the_supervisors(controller: dict[str, Any]) -> None:
    got, body = stats(controller["http"], controller["agent_token"], "from=2026-10-01&to=2026-12-31")
    assert got == 403 and "supervisor" in body["message"]
