"""The public operations routes: health (for the load balancer and the lab) and Prometheus metrics."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web

from telephony.api.metrics import HttpMetrics
from telephony.config import SiteConfig
from telephony.delivery import deadletters
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

    async def prometheus(self, request: web.Request) -> web.Response:
        try:  # read at scrape time: the CLI may have replayed or dropped some since
            for peer in self.config.peers:
                count = await deadletters.count(self.redis, peer.name)
                self.metrics.delivery.dead_letters.labels(peer=peer.name).set(count)
        except STORE_ERRORS:
            pass  # Redis is down: the page still answers, /v1/health says why
        body, content_type = self.metrics.render()
        return web.Response(body=body, headers={"Content-Type": content_type})
