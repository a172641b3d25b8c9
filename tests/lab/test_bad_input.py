"""Bad input against the real controllers: a clear 4xx, and nothing stored or changed."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from linkage_lab.lab.lab import Lab
from telephony.security import signing


def call(method: str, url: str, token: str | None, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    h = {"Content-Type": "application/json", **(headers or {})}
    if token:
        h["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=body, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def pair_secret(a: str, b: str) -> str:
    return Lab().secrets()["pair." + ".".join(sorted((a, b)))]


def signed(method: str, url: str, sender: str, receiver: str, body: bytes = b"", message_id: str | None = None,
           now: float | None = None, secret: str | None = None) -> tuple[int, dict[str, Any]]:
    """A request as a peer controller sends it: signed with the pair's secret, naming the sender."""
    headers = signing.headers(sender, [secret or pair_secret(sender, receiver)],
                              message_id or f"test-{uuid.uuid4().hex}", body, now=now)
    return call(method, url, None, body or None, headers)


def valid_ticket(target: str = "110") -> dict[str, Any]:
    tid = "370800" + time.strftime("%Y%m%d%H%M%S") + "999999"
    return {
        "schema": 1, "id": tid, "direction": f"12345->{target}",
        "source": {"platform": "12345", "site": "12345"}, "target": {"platform": target, "site": target},
        "caller_number": "13900000000", "agent_id": "1001", "linkedid": "pbx12345-1.0", "uniqueids": [],
        "created_at": "2026-11-29T00:00:00.000Z", "status": "created", "version": 0, "history": [],
    }


def count(site: dict[str, Any]) -> int:
    status, data = call("GET", f"{site['http']}/v1/tickets?page_size=1", site["token"])
    assert status == 200
    return int(data["total"])


BAD_BODIES = [
    (b"{not json", 400, "invalid_input"),
    (b"[]", 400, "invalid_input"),
    (json.dumps({**valid_ticket(), "extra": 1}).encode(), 400, "invalid_input"),
    (json.dumps({**valid_ticket(), "schema": 2}).encode(), 400, "invalid_input"),
    (json.dumps({**valid_ticket(), "id": "12${EXTEN}"}).encode(), 400, "invalid_input"),
    (json.dumps({**valid_ticket(), "caller_number": "139\r\nX-Evil: 1"}).encode(), 400, "invalid_input"),
    (json.dumps({**valid_ticket(), "content": "x" * 5001}).encode(), 400, "invalid_input"),
    (json.dumps({**valid_ticket(), "content": "a\x00b"}).encode(), 400, "invalid_input"),
    (json.dumps(valid_ticket(target="12345")).encode(), 400, "invalid_input"),
    (b"{" + b" " * (70 * 1024) + b"}", 413, "payload_too_large"),
]


@pytest.mark.parametrize("body,status,error", BAD_BODIES, ids=[f"bad{i}" for i in range(len(BAD_BODIES))])
def test_peer_ticket_endpoint_refuses_and_stores_nothing(desc: dict[str, Any], body: bytes, status: int,
                                                          error: str) -> None:
    site = desc["sites"]["110"]
    before = count(site)
    got, data = signed("POST", f"{site['http']}/v1/tickets", "12345", "110", body)
    assert got == status, data
    assert data["error"] == error
    assert data["message"]
    assert count(site) == before


def test_unsigned_wrongly_signed_stale_and_replayed_requests_are_refused(desc: dict[str, Any]) -> None:
    site = desc["sites"]["110"]
    url = f"{site['http']}/v1/tickets"
    before = count(site)
    body = json.dumps(valid_ticket()).encode()
    wrong = "whsec_" + "A" * 32
    for method_call in (
        lambda: call("POST", url, site["token"], body),  # a console token is not a peer's signature
        lambda: call("POST", url, None, body),  # unsigned
        lambda: signed("POST", url, "12345", "110", body, secret=wrong),  # wrong secret
        lambda: signed("POST", url, "12345", "110", body, now=time.time() - 400),  # stale
        lambda: signed("POST", url, "12345", "110", body, now=time.time() + 400),  # from the future
        lambda: signed("POST", url, "119", "110", body, secret=wrong),  # not a peer
    ):
        got, data = method_call()
        assert got == 401 and data["error"] == "unauthorized", data
    assert count(site) == before
    # a push signed by a peer for a ticket that neither comes from it nor passed through it
    got, data = signed("POST", url, "110-370811", "110", body)
    assert got == 403 and data["error"] == "forbidden"



