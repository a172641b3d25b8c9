"""The console's server side on a real server with a real Redis: durable drafts (saved, read back, taken into
the ticket by the write that stores it, surviving a controller restart), referrals without a call, who may
open which stream, and bulk export for the supervisor only, every export audited."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import CollectorRegistry
from throwaway import free_port

from linkage_lab.lab.lab import PLANS, Lab
from telephony.api import stream
from telephony.api.app import build_app
from telephony.api.metrics import HttpMetrics
from telephony.api.stream import StreamHub
from telephony.calls.registry import CallRegistry
from telephony.config import SiteConfig
from telephony.security.sealing import Sealer
from telephony.tickets.audit import AUDIT_KEY
from telephony.tickets.hooks import TicketHooks
from telephony.tickets.models import Event
from telephony.tickets.services import TicketService
from telephony.tickets.store import TicketStore, outbox_key
from telephony.transfers.drafts import DRAFT_TTL, DraftStore, draft_key
from telephony.transfers.sending import SendingService

REDIS_DB = 2  # the unit conftest's `redis` fixture gives this database, emptied
LINKEDID = "1795934017.10"
AGENT_LEG = "1795934017.11"
EVENTS = [
    {"Event": "Newchannel", "Uniqueid": LINKEDID, "Linkedid": LINKEDID, "Channel": "PJSIP/citizen-00000001",
     "CallerIDNum": "13912345678", "ChannelStateDesc": "Ring"},
    {"Event": "Newchannel", "Uniqueid": AGENT_LEG, "Linkedid": LINKEDID, "Channel": "PJSIP/agent1001-00000002",
     "CallerIDNum": "1001", "ChannelStateDesc": "Down"},
    {"Event": "BridgeEnter", "Uniqueid": LINKEDID, "Linkedid": LINKEDID},
    {"Event": "BridgeEnter", "Uniqueid": AGENT_LEG, "Linkedid": LINKEDID},
]


async def _no_pbx(action: dict[str, str]) -> Any:
    raise AssertionError(f"no AMI action expected here: {action}")


class Desk:
    def __init__(self, config: SiteConfig, redis: aioredis.Redis, url: str, sending: SendingService) -> None:
        self.config = config
        self.redis = redis
        self.url = url
        self.sending = sending
        self.site_token = config.controller.api_token
        self.tokens = {a.id: a.token for a in config.accounts.agents}

    async def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.site_token if token is None else token}"}
        data = None if body is None else json.dumps(body).encode()
        async with aiohttp.ClientSession() as s, s.request(method, self.url + path, data=data,
                                                           headers=headers) as resp:
            text = await resp.text()
            return resp.status, json.loads(text) if resp.content_type == "application/json" else text

    async def stream(self, query: str, token: str) -> tuple[int, str]:
        """The status, and the first line of the stream when it opened."""
        async with aiohttp.ClientSession() as s, s.get(f"{self.url}/v1/stream{query}",
                                                       headers={"Authorization": f"Bearer {token}"}) as resp:
            if resp.status != 200:
                return resp.status, (await resp.json())["error"]
            return resp.status, (await resp.content.readline()).decode().strip()


def _service(config: SiteConfig, redis: aioredis.Redis, calls: CallRegistry) -> SendingService:
    store = TicketStore(redis, Sealer(config.storage.keys))
    tickets = TicketService(config, store, TicketHooks())
    return SendingService(config, calls, tickets, _no_pbx, DraftStore(redis, store.sealer))


@pytest.fixture
async def desk(tmp_path: Path, redis: aioredis.Redis) -> AsyncIterator[Desk]:
    config = Lab(rootfs=str(tmp_path)).site_config(PLANS["12345"])
    calls = CallRegistry()
    for event in EVENTS:
        calls.on_event(event)
    sending = _service(config, redis, calls)

    async def health() -> dict[str, Any]:
        return {"ok": True}

    app = build_app(config, tickets=sending.tickets, transfers=sending, threeway=None, returns=None,  # type: ignore[arg-type]
                    calls=calls, hub=StreamHub(config.site.name), metrics=HttpMetrics(CollectorRegistry()),
                    health=health, redis=redis, sealer=sending.tickets.store.sealer, wake=lambda peer: None)
    port = free_port()
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield Desk(config, redis, f"http://127.0.0.1:{port}", sending)
    await runner.cleanup()


async def test_a_draft_is_saved_merged_read_back_and_sealed_at_rest(desk: Desk) -> None:
    path = f"/v1/calls/{LINKEDID}/draft"
    mine = desk.tokens["1001"]
    status, body = await desk.call("PUT", path, {"content": "路灯不亮", "urgency": "urgent"}, mine)
    assert status == 200 and body == {"linkedid": LINKEDID, "draft": {"content": "路灯不亮", "urgency": "urgent"}}
    status, body = await desk.call("PUT", path, {"officer_contact": "王警官 13800000000"}, mine)
    assert status == 200 and set(body["draft"]) == {"content", "urgency", "officer_contact"}
    status, body = await desk.call("GET", path, token=mine)
    assert status == 200 and body["draft"]["content"] == "路灯不亮"
    raw = await desk.redis.hget(draft_key(LINKEDID), "content")
    assert raw is not None and "路灯不亮".encode() not in raw  # sealed with the ticket store's keys
    assert 0 < await desk.redis.ttl(draft_key(LINKEDID)) <= DRAFT_TTL


async def test_drafts_are_the_calls_agents_only_and_validated(desk: Desk) -> None:
    path = f"/v1/calls/{LINKEDID}/draft"
    assert (await desk.call("GET", path, token=desk.tokens["1002"]))[0] == 403
    assert (await desk.call("PUT", path, {"content": "x"}, desk.tokens["1002"]))[0] == 403
    status, body = await desk.call("PUT", path, {"urgency": "whenever"})
    assert status == 400 and body["details"]["field"] == "urgency" and "normal" in body["message"]
    assert (await desk.call("GET", "/v1/calls/1795934099.1/draft"))[0] == 404
    assert await desk.redis.exists(draft_key(LINKEDID)) == 0  # nothing stored on refusal


async def test_the_draft_survives_a_restart_and_goes_into_the_ticket_with_it(desk: Desk, tmp_path: Path) -> None:
    await desk.call("PUT", f"/v1/calls/{LINKEDID}/draft", {"content": "井盖丢失", "division": "370811"})
    # a new run of the controller: nothing in memory; the call is learnt again from Asterisk
    calls = CallRegistry()
    calls.resync([{**e, "BridgeId": "b1"} for e in EVENTS if e["Event"] == "Newchannel"])
    fresh = _service(desk.config, desk.redis, calls)
    target = desk.config.target("110")
    assert target is not None
    ticket, _ = await fresh.start(calls.calls[LINKEDID], AGENT_LEG, target)
    assert (ticket.content, ticket.division, ticket.channel) == ("井盖丢失", "370811", "call")
    assert await desk.redis.exists(draft_key(LINKEDID)) == 0  # consumed by the write that stored the ticket


async def test_a_create_that_is_refused_leaves_the_draft(desk: Desk) -> None:
    """The draft goes in the same atomic write as the ticket: a refused write (the id exists) keeps it."""
    await desk.call("PUT", f"/v1/calls/{LINKEDID}/draft", {"content": "first"})
    store = desk.sending.tickets.store
    target = desk.config.target("110")
    assert target is not None
    ticket, _ = await desk.sending.start(desk.sending.calls.calls[LINKEDID], AGENT_LEG, target)
    assert ticket.content == "first" and await desk.redis.exists(draft_key(LINKEDID)) == 0
    await desk.sending.drafts.put(LINKEDID, {"content": "second"})
    assert not await store.create(ticket, [], consume=draft_key(LINKEDID))
    assert await desk.sending.drafts.get(LINKEDID) == {"content": "second"}


async def test_a_live_call_without_a_draft_reads_no_draft(desk: Desk) -> None:
    reads: list[str] = []
    drafts = desk.sending.drafts
    real_get = drafts.get

    async def counting_get(linkedid: str) -> dict[str, str]:
        reads.append(linkedid)
        return await real_get(linkedid)

    drafts.get = counting_get  # type: ignore[method-assign]
    target = desk.config.target("110")
    assert target is not None
    ticket, _ = await desk.sending.start(desk.sending.calls.calls[LINKEDID], AGENT_LEG, target)
    assert reads == [] and ticket.content == ""


async def test_the_calls_list_says_who_calls_and_since_when(desk: Desk) -> None:
    status, body = await desk.call("GET", "/v1/calls", token=desk.tokens["1001"])
    [call] = body["items"]
    assert status == 200 and (call["linkedid"], call["caller_number"]) == (LINKEDID, "13912345678")
    assert call["started_at"] <= call["bridged_at"]
    assert (await desk.call("GET", "/v1/calls", token=desk.tokens["1002"]))[1]["items"] == []


async def test_a_referral_is_a_ticket_without_a_call(desk: Desk) -> None:
    body = {"target": "110", "channel": "web", "caller_name": "张三", "caller_number": "13912345678",
            "category": "help", "content": "网上反映：小区门口有人打架", "address": "某路1号", "division": "370811",
            "urgency": "urgent"}
    status, ticket = await desk.call("POST", "/v1/transfers", body, desk.tokens["1001"])
    assert status == 201, ticket
    assert (ticket["mode"], ticket["channel"], ticket["linkedid"], ticket["uniqueids"]) == ("referral", "web", "", [])
    assert (ticket["agent_id"], ticket["status"], ticket["urgency"], ticket["caller_name"]) == (
        "1001", "created", "urgent", "张三")
    assert ticket["target"] == {"platform": "110", "site": "110"} and ticket["path"] == ["12345", "110"]
    assert await desk.redis.llen(outbox_key("110")) == 1  # pushed like a call's ticket
    status, stored = await desk.call("GET", f"/v1/tickets/{ticket['id']}")
    assert status == 200 and stored["content"] == body["content"]
    status, console = await desk.call("POST", "/v1/transfers", {"target": "110", "channel": "letter"})
    assert status == 201 and console["agent_id"] == "" and console["history"][0]["actor"].get("agent") is None


@pytest.mark.parametrize(("body", "field"), [
    ({"channel": "web"}, "target"),
    ({"target": "110"}, "channel"),
    ({"target": "110", "channel": "call"}, "channel"),
    ({"target": "110", "channel": "fax"}, "channel"),
    ({"target": "nowhere", "channel": "web"}, "target"),
    ({"target": "110", "channel": "web", "caller_number": "call me"}, "caller_number"),
    ({"target": "110", "channel": "web", "urgency": "asap"}, "urgency"),
    ({"target": "110", "channel": "web", "division": "37"}, "division"),
    ({"target": "110", "channel": "web", "content": "x" * 5001}, "content"),
    ({"target": "110", "channel": "web", "linkedid": "1.2"}, "linkedid"),
    ({"target": "110", "channel": 7}, "channel"),
    ({"target": "110", "channel": "web", "agent": "me"}, "agent"),
])
async def test_a_bad_referral_is_refused_naming_the_field(desk: Desk, body: dict[str, Any], field: str) -> None:
    status, answer = await desk.call("POST", "/v1/transfers", body)
    assert status == 400 and answer["details"].get("field") == field, answer
    assert "draft" not in answer["message"]
    assert await desk.redis.llen(outbox_key("110")) == 0


async def test_an_agent_refers_only_as_itself(desk: Desk) -> None:
    status, answer = await desk.call("POST", "/v1/transfers", {"target": "110", "channel": "app", "agent": "1002"},
                                     desk.tokens["1001"])
    assert status == 403 and answer["error"] == "forbidden"
    status, ticket = await desk.call("POST", "/v1/transfers", {"target": "110", "channel": "app", "agent": "1002"})
    assert status == 201 and ticket["agent_id"] == "1002"  # the site token acts for any agent


async def test_an_agent_opens_only_its_own_stream(desk: Desk, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream, "KEEP_ALIVE", 0.05)  # a closed stream is noticed at its next write
    mine = desk.tokens["1001"]
    assert await desk.stream("?agent=1002", mine) == (403, "forbidden")
    assert await desk.stream("", mine) == (200, ": connected")  # its own, not the site's
    assert await desk.stream("?agent=1001", mine) == (200, ": connected")
    assert await desk.stream("", desk.site_token) == (200, ": connected")
    assert await desk.stream("?agent=1002", desk.site_token) == (200, ": connected")
    assert (await desk.stream("?agent=x", desk.site_token))[0] == 400


async def test_export_is_the_supervisors_and_every_export_is_audited(desk: Desk) -> None:
    await desk.call("POST", "/v1/transfers", {"target": "110", "channel": "web", "category": "help"})
    await desk.call("POST", "/v1/transfers", {"target": "110", "channel": "email", "category": "report"})
    status, answer = await desk.call("GET", "/v1/tickets/export?format=csv", token=desk.tokens["1001"])
    assert status == 403 and answer["error"] == "forbidden"
    assert (await desk.call("GET", "/v1/audit/exports", token=desk.tokens["1001"]))[0] == 403
    assert await desk.redis.llen(AUDIT_KEY) == 0  # a refused export is no export
    status, text = await desk.call("GET", "/v1/tickets/export?format=csv")
    assert status == 200 and len(text.strip().splitlines()) == 3
    status, text = await desk.call("GET", "/v1/tickets/export?format=jsonl&category=help")
    assert status == 200 and len(text.strip().splitlines()) == 1
    status, audit = await desk.call("GET", "/v1/audit/exports")
    assert status == 200
    newest, oldest = audit["items"]
    assert (newest["format"], newest["filter"], newest["rows"], newest["complete"]) == (
        "jsonl", {"category": "help"}, 1, True)
    assert (oldest["format"], oldest["filter"], oldest["rows"], oldest["by"]) == ("csv", {}, 2, "site")
    assert newest["at"] >= oldest["at"] and newest["remote"] == "127.0.0.1"
    status, audit = await desk.call("GET", "/v1/audit/exports?limit=1")
    assert status == 200 and len(audit["items"]) == 1
    assert (await desk.call("GET", "/v1/audit/exports?limit=0"))[0] == 400


async def test_whoami_names_the_agent_or_the_supervisor_and_the_targets(desk: Desk) -> None:
    status, body = await desk.call("GET", "/v1/whoami", token=desk.tokens["1001"])
    assert status == 200 and body["role"] == "agent" and body["agent"] == "1001"
    assert body["site"] == desk.config.site.name and body["platform"] == desk.config.site.platform
    assert [t["name"] for t in body["targets"]] == [t.name for t in desk.config.targets]
    assert all(t["ticket"] == (t["name"] != "120") for t in body["targets"])
    status, body = await desk.call("GET", "/v1/whoami")
    assert status == 200 and (body["role"], body["agent"]) == ("supervisor", "")
    assert (await desk.call("GET", "/v1/whoami", token="x" * 24))[0] == 401


async def test_what_a_console_reads_says_what_is_due_next_and_by_when(desk: Desk) -> None:
    status, ticket = await desk.call("POST", "/v1/transfers", {"target": "110", "channel": "web"})
    assert status == 201 and "due" not in ticket  # the write's answer is the ticket itself
    status, read = await desk.call("GET", f"/v1/tickets/{ticket['id']}")
    assert status == 200 and read["due"] is None  # created, not delivered yet: nothing is due
    at = datetime.now(UTC).replace(microsecond=0)
    by_110 = {"platform": "110", "site": "110"}
    await desk.sending.tickets.apply_remote(Event(uuid.uuid4().hex, ticket["id"], "delivered",
                                                  at.isoformat().replace("+00:00", "Z"), by_110, seq=1), sender="110")
    expected = {"state": "accepted",
                "at": (at + timedelta(seconds=desk.config.supervision.accepted)).isoformat(
                    timespec="milliseconds").replace("+00:00", "Z")}
    status, read = await desk.call("GET", f"/v1/tickets/{ticket['id']}")
    assert status == 200 and read["due"] == expected
    status, listed = await desk.call("GET", "/v1/tickets?page_size=200")
    assert status == 200 and [t["due"] for t in listed["items"] if t["id"] == ticket["id"]] == [expected]
    stored = await desk.sending.tickets.store.get(ticket["id"])
    assert stored is not None and "due" not in stored.to_dict()  # computed on read, never stored or pushed


async def test_the_inbox_amends_a_ticket_and_a_refusal_names_the_field(desk: Desk) -> None:
    status, ticket = await desk.call("POST", "/v1/transfers", {"target": "110", "channel": "web", "content": "旧"})
    assert status == 201
    path = f"/v1/tickets/{ticket['id']}"
    fields = {"content": "<img src=x onerror=alert(1)> 新", "address": "某路2号", "category": "help"}
    status, amended = await desk.call("PATCH", path, {"agent": "1001", "fields": fields}, desk.tokens["1001"])
    assert status == 200 and {k: amended[k] for k in fields} == fields
    assert amended["history"][-1]["type"] == "amended"
    status, refused = await desk.call("PATCH", path, {"agent": "1001", "fields": {"category": "Not A Key"}})
    assert status == 400 and refused["details"]["field"].split(".")[-1] == "category"
    assert (await desk.call("GET", path))[1]["category"] == "help"  # nothing changed on refusal
