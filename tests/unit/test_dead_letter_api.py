"""The supervisors' dead-letter routes on a real server (loopback, a port above the lab's range) with a real
Redis: site token only, strict bodies, replay wakes the peer's worker; the replay memory lasts the configured
window; the dead-letter count is on /metrics."""

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
from telephony.api.app import build_app
from telephony.api.metrics import HttpMetrics
from telephony.api.stream import StreamHub
from telephony.config import SiteConfig
from telephony.delivery import deadletters
from telephony.security import signing
from telephony.security.sealing import Sealer
from telephony.tickets.hooks import TicketHooks
from telephony.tickets.models import Party, Ticket
from telephony.tickets.services import TicketService
from telephony.tickets.store import TicketStore, outbox_key

REDIS_DB = 11  # the unit conftest's `redis` fixture gives this database, emptied
TID = "37080020260101120000123456"


class Site:
    def __init__(self, config: SiteConfig, redis: aioredis.Redis, url: str) -> None:
        self.config = config
        self.redis = redis
        self.url = url
        self.store = TicketStore(redis, Sealer(config.storage.keys))
        self.notified: list[str] = []
        self.agent_token = next(a.token for a in config.accounts.agents if a.token)

    async def park(self, n: int) -> None:
        message = {"kind": "event", "body": {"id": f"{n:032x}", "ticket_id": TID, "type": "accepted"}}
        await self.redis.rpush(deadletters.dead_key("110"), deadletters.envelope(self.store.sealer, message, "no"))

    async def call(self, method: str, path: str, body: Any = None, token: str | None = None,
                   raw: bytes | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.config.controller.api_token if token is None else token}"}
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        async with aiohttp.ClientSession() as s, s.request(method, self.url + path, data=data,
                                                           headers=headers) as resp:
            text = await resp.text()
            return resp.status, json.loads(text) if "json" in resp.content_type else text


@pytest.fixture
async def site(tmp_path: Path, redis: aioredis.Redis) -> AsyncIterator[Site]:
    config = Lab(rootfs=str(tmp_path)).site_config(PLANS["12345"])
    port = free_port()
    s = Site(config, redis, f"http://127.0.0.1:{port}")
    tickets = TicketService(config, s.store, TicketHooks(queued=lambda site, head=None: s.notified.append(site)))

    async def health() -> dict[str, Any]:
        return {"ok": True}

    app = build_app(config, tickets=tickets, transfers=None, threeway=None, returns=None, calls=None,  # type: ignore[arg-type]
                    hub=StreamHub(config.site.name), metrics=HttpMetrics(CollectorRegistry()),
                    health=health, redis=redis,
                    sealer=s.store.sealer, wake=s.notified.append)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield s
    await runner.cleanup()


async def test_list_is_for_the_site_token_only(site: Site) -> None:
    await site.park(1)
    status, body = await site.call("GET", "/v1/dead-letters")
    assert status == 200
    [peer] = body["peers"]
    assert (peer["peer"], peer["count"]) == ("110", 1)
    assert peer["items"][0]["event_id"] == f"{1:032x}" and peer["items"][0]["error"] == "no"
    assert (await site.call("GET", "/v1/dead-letters?peer=110"))[0] == 200
    assert (await site.call("GET", "/v1/dead-letters", token=site.agent_token))[0] == 403
    assert (await site.call("GET", "/v1/dead-letters", token="x" * 20))[0] == 401
    assert (await site.call("GET", "/v1/dead-letters?peer=nowhere"))[0] == 404
    assert (await site.call("GET", "/v1/dead-letters?peers=110"))[0] == 400


@pytest.mark.parametrize("body", [{}, {"index": -1}, {"index": "0"}, {"index": True}, {"index": 0.0},
                                  {"all": 1}, {"all": False}, {"all": "true"}, {"index": 0, "all": True},
                                  [0], "all", None])
