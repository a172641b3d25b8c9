"""HTTP adapter of delivery: the peer inbox routes (signed by a peer; see telephony/api/middleware.py) and the
supervisors' dead-letter routes. Handlers read and check the request, call the inbox or the dead letters, and
render the answer.
"""

from __future__ import annotations

from collections.abc import Callable

import redis.asyncio as aioredis
import structlog
from aiohttp import web

from telephony.config import SiteConfig
from telephony.delivery import batch, deadletters, outbox
from telephony.delivery.inbox import Inbox
from telephony.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from telephony.http_request import own_agent, read_json, signer, ticket_id
from telephony.security.sealing import Sealer
from telephony.tickets.store import ReplayMark

log = structlog.get_logger("http")


class DeliveryHttp:
    def __init__(self, config: SiteConfig, inbox: Inbox, redis: aioredis.Redis, sealer: Sealer,
                 wake: Callable[[str], None]) -> None:
        self.config = config
        self.inbox = inbox
        self.redis = redis
        self.sealer = sealer
        self.wake = wake  # the peer's delivery worker sends at once instead of at its next poll

    def _signed(self, request: web.Request) -> tuple[str, ReplayMark]:
        """The signing peer and the mark of its message (the middleware verified the signature)."""
        signed = signer(request)
        if signed is None:  # the middleware lets no unsigned request reach a peer route
            raise Unauthorized("this route needs a peer's signature")
        sender, message_id = signed
        return sender, self.inbox.memory.mark(sender, message_id)

    # ---- the peer inbox -----------------------------------------------------------------------------
    async def receive_ticket(self, request: web.Request) -> web.Response:
        sender, mark = self._signed(request)
        status, answer = await self.inbox.take_ticket(await read_json(request), sender, mark)
        return web.json_response(answer, status=status)

    async def receive_event(self, request: web.Request) -> web.Response:
        tid = ticket_id(request)  # first: a console token reaches here only with an id that is not one
        sender, mark = self._signed(request)
        await self.inbox.memory.check(mark)
        status, answer = await self.inbox.take_event(await read_json(request), sender, mark, tid)
        return web.json_response(answer, status=status)

    async def receive_batch(self, request: web.Request) -> web.Response:
        sender, mark = self._signed(request)
        await self.inbox.memory.check(mark)
        items = batch.parse(await read_json(request))
        results = await self.inbox.take_batch(items, sender, mark)
        return web.json_response({"results": [r.to_dict() for r in results]})

    async def lend_ticket(self, request: web.Request) -> web.Response:
        """GET /v1/tickets/{id} signed by a peer: a ticket fetched by reference."""
        _, mark = self._signed(request)
        await self.inbox.memory.check(mark)
        ticket = await self.inbox.lend(ticket_id(request), mark)
        return web.json_response(ticket.to_dict())

    # ---- dead letters (supervisors) -----------------------------------------------------------------
    def _supervisor(self, request: web.Request) -> None:
        if own_agent(request) is not None:
            raise Forbidden("dead letters are for supervisors: use the site's console token")

    def _peer(self, name: str) -> str:
        if self.config.peer(name) is None:
            raise NotFound(f"no configured peer named {name!r}"[:120])
        return name

    async def dead_letters(self, request: web.Request) -> web.Response:
        self._supervisor(request)
        if not set(request.query) <= {"peer"}:
            raise InvalidInput("the only query parameter is peer")
        names = [self._peer(request.query["peer"])] if "peer" in request.query else \
            [p.name for p in self.config.peers]
        peers = []
        for name in names:
            items = await deadletters.entries(self.redis, self.sealer, name)
            peers.append({"peer": name, "count": len(items), "items": [i.to_dict() for i in items]})
        return web.json_response({"peers": peers})

    async def health(self, request: web.Request) -> web.Response:
        """GET /v1/delivery: per peer, what waits in its outbox and since when, and its dead letters."""
        self._supervisor(request)
        if request.query:
            raise InvalidInput("this route takes no query parameters")
        peers = []
        for peer in self.config.peers:
            waiting = await outbox.backlog(self.redis, self.sealer, peer.name)
            peers.append({**waiting, "dead_letters": await deadletters.count(self.redis, peer.name)})
        return web.json_response({"peers": peers})

    async def replay_dead_letters(self, request: web.Request) -> web.Response:
        self._supervisor(request)
        peer = self._peer(request.match_info["peer"])
        body = await read_json(request)
        if isinstance(body, dict) and set(body) == {"all"} and body["all"] is True:
            moved = await deadletters.replay_all(self.redis, self.sealer, peer)
        elif isinstance(body, dict) and set(body) == {"index"} and type(body["index"]) is int \
                and body["index"] >= 0:
            moved = await deadletters.replay_one(self.redis, self.sealer, peer, body["index"])
        else:
            raise InvalidInput('body is {"index": N} (N >= 0, as listed) or {"all": true}')
        log.info("delivery.dead_replayed", peer=peer, count=moved, by="console")
        self.wake(peer)
        return web.json_response({"peer": peer, "replayed": moved})
