"""The operations routes: liveness (`/v1/health`) and readiness (`/v1/ready`), public, for a balancer, systemd or
an orchestrator and the lab; Prometheus metrics (public) and
`whoami` (a token's own view of the site: who it acts as and what it may transfer to, for the console)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web

from telephony.api.metrics import HttpMetrics
from telephony.config import SiteConfig
from telephony.delivery import deadletters, outbox
from telephony.http_request import own_agent
from telephony.security.sealing import Sealer
from telephony.tickets.store import STORE_ERRORS

HealthCheck = Callable[[], Awaitable[dict[str, Any]]]


class Ops:
    def __init__(self, config: SiteConfig, health: HealthCheck, metrics: HttpMetrics, redis: aioredis.Redis,
                 sealer: Sealer) -> None:
        self.config = config
        self.sealer = sealer
        self.health_check = health
        self.metrics = metrics
        self.redis = redis

    async def health(self, request: web.Request) -> web.Response:
        """GET /v1/health, liveness: 200 whenever the controller answers at all. The body says how its links
        are (`ok` = Redis and AMI both up); a restart would not bring either back, so it never fails for them."""
        state = await self.health_check()
        return web.json_response({**state, "alive": True})

    async def ready(self, request: web.Request) -> web.Response:
        """GET /v1/ready, readiness: 503 with the reasons (and Retry-After) while Redis or AMI is away, so a
        balancer or an orchestrator sends nothing here until both are back."""
        state = await self.health_check()
        reasons = [*([] if state.get("redis") else ["redis unreachable"]),
                   *([] if state.get("ami") else ["AMI not logged in"])]
        body = {"ready": not reasons, "reasons": reasons, "site": state.get("site"), "redis": state.get("redis"),
                "ami": state.get("ami")}
        if reasons:
            return web.json_response(body, status=503, headers={"Retry-After": "1"})
        return web.json_response(body)

    async def whoami(self, request: web.Request) -> web.Response:
        """GET /v1/whoami: the agent an agent's token acts as (role `agent`), or the supervisor (the site token),
        with the site and its transfer targets, so a console needs no list of its own."""
        agent = own_agent(request)
        targets = [{"name": t.name, "platform": t.platform, "key": t.key, "ticket": t.phone is None}
                   for t in self.config.targets]
        return web.json_response({
            "site": self.config.site.name, "platform": self.config.site.platform,
            "role": "supervisor" if agent is None else "agent", "agent": agent or "",
            "agents": [a.id for a in self.config.accounts.agents], "targets": targets,
            "keys": {"threeway": self.config.keys.threeway, "consult": self.config.keys.consult}})

    async def prometheus(self, request: web.Request) -> web.Response:
        delivery = self.metrics.delivery
        try:  # read at scrape time: the CLI may have replayed or dropped some since
            for peer in self.config.peers:
                count = await deadletters.count(self.redis, peer.name)
                delivery.dead_letters.labels(peer=peer.name).set(count)
                waiting = await outbox.backlog(self.redis, self.sealer, peer.name)
                delivery.queued.labels(peer=peer.name).set(waiting["queued"])
                since = waiting["oldest_since"]
                delivery.oldest_age.labels(peer=peer.name).set(max(0.0, time.time() - since) if since else 0.0)
            delivery.redis_up.set(1)
        except STORE_ERRORS:
            delivery.redis_up.set(0)  # the page still answers; /v1/ready says why
        body, content_type = self.metrics.render()
        return web.Response(body=body, headers={"Content-Type": content_type})