async def test_replay_bodies_are_strict(site: Site, body: Any) -> None:
    await site.park(1)
    status, answer = await site.call("POST", "/v1/dead-letters/110/replay", raw=json.dumps(body).encode())
    assert status == 400 and answer["error"] == "invalid_input"
    assert await deadletters.count(site.redis, "110") == 1 and site.notified == []


async def test_replay_moves_to_the_outbox_and_wakes_the_worker(site: Site) -> None:
    for n in (1, 2, 3):
        await site.park(n)
    assert (await site.call("POST", "/v1/dead-letters/nowhere/replay", {"index": 0}))[0] == 404
    assert (await site.call("POST", "/v1/dead-letters/110/replay", {"index": 3}))[0] == 404
    assert (await site.call("POST", "/v1/dead-letters/110/replay", {"index": 0},
                            token=site.agent_token))[0] == 403
    assert (await site.call("POST", "/v1/dead-letters/110/replay", raw=b"{not json"))[0] == 400
    assert await site.call("POST", "/v1/dead-letters/110/replay", {"index": 1}) == \
        (200, {"peer": "110", "replayed": 1})
    assert site.notified == ["110"]
    assert await site.call("POST", "/v1/dead-letters/110/replay", {"all": True}) == \
        (200, {"peer": "110", "replayed": 2})
    queued = [json.loads(site.store.sealer.open(m))["body"]["id"]
              for m in await site.redis.lrange(outbox_key("110"), 0, -1)]
    assert queued == [f"{n:032x}" for n in (2, 1, 3)]
    assert 'linkage_delivery_dead_letters{peer="110"} 0' in (await site.call("GET", "/metrics"))[1]


async def test_metrics_count_dead_letters(site: Site) -> None:
    await site.park(1)
    await site.park(2)
    status, text = await site.call("GET", "/metrics")
    assert status == 200 and 'linkage_delivery_dead_letters{peer="110"} 2' in text


async def test_a_processed_peer_message_id_is_remembered_for_the_replay_window(site: Site) -> None:
    ticket = Ticket(id=TID, direction="12345->110", source=Party("12345", "12345"), target=Party("110", "110"),
                    caller_number="", agent_id="1001", linkedid="1767268800.1", uniqueids=[],
                    created_at="2026-01-01T12:00:00.000Z")
    await site.store.put(ticket)
    peer = site.config.peer("110")
    assert peer is not None
    headers = signing.headers("110", peer.secrets, "fetch-1", b"")
    async with aiohttp.ClientSession() as s, s.get(f"{site.url}/v1/tickets/{TID}", headers=headers) as resp:
        assert resp.status == 200
    ttl = await site.redis.ttl("linkage:seen:110:fetch-1")
    assert site.config.security.replay_window == 8 * 86400
    assert site.config.security.replay_window - 60 < ttl <= site.config.security.replay_window


async def test_delivery_health_shows_what_waits_for_each_peer(site: Site) -> None:
    assert await site.call("GET", "/v1/delivery") == \
        (200, {"peers": [{"peer": "110", "queued": 0, "oldest_since": None, "dead_letters": 0}]})
    await site.park(1)
    event = {"kind": "event", "body": {"id": f"{7:032x}", "type": "accepted", "at": "2026-12-01T20:00:00.000Z"}}
    push = {"kind": "ticket", "queued_at": 1796155200.5, "body": {"id": TID}}
    for message in (event, push):
        await site.redis.rpush(outbox_key("110"), site.store.sealer.seal(json.dumps(message)))
    status, body = await site.call("GET", "/v1/delivery")
    assert status == 200 and body == {"peers": [{"peer": "110", "queued": 2, "oldest_since": 1796155200.0,
                                                 "dead_letters": 1}]}
    assert (await site.call("GET", "/v1/delivery", token=site.agent_token))[0] == 403
    assert (await site.call("GET", "/v1/delivery?peer=110"))[0] == 400
