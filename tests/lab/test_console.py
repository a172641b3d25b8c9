"""The browser console in headless Chromium (Debian's package, driven by Playwright) against the real lab:
signing in, the screen pop of a real one-key transfer before the 110 agent answers, the 110 agent working the
ticket in its inbox while the 12345 console follows, and hostile text arriving through a real call and push
shown as text. Screenshots go to reports/console/."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import secrets
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from playwright.sync_api import Browser, Page, sync_playwright

from linkage_lab.harness.checks import epoch
from linkage_lab.harness.runner import Result, run_scenario
from linkage_lab.harness.scenario import load
from linkage_lab.lab.lab import Lab

pytestmark = pytest.mark.lab

ROOT = Path(__file__).parents[2]
SHOTS = ROOT / "reports" / "console"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
WAIT = 10_000  # ms: the longest any element may take to appear once its cause happened
# Waits are selectors (`:has-text`), never wait_for_function: the page's CSP forbids the eval it polls with.
HOSTILE = '<script>window.__pwned=1</script>"><img src=x onerror="window.__pwned=1">{{7*7}}'


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        yield b
        b.close()


def open_console(browser: Browser, desc: dict[str, Any], site: str, agent: str) -> Page:
    """A fresh page (its own sessionStorage) signed in as `agent` (the site token when agent is "")."""
    s = desc["sites"][site]
    token = next(a["token"] for a in s["accounts"]["agents"] if a["id"] == agent) if agent else s["token"]
    page = browser.new_context(viewport={"width": 1400, "height": 900}, locale="zh-CN").new_page()
    page.goto(f"{s['http']}/console")
    page.fill("#sign-in-agent", agent)
    page.fill("#sign-in-token", token)
    page.click("#sign-in-submit")
    page.wait_for_selector("body[data-stream=open]", timeout=WAIT)  # the stream is read from here on
    assert page.is_hidden("#sign-in")
    return page


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def resolve(page: Page, row: str, result: str) -> None:
    """办结 in the inbox row `row`: the button asks for the result (办理结果), which is typed and sent."""
    page.click(f"{row} button[data-action=resolved]")
    page.fill(f"{row} input[data-need=result]", result)
    page.click(f"{row} form.ask button[type=submit]")
    page.wait_for_selector(f"{row}[data-status=resolved]", timeout=WAIT)


def test_console_loads_and_signs_in(desc: dict[str, Any], browser: Browser) -> None:
    s = desc["sites"]["12345"]
    page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    response = page.goto(f"{s['http']}/console")
    assert response is not None and response.status == 200
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert page.get_attribute("html", "lang") == "zh-CN"
    page.fill("#sign-in-agent", "1001")
    page.fill("#sign-in-token", "not-the-token")
    page.click("#sign-in-submit")
    page.wait_for_selector("#sign-in-error:has-text('令牌错误')", timeout=WAIT)
    assert page.is_hidden("#agent-view")
    assert page.evaluate("sessionStorage.length") == 0
    shot(page, "sign-in-refused")
    page.context.close()

    page = open_console(browser, desc, "12345", "1001")
    assert "坐席 1001" in (page.text_content("#whoami") or "")
    assert page.is_visible("button.transfer[data-target='110']")
    assert "Alt+1" in (page.text_content("button.transfer[data-target='110']") or "")
    assert "token" not in page.url and not page.context.cookies()  # the token is in no URL and no cookie
    stored = page.evaluate("sessionStorage.getItem('linkage.session')")
    assert s["accounts"]["agents"][0]["token"] in stored
    page.context.close()

    page = open_console(browser, desc, "12345", "")  # the site token: the supervisor
    page.wait_for_selector("#supervisor-view:not([hidden]) #live-calls", timeout=WAIT)
    assert "班长" in (page.text_content("#whoami") or "")
    shot(page, "supervisor")
    page.context.close()


@contextmanager
def run_while(scenario_file: str, desc: dict[str, Any], lab: Lab, *, hold: str = "", actions: bool = True,
              media: bool = True, **draft: str) -> Iterator[Future[Result]]:
    """Start a scenario in a thread (it runs its own event loop); the test's thread drives the browser.
    `draft` overrides fields of its first draft action; `actions=False` leaves the console's part to the
    browser; `hold` is how long the citizen stays on the line (ms)."""
    scenario = load(ROOT / "tests" / "scenarios" / scenario_file)
    if draft:
        first = dataclasses.replace(scenario.actions[0], draft={**scenario.actions[0].draft, **draft})
        scenario = dataclasses.replace(scenario, actions=[first, *scenario.actions[1:]])
    if not actions:
        scenario = dataclasses.replace(scenario, actions=[])
    if not media:  # the scenario file's own run checks what the caller hears, with no browser beside it
        scenario = dataclasses.replace(scenario, media=[])
    if hold:
        roles = [dataclasses.replace(r, params={**r.params, "hold": hold}) if r.account == "citizen" else r
                 for r in scenario.roles]
        scenario = dataclasses.replace(scenario, roles=roles)
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(run_scenario, scenario, desc, lab)
        try:
            yield future
        except BaseException:
            future.result(timeout=120)  # a failed check must not leave the calls running into the next test
            raise


def test_screen_pop_before_the_answer_and_the_loop_closed(desc: dict[str, Any], lab: Lab,
                                                            browser: Browser) -> None:
    far = open_console(browser, desc, "110", "2001")
    near = open_console(browser, desc, "12345", "1001")
    with run_while("onekey_happy.yaml", desc, lab) as future:
        far.wait_for_selector("#pop:not([hidden])", timeout=30_000)
        shown_at = float(far.get_attribute("#pop", "data-shown-at") or "0") / 1000
        shot(far, "screen-pop-110")
        result = future.result(timeout=90)
    assert result.ok, result.report()
    ticket = result.tickets["110"][0]
    tid = ticket["id"]
    assert far.get_attribute("#pop", "data-ticket-id") == tid
    assert tid in (far.text_content("#pop") or "")
    assert far.text_content("#pop [data-field=content]") == ticket["content"]
    assert far.text_content("#pop [data-field=caller_number]") == "13912345678"
    answered = next(epoch(e["at"]) for e in ticket["history"] if e["type"] == "signed_for")
    assert shown_at < answered, f"pop shown {shown_at - answered:+.3f} s after the answer"
    offered = next(epoch(e["at"]) for e in ticket["history"] if e["type"] == "offered")
    (SHOTS / "screen-pop.txt").write_text(f"ticket {tid}: pop rendered {1000 * (shown_at - offered):+.0f} ms after "
                                          f"offered, {1000 * (answered - shown_at):.0f} ms before the answer\n")

    # the 12345 agent saw each step of its transfer
    near.wait_for_selector(f"#progress-steps[data-ticket-id='{result.tickets['12345'][0]['id']}'] "
                           "li[data-step=signed_for].done", timeout=WAIT)
    # the 110 agent accepts and resolves in its inbox; the 12345 console follows
    row = f"#inbox tr[data-ticket-id='{tid}']"
    far.click(f"{row} button[data-action=accepted]")
    far.wait_for_selector(f"{row}[data-status=accepted]", timeout=WAIT)
    resolve(far, row, "已出警处置，纠纷已调解")
    near.wait_for_selector("#progress-text:has-text('已办结')", timeout=WAIT)
    shot(far, "inbox-110")
    shot(near, "agent-12345")
    sup = open_console(browser, desc, "110", "")
    sup.wait_for_selector(f"#tickets-by-state tr[data-ticket-id='{tid}'][data-status=resolved]", timeout=WAIT)
    for page in (far, near, sup):
        page.context.close()


def test_hostile_text_from_a_real_call_is_shown_as_text(desc: dict[str, Any], lab: Lab,
                                                         browser: Browser) -> None:
    far = open_console(browser, desc, "110", "2001")
    hostile = {"content": HOSTILE, "title": HOSTILE, "caller_name": HOSTILE[:100]}
    with run_while("onekey_happy.yaml", desc, lab, **hostile) as future:
        far.wait_for_selector("#pop:not([hidden])", timeout=30_000)
        result = future.result(timeout=90)
    assert result.ok, result.report()
    tid = result.tickets["110"][0]["id"]
    far.wait_for_selector(f"#pop[data-ticket-id='{tid}']", timeout=WAIT)
    assert far.text_content("#pop [data-field=content]") == HOSTILE
    assert far.text_content("#pop [data-field=title]") == HOSTILE
    cell = f"#inbox tr[data-ticket-id='{tid}'] td.content"
    far.wait_for_selector(cell, timeout=WAIT)
    assert far.text_content(cell) == HOSTILE
    assert far.locator("main img").count() == 0 and far.locator("main script").count() == 0
    assert far.evaluate("window.__pwned") is None
    assert "49" not in (far.text_content(cell) or "")
    shot(far, "hostile-text-110")
    far.context.close()


def test_the_form_and_the_button_transfer_a_real_call(desc: dict[str, Any], lab: Lab, browser: Browser) -> None:
    """The 12345 agent answers, types the form (autosaved), presses Alt+1 (转110); the 110 console pops it."""
    far = open_console(browser, desc, "110", "2001")
    near = open_console(browser, desc, "12345", "1001")
    with run_while("console_transfer_button.yaml", desc, lab, hold="9000", actions=False) as future:
        near.wait_for_selector("#call-state[data-state=answered]", timeout=15_000)
        near.select_option("#f-category", "report")
        near.select_option("#f-division", "370800")  # the city: a county code would go on to that county's 110
        near.fill("#f-address", "济宁市某小区5号楼")
        near.fill("#f-content", "电梯困人，一名老人被困，请求救援")
        near.wait_for_selector("#draft-state[data-saved]", timeout=WAIT)  # the autosave reached the controller
        near.wait_for_selector("#call-duration:not(:has-text('00:00'))", timeout=WAIT)  # the call's clock runs
        clock = near.text_content("#call-duration") or ""
        assert re.fullmatch(r"\d\d:\d\d", clock), clock
        shot(near, "form-12345")
        near.keyboard.press("Alt+1")
        far.wait_for_selector("#pop:not([hidden])", timeout=WAIT)
        assert far.text_content("#pop [data-field=content]") == "电梯困人，一名老人被困，请求救援"
        assert far.text_content("#pop [data-field=address]") == "济宁市某小区5号楼"
        near.wait_for_selector("#progress-steps li[data-step=signed_for].done", timeout=WAIT)
        result = future.result(timeout=90)
    assert result.ok, result.report()
    assert result.tickets["12345"][0]["content"] == "电梯困人，一名老人被困，请求救援"
    assert near.get_attribute("#progress-steps", "data-ticket-id") == result.tickets["12345"][0]["id"]
    assert not near.text_content("#progress-failure")
    for page in (far, near):
        page.context.close()


@pytest.mark.parametrize(("scenario", "words", "shot_name"), [
    ("failure_busy_recall.yaml", "转接失败：对方忙", "recall-12345"),
    ("failure_no_answer_recall.yaml", "转接失败：无人接听", "recall-no-answer-12345"),
    ("failure_far_pbx_down.yaml", "转接失败：对方不可达", "recall-far-down-12345"),
])
def test_a_failed_transfer_is_shown_as_what_it_is_and_a_recall(desc: dict[str, Any], lab: Lab, browser: Browser,
                                                               scenario: str, words: str, shot_name: str) -> None:
    """The agent always knows where the caller is: busy, no answer, the far side down — each is shown as what
    it is, and the caller as back with this agent."""
    near = open_console(browser, desc, "12345", "1001")
    with run_while(scenario, desc, lab) as future:
        near.wait_for_selector("#progress-failure:has-text('来电已回到您这里')", timeout=30_000)
        text = near.text_content("#progress-failure") or ""
        assert text.startswith(words), text
        result = future.result(timeout=90)
    assert result.ok, result.report()
    assert near.get_attribute("#progress-steps", "data-ticket-id") == result.tickets["12345"][0]["id"]
    print(f"{scenario}: {text}")
    shot(near, shot_name)
    near.context.close()


def refer(page: Page, content: str, channel: str, caller_name: str = "", caller_number: str = "") -> str:
    """Send a referral (report, to 110) from the 12345 console's form; returns the ticket id it answered."""
    page.select_option("#r-target", "110")
    page.select_option("#r-channel", channel)
    if caller_name:
        page.fill("#r-caller-name", caller_name)
    if caller_number:
        page.fill("#r-caller-number", caller_number)
    page.select_option("#r-category", "report")
    page.fill("#r-content", content)
    page.click("#r-submit")
    page.wait_for_selector("#referral-result[data-ticket-id]", timeout=WAIT)
    return page.get_attribute("#referral-result", "data-ticket-id") or ""


