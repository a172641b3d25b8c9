"""The app factory's route table: every route in docs/openapi.yaml, in an order where overlapping paths resolve
as they must; and on a real server, GET /v1/tickets/{id} answers a console and a peer (signed, remembered for
the replay window) alike, while a console reaching a peer route with a malformed id is told about the id."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
import yaml
from aiohttp import web
from prometheus_client import CollectorRegistry
from throwaway import free_port

from linkage_lab.lab.lab import PLANS, Lab
from telephony.api.app import build_app
from telephony.api.metrics import HttpMetrics
from telephony.api.stream import StreamHub
from telephony.config import SiteConfig
from telephony.security import signing
from telephony.security.sealing import Sealer
from telephony.tickets.models import Party, Ticket
from telephony.tickets.services import TicketService
from telephony.tickets.store import TicketStore

REDIS_DB = 14  # the unit conftest's `redis` fixture gives this database, emptied
ROOT = Path(__file__).parents[2]
TID = "37080020260101120000123456"
# The table as the single router had it: order matters where paths overlap (export before {id}).
ROUTES = [("GET", "/v1/health"), ("GET", "/v1/ready"), ("GET", "/metrics"), ("GET", "/v1/whoami"),
          ("POST", "/v1/tickets"),
          ("POST", "/v1/batch"),
          ("GET", "/v1/tickets"), ("GET", "/v1/tickets/export"), ("GET", "/v1/tickets/{id}"),
          ("PATCH", "/v1/tickets/{id}"), ("POST", "/v1/tickets/{id}/events"),
          ("POST", "/v1/tickets/{id}/transitions"), ("GET", "/v1/calls"), ("PUT", "/v1/calls/{linkedid}/draft"),
          ("GET", "/v1/calls/{linkedid}/draft"), ("POST", "/v1/calls/{linkedid}/transfer"),
          ("POST", "/v1/calls/{linkedid}/threeway"), ("POST", "/v1/calls/{linkedid}/consult"),
          ("POST", "/v1/calls/{linkedid}/return"),
          ("POST", "/v1/transfers"), ("POST", "/v1/advice"), ("GET", "/v1/stream"),
          ("GET", "/v1/delivery"), ("GET", "/v1/dead-letters"), ("POST", "/v1/dead-letters/{peer}/replay"),
          ("GET", "/v1/audit/exports"), ("GET", "/v1/followups"), ("DELETE", "/v1/followups/{ticket_id}"),
          ("GET", "/v1/callers/flags"), ("POST", "/v1/callers/flags"), ("POST", "/v1/callers/unflag"),
          ("GET", "/v1/audit/flags"), ("GET", "/v1/callers/suggestions"), ("GET", "/v1/callers/counts"),
          ("GET", "/v1/queue"), ("POST", "/v1/queue/members/{agent}"),
          ("GET", "/v1/stats"), ("GET", "/console"), ("GET", "/console/{file}")]


async def _healthy() -> dict[str, Any]:
    return {"ok": True}


def _app(config: SiteConfig, redis: aioredis.Redis | None, tickets: TicketService | None = None) -> web.Application:
    return build_app(config, tickets=tickets, transfers=None, threeway=None, returns=None, calls=None,  # type: ignore[arg-type]
                     hub=StreamHub(config.site.name), metrics=HttpMetrics(CollectorRegistry()),
                    health=_healthy, redis=redis,  # type: ignore[arg-type]
                     sealer=Sealer(config.storage.keys), wake=lambda peer: None)


def _table(app: web.Application) -> list[tuple[str, str]]:
    return [(r.method, r.resource.canonical) for r in app.router.routes()
            if r.method != "HEAD" and r.resource is not None]


def test_the_route_table_is_the_documented_one_in_order(tmp_path: Path) -> None:
    spec = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text(encoding="utf-8"))
    documented = {(method.upper(), path) for path, ops in spec["paths"].items()
                  for method in ops if method in ("get", "post", "put", "patch", "delete")}
    table = _table(_app(Lab(rootfs=str(tmp_path)).site_config(PLANS["12345"]), None))
    assert table == ROUTES
    assert {(m, re.sub(r"\{(\w+)\}", r"{\1}", p)) for m, p in table} == documented


class Desk:
    def __init__(self, config: SiteConfig, redis: aioredis.Redis, url: str) -> None:
        self.config = config
        self.redis = redis
        self.url = url


@pytest.fixture
async def desk(tmp_path: Path, redis: aioredis.Redis) -> AsyncIterator[Desk]:
    config = Lab(rootfs=str(tmp_path)).site_config(PLANS["12345"])
    store = TicketStore(redis, Sealer(config.storage.keys))
    await store.put(Ticket(id=TID, direction="12345->110", source=Party("12345", "12345"),
                           target=Party("110", "110"), caller_number="", agent_id="1001",
                           linkedid="1767268800.1", uniqueids=[], created_at="2026-01-01T12:00:00.000Z"))
    port = free_port()
    runner = web.AppRunner(_app(config, redis, TicketService(config, store, lambda peer, head=None: None)),
                           access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield Desk(config, redis, f"http://127.0.0.1:{port}")
    await runner.cleanup()


async def _request(method: str, url: str, headers: dict[str, str], data: bytes = b"") -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.request(method, url, headers=headers, data=data) as resp:
        return resp.status, await resp.json()


async def test_a_ticket_is_read_by_a_console_and_fetched_by_a_peer(desk: Desk) -> None:
    console = {"Authorization": f"Bearer {desk.config.controller.api_token}"}
    status, body = await _request("GET", f"{desk.url}/v1/tickets/{TID}", console)
    assert status == 200 and body["id"] == TID and await desk.redis.keys("linkage:seen:*") == []
    peer = desk.config.peer("110")
    assert peer is not None
    signed = signing.headers("110", peer.secrets, "fetch-1", b"")
    status, body = await _request("GET", f"{desk.url}/v1/tickets/{TID}", signed)
    assert status == 200 and body["id"] == TID
    assert await desk.redis.exists("linkage:seen:110:fetch-1") == 1
    status, body = await _request("GET", f"{desk.url}/v1/tickets/{TID}", signed)
    assert status == 409 and body["error"] == "replayed"
    missing = signing.headers("110", peer.secrets, "fetch-2", b"")
    status, body = await _request("GET", f"{desk.url}/v1/tickets/{'9' * 26}", missing)
    assert status == 404 and await desk.redis.exists("linkage:seen:110:fetch-2") == 0  # may be fetched again


async def test_a_console_on_a_peer_route_with_a_malformed_id_hears_about_the_id(desk: Desk) -> None:
    console = {"Authorization": f"Bearer {desk.config.controller.api_token}"}
    status, body = await _request("POST", f"{desk.url}/v1/tickets/12/events", console, b"{}")
    assert status == 400 and body["error"] == "invalid_input" and "20-32 digits" in body["message"]
    status, body = await _request("POST", f"{desk.url}/v1/tickets/{TID}/events", console, b"{}")
    assert status == 401  # a well-formed id makes it a peer route: a signature is needed
