"""Scope advice through the real controllers' HTTP (both sites of the lab): an agent's token and the site's are
answered with the annex line, a danger goes to 110 at either site, bad input is refused with a message, and a
wrong token is not answered."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

pytestmark = pytest.mark.lab


def advise(site: dict[str, Any], token: str, body: bytes) -> tuple[int, Any]:
    req = urllib.request.Request(f"{site['http']}/v1/advice", data=body, method="POST",
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


@pytest.mark.parametrize("name", ["12345", "110"])
def test_the_controller_advises_with_the_annex_line(desc: dict[str, Any], name: str) -> None:
    site = desc["sites"][name]
    agent = site["accounts"]["agents"][0]["token"]
    status, body = advise(site, agent, _json({"content": "小区楼道里燃气泄漏了，味道很大"}))
    assert status == 200 and (body["platform"], body["danger"], body["by"]) == ("110", True, "danger_rule")
    assert body["clause"].startswith("水电油气热等公共设施出现险情") and body["terms"]
    status, body = advise(site, site["token"], _json({"content": "新房子想办燃气开户，要带什么材料"}))
    assert status == 200 and (body["platform"], body["danger"]) == ("12345", False)
    assert body["clause"] == "水电气热网等公共设施报装、维修等方面的非紧急求助"
    status, body = advise(site, agent, _json({"content": "我的身份证丢了，怎么补办", "category": "help"}))
    assert status == 200 and body["platform"] == "12345" and "身份证" in body["terms"]


def test_bad_input_at_the_real_controller_is_refused_with_a_message(desc: dict[str, Any]) -> None:
    site = desc["sites"]["12345"]
    agent = site["accounts"]["agents"][0]["token"]
    status, body = advise(site, agent, _json({"content": "字" * 5001}))
    assert status == 413 and "5000" in body["message"]
    status, body = advise(site, agent, b'{"content": "' + b"x" * 70_000 + b'"}')
    assert status == 413 and body["error"] == "payload_too_large"
    status, body = advise(site, agent, _json({"content": "x", "category": "<script>"}))
    assert status == 400 and body["details"]["field"] == "category"
    status, body = advise(site, agent, _json({"content": "\u202e😀\u0000<img src=x>"}))
    assert status == 200 and body["platform"] in ("110", "12345", "other")
    status, body = advise(site, "not-a-token", _json({"content": "x"}))
    assert status == 401