def test_a_referral_without_a_call_reaches_the_110_console(desc: dict[str, Any], browser: Browser) -> None:
    """网络渠道转办: the 12345 agent sends a web message to 110 from the console; no call; the 110 agent's inbox
    shows it pushed (not at its next poll), and the 12345 supervisor's delivery view has nothing stuck."""
    far = open_console(browser, desc, "110", "2001")
    near = open_console(browser, desc, "12345", "1001")
    content = f"网站留言：路口有人持刀威胁路人 {int(time.time() * 1000)}"
    tid = refer(near, content, "web", caller_name=HOSTILE[:60], caller_number="13800000001")
    row = f"#inbox tr[data-ticket-id='{tid}']"
    far.wait_for_selector(f"{row} td.content:has-text('{content}')", timeout=5_000)  # the inbox polls every 10 s
    shot(far, "referral-110")
    near.fill("#r-caller-number", "12ab")  # refused by the server, named under the field, nothing stored
    near.click("#r-submit")
    near.wait_for_selector("#referral-result:has-text('转办失败')", timeout=WAIT)
    assert "caller" in (near.text_content("[data-error-for='referral.caller_number']") or "")
    sup = open_console(browser, desc, "12345", "")
    sup.wait_for_selector("#delivery tr[data-peer='110']", timeout=WAIT)
    assert far.evaluate("window.__pwned") is None
    for page in (far, near, sup):
        page.context.close()


