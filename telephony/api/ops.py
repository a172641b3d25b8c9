"""The operations routes: health (public, for the load balancer and the lab), Prometheus metrics (public) and
`whoami` (a token's own view of the site: who it acts as and what it may transfer to, for the console)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web

from telephony.api.metrics import HttpMetrics
from telephony.config import SiteConfig
from telephony.delivery import deadletters
from telephony.http_request import own_agent
from telephony.tickets.store import STORE_ERRORS

HealthCheck = Callable[[], Awaitable[dict[str, Any]]]


class Ops:
    def __init__(self, config: SiteConfig, health: HealthCheck, metrics: HttpMetrics, redis: aioredis.Redis) -> None:
        self.config = config
        self.health_check = health
        self.metrics = metrics
        self.redis = redis

    async def health(self, request: web.Request) -> web.Response:
        state = await self.health_check()
        return web.json_response(state, status=200 if state.get("ok") else 503)

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
        try:  # read at scrape time: the CLI may have replayed or dropped some since
            for peer in self.config.peers:
                count = await deadletters.count(self.redis, peer.name)
                self.metrics.delivery.dead_letters.labels(peer=peer.name).set(count)
        except STORE_ERRORS:
            pass  # Redis is down: the page still answers, /v1/health says why
        body, content_type = self.metrics.render()
        return web.Response(body=body, headers={"Content-Type": content_type})