def test_bad_event_and_unknown_ticket(desc: dict[str, Any]) -> None:
    site = desc["sites"]["12345"]
    unknown = "37080020260101000000000001"
    event = {"id": "0" * 32, "ticket_id": unknown, "type": "signed_for", "at": "2026-11-29T00:00:00Z",
             "actor": {"platform": "110", "site": "110"}}
    url = f"{site['http']}/v1/tickets/{unknown}/events"
    got, data = signed("POST", url, "110", "12345", json.dumps(event).encode())
    assert got == 404 and data["error"] == "not_found"
    got, data = signed("POST", url, "110", "12345", json.dumps({**event, "type": "teleport"}).encode())
    assert got == 400 and "type" in data["message"]
    got, data = call("GET", f"{site['http']}/v1/tickets/12abc", site["token"])
    assert got == 400
    got, data = call("GET", f"{site['http']}/v1/tickets/{unknown}", site["token"])
    assert got == 404


def speak_agi(site: dict[str, Any], script: str, channel: str, uniqueid: str, args: list[str],
              expect_log: str) -> bytes:
    """Speak FastAGI to the real controller as Asterisk would; return what it answered and wait for the log line."""
    port = site["sip"]["port"] - 60 + 573
    log = Path(site["logs"]["controller"])
    size = log.stat().st_size
    head = f"agi_network: yes\nagi_request: agi://127.0.0.1/{script}\nagi_channel: {channel}\n" \
           f"agi_uniqueid: {uniqueid}\n" + "".join(f"agi_arg_{i}: {a}\n" for i, a in enumerate(args, 1)) + "\n"

    async def ask() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head.encode())
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        return data

    answer = asyncio.run(ask())
    deadline = time.time() + 3
    while time.time() < deadline and expect_log not in log.read_text()[size:]:
        time.sleep(0.05)
    assert expect_log in log.read_text()[size:]
    return answer


def test_agi_for_unknown_call_keeps_the_call_with_the_agent(desc: dict[str, Any]) -> None:
    """For a call the controller does not know it must not answer with a transfer target, and must log why."""
    answer = speak_agi(desc["sites"]["12345"], "onekey", "PJSIP/agent1001-1", "pbx12345-1.2", ["pbx12345-999.9"],
                       "onekey.unknown_call")
    assert answer == b""  # no SET VARIABLE LINKAGE_XFER: the dialplan keeps the call


def test_console_requests_for_calls_that_do_not_exist_change_nothing(desc: dict[str, Any]) -> None:
    site = desc["sites"]["12345"]
    before = count(site)
    base = f"{site['http']}/v1/calls"
    cases = [
        ("POST", f"{base}/pbx12345-1.1/transfer", {"agent": "1001", "target": "110"}, 404),
        ("POST", f"{base}/pbx12345-1.1/threeway", {"agent": "1001"}, 404),
        ("PUT", f"{base}/pbx12345-1.1/draft", {"content": "x"}, 404),
        ("POST", f"{base}/bad%0D%0Aid/transfer", {"agent": "1001"}, 400),
        ("POST", f"{base}/pbx12345-1.1/transfer", {"agent": "1001", "evil": "${EXTEN}"}, 400),
        ("POST", f"{base}/pbx12345-1.1/transfer", {"agent": "10a1"}, 400),
        ("POST", f"{base}/pbx12345-1.1/threeway", {}, 400),
        ("PUT", f"{base}/pbx12345-1.1/draft", {"division": "12"}, 400),
        # 退回 (issue 14) over HTTP: a call that is not here, a body that is not {agent, reason}, a reason that
        # is missing or too long, hostile text in a call id
        ("POST", f"{base}/pbx12345-1.1/return", {"agent": "1001", "reason": "不属于本平台职责"}, 404),
        ("POST", f"{base}/pbx12345-1.1/return", {"agent": "1001"}, 400),
        ("POST", f"{base}/pbx12345-1.1/return", {"agent": "1001", "reason": "x" * 1001}, 400),
        ("POST", f"{base}/pbx12345-1.1/return", {"agent": "1001", "reason": "r", "target": "110"}, 400),
        ("POST", f"{base}/%3Cscript%3E/return", {"agent": "1001", "reason": "r"}, 400),
    ]
    for method, url, body, status in cases:
        got, data = call(method, url, site["token"], json.dumps(body).encode())
        assert got == status, (url, body, data)
        assert data["message"]
    assert count(site) == before