def _status_at(desc: dict[str, Any], site: str, tid: str) -> str:
    s = desc["sites"][site]
    req = urllib.request.Request(f"{s['http']}/v1/tickets/{tid}", headers={"Authorization": f"Bearer {s['token']}"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return str(json.loads(resp.read())["status"])


def test_the_inbox_offers_only_the_steps_allowed_now_and_each_moves_both_sites(desc: dict[str, Any],
                                                                               browser: Browser) -> None:
    """The lifecycle buttons the other browser tests do not press: 处理中 at the receiver, 归档 and 撤销 at the
    sender. Each row offers only the steps allowed in its state, and every click moves the ticket on both sites
    (two referrals, no call)."""
    far = open_console(browser, desc, "110", "2001")
    near = open_console(browser, desc, "12345", "1001")
    stamp = int(time.time() * 1000)
    kept = refer(near, f"网站留言：小区井盖缺失 {stamp}", "web")
    dropped = refer(near, f"网站留言：同一事项重复提交 {stamp}", "web")
    row = "#inbox tr[data-ticket-id='{}']".format
    far.wait_for_selector(f"{row(kept)}[data-status=delivered] button[data-action=accepted]", timeout=WAIT)
    assert not far.is_visible(f"{row(kept)} button[data-action=in_progress]")  # not before it is accepted
    far.click(f"{row(kept)} button[data-action=accepted]")
    far.wait_for_selector(f"{row(kept)}[data-status=accepted] button[data-action=in_progress]", timeout=WAIT)
    assert not far.is_visible(f"{row(kept)} button[data-action=accepted]")
    far.click(f"{row(kept)} button[data-action=in_progress]")
    far.wait_for_selector(f"{row(kept)}[data-status=in_progress] button[data-action=resolved]", timeout=WAIT)
    resolve(far, row(kept), "已通知市政补装井盖")
    assert far.locator(f"{row(kept)} td.row-actions button[data-action]").count() == 0  # the sender's steps now

    near.click("#inbox .tabs button[data-side=sender]")
    near.wait_for_selector(f"{row(dropped)}[data-status=delivered] button[data-action=cancelled]", timeout=WAIT)
    assert not near.is_visible(f"{row(dropped)} button[data-action=closed]")  # nothing to archive before a result
    near.click(f"{row(dropped)} button[data-action=cancelled]")
    near.wait_for_selector(f"{row(dropped)}[data-status=cancelled]", timeout=WAIT)
    assert near.locator(f"{row(dropped)} td.row-actions button[data-action]").count() == 0  # final
    # the inbox re-reads every 10 s: the resolve reaches the sender's row by then at the latest
    near.wait_for_selector(f"{row(kept)}[data-status=resolved] button[data-action=closed]", timeout=15_000)
    near.click(f"{row(kept)} button[data-action=closed]")
    near.wait_for_selector(f"{row(kept)}[data-status=closed]", timeout=WAIT)
    shot(near, "inbox-12345-sent")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (_status_at(desc, "110", kept), _status_at(desc, "110", dropped)) != (
            "closed", "cancelled"):
        time.sleep(0.2)
    assert (_status_at(desc, "110", kept), _status_at(desc, "110", dropped)) == ("closed", "cancelled")
    assert (_status_at(desc, "12345", kept), _status_at(desc, "12345", dropped)) == ("closed", "cancelled")
    for page in (far, near):
        page.context.close()


def test_the_inbox_counts_down_amends_and_the_supervisor_searches_and_exports(desc: dict[str, Any],
                                                                               browser: Browser) -> None:
    """A received referral counts down to its deadline in the 110 agent's inbox and is amended there; the 110
    supervisor finds it, exports it (fetched with the bearer header, saved from a blob) and sees the export in
    the audit trail, beside per-agent activity, the overdue list and delivery health."""
    far = open_console(browser, desc, "110", "2001")
    near = open_console(browser, desc, "12345", "1001")
    assert near.is_visible("#consult") and "Alt+8" in (near.text_content("#consult") or "")
    content = f"小程序留言：夜间施工噪音扰民 {int(time.time() * 1000)}"
    tid = refer(near, content, "mini_program")
    row = f"#inbox tr[data-ticket-id='{tid}']"
    far.wait_for_selector(f"{row} td.due:has-text('剩')", timeout=WAIT)  # due to be accepted: counting down
    assert far.get_attribute(f"{row} td.due", "data-at")
    far.click(f"{row} button:has-text('详情')")
    form = f"form.amend[data-ticket-id='{tid}']"
    far.fill(f"{form} [data-amend=address]", "济宁市任城区某路口")
    far.click(f"{form} button[type=submit]")
    far.wait_for_selector(f"{form} p:has-text('已更正')", timeout=WAIT)

    sup = open_console(browser, desc, "110", "")
    sup.wait_for_selector("#agent-activity", timeout=WAIT)
    # the sections are drawn at once, their rows when the first refresh's queries answer: wait for the rows
    sup.wait_for_selector("#delivery tr[data-peer='12345']", timeout=WAIT)
    assert sup.is_visible("#overdue")
    sup.select_option("#search-category", "report")
    sup.click("#ticket-search button[type=submit]")
    sup.wait_for_selector(f"#search tr[data-ticket-id='{tid}']", timeout=WAIT)
    with sup.expect_download(timeout=WAIT) as download:
        sup.click("#export")
    exported = Path(download.value.path()).read_text(encoding="utf-8")
    [line] = [line for line in exported.splitlines() if line.startswith(f"{tid},")]
    assert line.endswith("created|delivered|amended")  # the export has the ticket with its amendment
    sup.wait_for_selector("#exports td:has-text('csv')", timeout=WAIT)  # the audit trail shows the export
    shot(sup, "supervisor-110")
    for page in (far, near, sup):
        page.context.close()


def test_the_consult_button_hands_a_real_call_over_attended(desc: dict[str, Any], lab: Lab,
                                                              browser: Browser) -> None:
    """转接咨询: the 12345 agent answers and presses Alt+8; the 110 console pops the ticket with its call (the call
    names the ticket); the 12345 phone hangs up, Asterisk completes the attended transfer and the 12345 console
    says the caller went to the 110 agent."""
    far = open_console(browser, desc, "110", "2001")
    near = open_console(browser, desc, "12345", "1001")
    # media=False: with Chromium rendering two consoles on this 2-core machine, the caller's music on hold once
    # showed a 324 ms gap against the 300 ms bound; test_scenarios runs the same file and checks the media alone
    with run_while("console_consult_completed.yaml", desc, lab, actions=False, media=False) as future:
        near.wait_for_selector("#call-state[data-state=answered]", timeout=15_000)
        near.keyboard.press("Alt+8")
        far.wait_for_selector("#pop:not([hidden])", timeout=WAIT)
        tid = far.get_attribute("#pop", "data-ticket-id")
        far.wait_for_selector(f"#call-id:has-text('联动单 {tid}')", timeout=WAIT)  # the 110 call names its ticket
        near.wait_for_selector("#progress-outcome[data-outcome=completed]", timeout=15_000)
        shot(near, "consult-12345")
        result = future.result(timeout=90)
    assert result.ok, result.report()
    sent = result.tickets["12345"][0]
    assert sent["id"] == tid and sent["mode"] == "attended"
    assert near.get_attribute("#progress-steps", "data-ticket-id") == tid
    assert near.text_content("#progress-outcome") == "咨询转接已完成：来电已转给 110 坐席 2001"
    assert near.locator("#progress-steps li[data-step=signed_for].done").count() == 1
    assert not near.text_content("#progress-failure")
    for page in (far, near):
        page.context.close()


def signed_by(page: Page, agent: str) -> int:
    """What the supervisor's per-agent activity counts as signed for by `agent` (0 without a row)."""
    page.wait_for_selector("#agent-activity p.hint:has-text('统计')", timeout=WAIT)
    cell = page.locator(f"#agent-activity tr[data-agent='{agent}'] td.signed")
    return int(cell.text_content() or "0") if cell.count() else 0


def test_the_supervisor_sees_an_overdue_ticket_and_who_signed_for_it(desc: dict[str, Any], lab: Lab,
                                                                       browser: Browser) -> None:
    """A real call rings the 110 agent past its 1 s sign-for deadline: the 110 supervisor's overdue list shows
    the ticket, what is late (signing for), since when (the deadline) and who holds it, and the agent's
    activity counts one more ticket signed for."""
    sup = open_console(browser, desc, "110", "")
    before = signed_by(sup, "2001")
    sup.context.close()  # the scenario restarts the 110 controller (its deadline), twice
    with run_while("overdue_alert.yaml", desc, lab) as future:
        result = future.result(timeout=90)
    assert result.ok, result.report()
    ticket = result.tickets["110"][0]
    alert = next(e for e in ticket["history"] if e["type"] == "overdue")
    sup = open_console(browser, desc, "110", "")
    row = f"#overdue tr[data-ticket-id='{ticket['id']}']"
    sup.wait_for_selector(f"{row}[data-late=signed_for][data-holder='2001']", timeout=WAIT)
    assert sup.text_content(f"{row} td.late") == "已签收"  # the state it was late for
    assert sup.get_attribute(f"{row} td.deadline", "data-at") == alert["payload"]["deadline"]
    assert (sup.text_content(f"{row} td.deadline") or "—") != "—"
    assert sup.text_content(f"{row} td.holder") == "2001"
    # the activity counts the oldest page of tickets (see activity.js): a lab session stays well inside it
    sup.wait_for_selector(f"#agent-activity tr[data-agent='2001'] td.signed:text-is('{before + 1}')", timeout=WAIT)
    shot(sup, "supervisor-overdue-110")
    sup.context.close()


def test_delivery_health_shows_a_referral_queued_while_the_peer_is_down(desc: dict[str, Any], lab: Lab,
                                                                          browser: Browser) -> None:
    """The 110 controller is down: a referral from the 12345 console waits in the outbox, and the 12345
    supervisor sees it queued for 110 since the moment it was sent; 110 comes back, the queue drains and the
    referral is in the 110 inbox."""
    near = open_console(browser, desc, "12345", "1001")
    sup = open_console(browser, desc, "12345", "")
    peer = "#delivery tr[data-peer='110']"
    sup.wait_for_selector(f"{peer}[data-queued='0']", timeout=WAIT)
    content = f"APP留言：小区消防通道被占用 {int(time.time() * 1000)}"
    lab.stop_controller("110")
    try:
        sent_at = time.time()
        tid = refer(near, content, "app")
        sup.wait_for_selector(f"{peer}:not([data-queued='0'])", timeout=WAIT)
        assert int(sup.get_attribute(peer, "data-queued") or "0") >= 1
        oldest = float(sup.get_attribute(f"{peer} td.oldest", "data-at") or "0")
        assert sent_at - 1 <= oldest <= time.time()
        assert (sup.text_content(f"{peer} td.oldest") or "—") != "—"
        shot(sup, "supervisor-delivery-queued-12345")
    finally:
        lab.restart_controller("110")
    # the outbox retries with a backoff that grew while 110 was down: it reaches it within about that time again
    sup.wait_for_selector(f"{peer}[data-queued='0']", timeout=40_000)
    assert sup.text_content(f"{peer} td.oldest") == "—"
    far = open_console(browser, desc, "110", "2001")
    far.wait_for_selector(f"#inbox tr[data-ticket-id='{tid}'] td.content:has-text('{content}')", timeout=WAIT)
    for page in (near, sup, far):
        page.context.close()


@contextmanager
def wrong_key_at_110(lab: Lab) -> Iterator[None]:
    """The 110 controller runs with a wrong signing secret for 12345 (a botched key rotation): it refuses
    12345's pushes for good (401). Leaving the block puts the right key back and restarts it: the fix."""
    path = lab.dir / "110" / "linkage.yaml"
    good = path.read_text(encoding="utf-8")
    raw = yaml.safe_load(good)
    peer = next(p for p in raw["peers"] if p["name"] == "12345")
    peer["secrets"] = ["whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()]
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    try:
        lab.restart_controller("110")
        yield
    finally:
        path.write_text(good, encoding="utf-8")
        lab.restart_controller("110")


def test_a_referral_refused_for_good_is_a_dead_letter_the_supervisor_replays(desc: dict[str, Any], lab: Lab,
                                                                              browser: Browser) -> None:
    """110 refuses 12345's push for good (a wrong signing key): the referral is parked as a dead letter, shown
    with its error in the 12345 supervisor view; once the key is fixed, 全部重发 sends it and it reaches the
    110 inbox."""
    near = open_console(browser, desc, "12345", "1001")
    sup = open_console(browser, desc, "12345", "")
    letters = "#dead-letters div[data-peer='110']"
    sup.wait_for_selector(f"{letters} p:has-text('对端 110：0 条')", timeout=WAIT)
    content = f"来信：占道经营噪音扰民 {int(time.time() * 1000)}"
    with wrong_key_at_110(lab):
        tid = refer(near, content, "letter")
        sup.wait_for_selector(f"{letters} td:text-is('{tid}')", timeout=WAIT)
        assert "401" in (sup.text_content(f"{letters} tr:has(td:text-is('{tid}')) td.text") or "")
        sup.wait_for_selector("#delivery tr[data-peer='110'][data-dead='1'][data-queued='0']", timeout=WAIT)
        shot(sup, "supervisor-dead-letter-12345")
    sup.click(f"{letters} button:has-text('全部重发')")
    sup.wait_for_selector(f"{letters} p:has-text('对端 110：0 条')", timeout=WAIT)
    far = open_console(browser, desc, "110", "2001")
    far.wait_for_selector(f"#inbox tr[data-ticket-id='{tid}'] td.content:has-text('{content}')", timeout=WAIT)
    sup.wait_for_selector("#delivery tr[data-peer='110'][data-dead='0'][data-queued='0']", timeout=WAIT)
    for page in (near, sup, far):
        page.context.close()
