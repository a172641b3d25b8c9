"""POST /v1/advice on a real aiohttp server behind the real middlewares, and the advice a ticket records: bounded
input (413 past the content limit or the body limit, 400 for anything else malformed, 401 without a token) with
a message, any Unicode answered; the key press's ticket (real Redis) carries the advice of its draft, computed
when the draft was saved."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import CollectorRegistry
from throwaway import free_port

from linkage_lab.lab.lab import PLANS, Lab
from telephony.advice.services import AdviceService
from telephony.api.app import build_app
from telephony.api.metrics import HttpMetrics
from telephony.api.stream import StreamHub
from telephony.calls.registry import CallRegistry
from telephony.config import SiteConfig
from telephony.security.sealing import Sealer
from telephony.tickets.hooks import TicketHooks
from telephony.tickets.models import decode_ticket, encode
from telephony.tickets.services import TicketService
from telephony.tickets.store import TicketStore
from telephony.transfers.sending import SendingService

REDIS_DB = 15  # the unit conftest's `redis` fixture gives this database, emptied
LINKEDID = "1795934017.10"
CHANNELS = [
    {"Event": "CoreShowChannel", "Uniqueid": "1795934017.10", "Linkedid": LINKEDID,
     "Channel": "PJSIP/citizen-00000001", "CallerIDNum": "13912345678", "BridgeId": "b1"},
    {"Event": "CoreShowChannel", "Uniqueid": "1795934017.11", "Linkedid": LINKEDID,
     "Channel": "PJSIP/agent1001-00000002", "CallerIDNum": "1001", "BridgeId": "b1"},
]


async def _healthy() -> dict[str, Any]:
    return {"ok": True}


@pytest.fixture(scope="module")
def advisor() -> AdviceService:
    return AdviceService.build()


@pytest.fixture
async def site(tmp_path: Path, advisor: AdviceService) -> AsyncIterator[tuple[SiteConfig, str]]:
    config = Lab(rootfs=str(tmp_path)).site_config(PLANS["12345"])
    app = build_app(config, tickets=None, transfers=None, threeway=None, returns=None, calls=None,  # type: ignore[arg-type]
                    hub=StreamHub(config.site.name), metrics=HttpMetrics(CollectorRegistry()), health=_healthy,
                    redis=None, sealer=Sealer(config.storage.keys), wake=lambda peer: None,  # type: ignore[arg-type]
                    advice=advisor)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield config, f"http://127.0.0.1:{port}/v1/advice"
    await runner.cleanup()


async def _post(url: str, token: str, data: bytes) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"} if token else {}
    async with aiohttp.ClientSession() as s, s.post(url, data=data, headers=headers) as r:
        return r.status, await r.json()


async def test_an_agent_asks_and_hears_the_platform_clause_and_terms(site: tuple[SiteConfig, str]) -> None:
    config, url = site
    agent = config.accounts.agents[0].token
    status, body = await _post(url, agent, json.dumps({"content": "家里闻到煤气味，很浓"}).encode())
    assert status == 200
    assert (body["platform"], body["danger"], body["category"], body["suggest_threeway"]) == ("110", True, "help",
                                                                                                False)
    assert "煤气味" in body["terms"] and body["clause"].startswith("水电油气热等公共设施出现险情")
    status, body = await _post(url, config.controller.api_token,
                               json.dumps({"content": "想办燃气开户", "category": "help"}).encode())
    assert status == 200 and (body["platform"], body["danger"]) == ("12345", False) and body["confidence"] > 0.5


@pytest.mark.parametrize(("data", "status", "field", "words"), [
    (json.dumps({"content": "字" * 5001}).encode(), 413, "content", "longer than 5000"),
    (b'{"content": "' + b"a" * 70_000 + b'"}', 413, None, "larger than"),
    (b"[1, 2]", 400, None, "JSON object"),
    (b"{not json", 400, None, "not valid JSON"),
    (json.dumps({"content": "  \n "}).encode(), 400, "content", "empty"),
    (json.dumps({"content": 5}).encode(), 400, "content", "required"),
    (json.dumps({}).encode(), 400, "content", "required"),
    (json.dumps({"content": "x", "category": "nope"}).encode(), 400, "category", "one of"),
    (json.dumps({"content": "x", "category": "c" * 40}).encode(), 400, "category", "at most 32"),
    (json.dumps({"content": "x", "agent": "1001"}).encode(), 400, None, "{content, category?}"),
])
async def test_bad_input_is_refused_with_a_message(site: tuple[SiteConfig, str], data: bytes, status: int,
                                                   field: str | None, words: str) -> None:
    config, url = site
    got, body = await _post(url, config.accounts.agents[0].token, data)
    assert got == status and words in body["message"], body
    assert body["details"].get("field") == field


async def test_any_unicode_is_answered_and_no_token_is_refused(site: tuple[SiteConfig, str]) -> None:
    config, url = site
    odd = ("😀🚒" * 100, "😀" * 5000, "\u202eابحث\u0000", "ＡＢＣ　１２３", "<img src=x onerror=alert(1)>", "字" * 5000)
    for text in odd:
        status, body = await _post(url, config.accounts.agents[0].token,
                                   json.dumps({"content": text}, ensure_ascii=False).encode())
        assert status == 200 and body["platform"] in ("110", "12345", "other")
    status, body = await _post(url, config.accounts.agents[0].token, b'{"content": "\\ud800\\udfff\\ud800"}')
    assert status == 200
    status, body = await _post(url, "", json.dumps({"content": "x"}).encode())
    assert status == 401


async def test_the_key_press_ticket_carries_the_advice_of_its_draft(tmp_path: Path, redis: aioredis.Redis,
                                                                   advisor: AdviceService) -> None:
    config = Lab(rootfs=str(tmp_path)).site_config(PLANS["12345"])
    calls = CallRegistry()
    calls.resync(CHANNELS)
    tickets = TicketService(config, TicketStore(redis), TicketHooks())
    sending = SendingService(config, calls, tickets, _no_pbx, advisor=advisor)
    content = "来电人称听到邻居家有人呼救并有打斗声，请求警方处置。"
    await sending.set_draft(LINKEDID, {"content": content, "category": "report"})
    assert (content, "report") in advisor.cache  # computed at the save: the press reads it from memory
    target = config.target("110")
    assert target is not None
    ticket, _ = await sending.start(calls.calls[LINKEDID], "1795934017.11", target)
    assert ticket.advice is not None
    assert (ticket.advice.platform, ticket.advice.danger, ticket.advice.followed) == ("110", True, True)
    stored = await tickets.store.get(ticket.id)
    assert stored is not None and stored.advice == ticket.advice
    assert decode_ticket(encode(ticket)).advice == ticket.advice  # what a peer parses from the push
    plain = await SendingService(config, calls, tickets, _no_pbx, advisor=advisor).refer(
        "110", "web", "1001", "", {"content": "   "})
    assert plain.advice is None  # no content, nothing advised


async def _no_pbx(action: dict[str, str]) -> Any:
    raise AssertionError(f"no AMI action expected here: {action}")