def test_conference_key_outside_a_conference_is_ignored_with_a_log_line(desc: dict[str, Any]) -> None:
    """'My platform takes it' for a conference that is not negotiating: nothing is sent back, nothing changes."""
    answer = speak_agi(desc["sites"]["12345"], "conf_key", "PJSIP/agent1001-9", "pbx12345-9.9",
                       ["accept", "37080020260101000000000009", "pbx12345-9.9"], "threeway.key_ignored")
    assert answer == b""


def test_an_agent_token_acts_for_that_agent_only(desc: dict[str, Any]) -> None:
    site = desc["sites"]["12345"]
    a1001, a1002 = site["accounts"]["agents"][0], site["accounts"]["agents"][1]
    base = f"{site['http']}/v1/calls/pbx12345-1.1"
    # 1002's token may not transfer or start a three-way call as 1001, whatever the call
    got, data = call("POST", f"{base}/transfer", a1002["token"], json.dumps({"agent": "1001"}).encode())
    assert got == 403 and "1002" in data["message"]
    got, data = call("POST", f"{base}/threeway", a1002["token"], json.dumps({"agent": "1001"}).encode())
    assert got == 403
    # acting as itself it gets the ordinary answer (no such call)
    got, _ = call("POST", f"{base}/transfer", a1001["token"], json.dumps({"agent": "1001"}).encode())
    assert got == 404
    # a made-up token is no token at all
    assert call("GET", f"{site['http']}/v1/calls", "not-a-real-token-at-all")[0] == 401
    status, calls = call("GET", f"{site['http']}/v1/calls", a1001["token"])
    assert status == 200 and all(any(leg["endpoint"] == "agent1001" for leg in c["legs"]) for c in calls["items"])


def test_a_flooding_peer_is_rate_limited_with_retry_after(lab: Lab, desc: dict[str, Any]) -> None:
    site = desc["sites"]["110"]
    lab.restart_controller("110", env={"LINKAGE_CONTROLLER__RATE_PER_SECOND": "5",
                                       "LINKAGE_CONTROLLER__RATE_BURST": "10"})
    try:
        before = count(site)
        statuses = []
        for _ in range(20):
            req = urllib.request.Request(f"{site['http']}/v1/tickets", data=b"{}", method="POST", headers={
                "Content-Type": "application/json",
                **signing.headers("12345", [pair_secret("12345", "110")], f"flood-{uuid.uuid4().hex}", b"{}")})
            try:
                with urllib.request.urlopen(req, timeout=5) as resp:
                    statuses.append((resp.status, ""))
            except urllib.error.HTTPError as exc:
                statuses.append((exc.code, exc.headers.get("Retry-After", "")))
        limited = [s for s in statuses if s[0] == 429]
        assert 5 <= len(limited) <= 12 and all(int(retry) >= 1 for _, retry in limited)
        assert all(code == 400 for code, _ in statuses[:10])  # within the burst: judged on content (bad body)
        assert count(site) == before
    finally:
        lab.restart_controller("110")
