"""Routes under /v1 (documented in docs/openapi.yaml, which a test checks against this router).

- peer side: receive a ticket, receive an event, receive a batch of both, fetch a ticket by reference;
- agent/CTI side: list calls, draft the ticket of a call, transfer a call, amend a ticket, post lifecycle
  transitions, the event stream (SSE) for screen pops;
- query: tickets by status, time, division, category, direction (paginated), one ticket with its history,
  bulk export (JSON lines, CSV);
- ops: health, Prometheus metrics, dead letters (list, replay) for supervisors.
Every body is size-bounded, parsed strictly and validated before anything is stored; errors are JSON with a
stable error id and a message for the person reading it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

from telephony.api.stream import StreamHub, sse
from telephony.calls.registry import CallRegistry
from telephony.config import SiteConfig
from telephony.delivery import batch, deadletters
from telephony.errors import (
    Forbidden,
    InvalidInput,
    LinkageError,
    NotFound,
    PayloadTooLarge,
    Replayed,
    TooManyRequests,
    Unauthorized,
)
from telephony.ids import AGENT_ID, OPTIONAL_AGENT_ID, TICKET_ID, UNIQUEID
from telephony.metrics import Metrics
from telephony.security import signing
from telephony.security.ratelimit import RateLimiter
from telephony.threeway.services import ThreewayService
from telephony.tickets import queries
from telephony.tickets.models import (
    EVENT_TYPES,
    parse_draft,
    parse_event,
    parse_payload,
    parse_ticket,
)
from telephony.tickets.services import TicketService
from telephony.tickets.store import REMEMBER, STORE_ERRORS, Remember
from telephony.transfers.services import TransferService

log = structlog.get_logger("http")
MAX_BODY = 64 * 1024
PEER_ROUTE = re.compile(r"^/v1/(batch|tickets(/[0-9]{20,32}/events)?)$")
TICKET_ROUTE = re.compile(r"^/v1/tickets/[0-9]{20,32}$")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PUBLIC = {"/v1/health", "/metrics"}
STORE_UNAVAILABLE = "store_unavailable"
LOCAL_TRANSITIONS = EVENT_TYPES - {"created", "delivered", "offered", "abandoned", "overdue", "routed",
                                   "transferred", "amended"}


class Api:
    def __init__(self, config: SiteConfig, tickets: TicketService, transfers: TransferService,
                 calls: CallRegistry, health: Callable[[], Awaitable[dict[str, Any]]], metrics: Metrics,
                 hub: StreamHub, conference: ThreewayService) -> None:
        self.config = config
        self.tickets = tickets
        self.transfers = transfers
        self.calls = calls
        self.health_check = health
        self.metrics = metrics
        self.hub = hub
        self.conference = conference
        self.tokens = {config.controller.api_token}  # the site's console token: supervisors, may act for any agent
        self.agent_tokens = {a.token: a.id for a in config.accounts.agents if a.token}
        self.limiter = RateLimiter(config.controller.rate_per_second, config.controller.rate_burst)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.errors], client_max_size=MAX_BODY)
        r = app.router
        r.add_get("/v1/health", self.health)
        r.add_get("/metrics", self.prometheus)
        r.add_post("/v1/tickets", self.receive_ticket)
        r.add_post("/v1/batch", self.receive_batch)
        r.add_get("/v1/tickets", self.list_tickets)
        r.add_get("/v1/tickets/export", self.export)
        r.add_get("/v1/tickets/{id}", self.get_ticket)
        r.add_patch("/v1/tickets/{id}", self.amend)
        r.add_post("/v1/tickets/{id}/events", self.receive_event)
        r.add_post("/v1/tickets/{id}/transitions", self.transition)
        r.add_get("/v1/calls", self.list_calls)
        r.add_put("/v1/calls/{linkedid}/draft", self.put_draft)
        r.add_post("/v1/calls/{linkedid}/transfer", self.transfer)
        r.add_post("/v1/calls/{linkedid}/threeway", self.threeway)
        r.add_get("/v1/stream", self.stream)
        r.add_get("/v1/dead-letters", self.dead_letters)
        r.add_post("/v1/dead-letters/{peer}/replay", self.replay_dead_letters)
        return app

    @web.middleware
    async def errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(http=f"{request.method} {request.path}")
        try:
            if request.path in PUBLIC:
                return await handler(request)
            seen_key = await self._authenticate(request)
            caller = request.headers.get("linkage-site", "") if seen_key else request.get("agent") or "console"
            wait = self.limiter.take(caller)
            if wait:
                raise TooManyRequests(f"too many requests from {caller}; retry in {wait:.2f} s",
                                      retry_after=round(wait, 2))
            if seen_key is None:
                return await handler(request)
            # A pushed ticket's replay check is in the store's write (one round trip less on the path of a
            # call waiting to ring here); other messages may read before they write, so they check first.
            if request.path != "/v1/tickets" and await self.tickets.store.redis.exists(seen_key):
                raise Replayed("this message id was already processed; nothing changed")
            async with self._once(seen_key) as outcome:
                response = await handler(request)
                outcome.status = response.status
            return response
        except LinkageError as exc:
            self._refused(exc)
            headers = {"Retry-After": str(max(1, round(exc.details["retry_after"])))} \
                if "retry_after" in exc.details else None
            return web.json_response(exc.to_dict(), status=exc.status, headers=headers)
        except STORE_ERRORS as exc:  # Redis restarting: nothing was written; the caller (or peer) retries
            log.warning("http.store_unavailable", error=exc.__class__.__name__)
            body = {"error": STORE_UNAVAILABLE, "message": "the ticket store is unavailable; retry shortly",
                    "details": {}}
            return web.json_response(body, status=503, headers={"Retry-After": "1"})
        except web.HTTPRequestEntityTooLarge:
            err = PayloadTooLarge(f"body larger than {MAX_BODY} bytes")
            return web.json_response(err.to_dict(), status=413)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            body = {"error": "http_error", "message": exc.reason, "details": {}}
            return web.json_response(body, status=exc.status)

    def _refused(self, exc: LinkageError) -> None:
        self.metrics.inc("linkage_http_refused_total", status=str(exc.status))
        log.info("http.refused", status=exc.status, error=exc.error_id, reason=exc.message)

    @contextlib.asynccontextmanager
    async def _once(self, seen_key: str) -> AsyncIterator[Remember]:
        """Handling one signed peer message (alone or in a batch): its replay key is remembered once it was
        processed (set `status` to the answer's), so a failed attempt can be retried. The store writes the key
        in the same atomic step as the ticket change the message causes (one fsync'd write, not two); a message
        that changed nothing gets it written here. The sender retries the same message id for days (a peer down
        over a long weekend), so the window (`replay_window`) must be longer than that."""
        remember = Remember(seen_key, round(self.config.security.replay_window), asyncio.current_task())
        token = REMEMBER.set(remember)
        try:
            yield remember
        finally:
            REMEMBER.reset(token)
        if remember.status < 300 and not remember.done:
            await self.tickets.store.redis.set(seen_key, "1", ex=remember.ttl)

    async def _authenticate(self, request: web.Request) -> str | None:
        """Peer routes need a peer's signature; reading a ticket takes a signature or a console token; the
        rest a console token. Returns the replay key of a signed request."""
        peer_route = request.method == "POST" and PEER_ROUTE.match(request.path) is not None
        signed = "webhook-signature" in request.headers
        if peer_route or (signed and request.method == "GET" and TICKET_ROUTE.match(request.path)):
            site = request.headers.get("linkage-site", "")
            peer = self.config.peer(site)
            if peer is None:
                raise Unauthorized("linkage-site names no configured peer")
            if request.content_length is not None and request.content_length > MAX_BODY:
                raise PayloadTooLarge(f"body larger than {MAX_BODY} bytes")
            message_id = signing.verify(peer.secrets, request.headers, await request.read())
            return f"linkage:seen:{site}:{message_id}"
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip()
        if token and any(hmac.compare_digest(token, t) for t in self.tokens):
            return None
        agent = next((a for t, a in self.agent_tokens.items() if token and hmac.compare_digest(token, t)), None)
        if agent is None:
            raise Unauthorized("missing or wrong bearer token")
        request["agent"] = agent  # an agent's own token: it acts for that agent only
        return None

    async def _json(self, request: web.Request) -> Any:
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise PayloadTooLarge(f"body larger than {MAX_BODY} bytes")
        raw = await request.read()
        if len(raw) > MAX_BODY:
            raise PayloadTooLarge(f"body larger than {MAX_BODY} bytes")
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"body is not valid JSON: {exc}") from exc

    @staticmethod
    def _ticket_id(request: web.Request) -> str:
        ticket_id = request.match_info["id"]
        if not TICKET_ID.match(ticket_id):
            raise InvalidInput("ticket id must be 20-32 digits")
        return ticket_id

    @staticmethod
    def _agent(request: web.Request, body: dict[str, Any]) -> str:
        agent = body.get("agent", "")
        if not isinstance(agent, str) or not agent or not AGENT_ID.match(agent):
            raise InvalidInput("field 'agent' (the agent's id, digits) is required", field="agent")
        own = request.get("agent")
        if own is not None and own != agent:
            raise Forbidden(f"this token belongs to agent {own}, not {agent}", agent=own)
        return agent

    @staticmethod
    def _own_call(request: web.Request, call_legs: list[str]) -> None:
        own = request.get("agent")
        if own is not None and f"agent{own}" not in call_legs:
            raise Forbidden(f"that call is not agent {own}'s", agent=own)

    # ---- ops ----------------------------------------------------------------------------------------
    async def health(self, request: web.Request) -> web.Response:
        state = await self.health_check()
        return web.json_response(state, status=200 if state.get("ok") else 503)

    async def prometheus(self, request: web.Request) -> web.Response:
        try:  # read at scrape time: the CLI may have replayed or dropped some since
            for peer in self.config.peers:
                count = await deadletters.count(self.tickets.store.redis, peer.name)
                self.metrics.set("linkage_delivery_dead_letters", count, peer=peer.name)
        except STORE_ERRORS:
            pass  # Redis is down: the page still answers, /v1/health says why
        return web.Response(text=self.metrics.render(), content_type="text/plain")

    def _supervisor(self, request: web.Request) -> None:
        if request.get("agent") is not None:
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
        store = self.tickets.store
        peers = []
        for name in names:
            items = await deadletters.entries(store.redis, store.sealer, name)
            peers.append({"peer": name, "count": len(items), "items": [i.to_dict() for i in items]})
        return web.json_response({"peers": peers})

    async def replay_dead_letters(self, request: web.Request) -> web.Response:
        self._supervisor(request)
        peer = self._peer(request.match_info["peer"])
        body = await self._json(request)
        store = self.tickets.store
        if isinstance(body, dict) and set(body) == {"all"} and body["all"] is True:
            moved = await deadletters.replay_all(store.redis, store.sealer, peer)
        elif isinstance(body, dict) and set(body) == {"index"} and type(body["index"]) is int \
                and body["index"] >= 0:
            moved = await deadletters.replay_one(store.redis, store.sealer, peer, body["index"])
        else:
            raise InvalidInput('body is {"index": N} (N >= 0, as listed) or {"all": true}')
        log.info("delivery.dead_replayed", peer=peer, count=moved, by="console")
        self.tickets.notify(peer, None)  # the peer's worker sends at once instead of at its next poll
        return web.json_response({"peer": peer, "replayed": moved})

    # ---- peer side ----------------------------------------------------------------------------------
    async def receive_ticket(self, request: web.Request) -> web.Response:
        status, answer = await self._take_ticket(await self._json(request), request.headers.get("linkage-site", ""))
        return web.json_response(answer, status=status)

    async def receive_event(self, request: web.Request) -> web.Response:
        ticket_id = self._ticket_id(request)
        status, answer = await self._take_event(await self._json(request), request.headers.get("linkage-site", ""),
                                                ticket_id)
        return web.json_response(answer, status=status)

    async def receive_batch(self, request: web.Request) -> web.Response:
        """Messages in the sender's outbox order, each handled as its single route would; stops after the first
        the sender must retry, so nothing after it is taken out of order."""
        items = batch.parse(await self._json(request))
        sender = request.headers.get("linkage-site", "")
        keys = [f"linkage:seen:{sender}:{item.id}" for item in items]
        seen = {k for k, v in zip(keys, await self.tickets.store.redis.mget(keys), strict=True) if v is not None}
        results = []
        for item, key in zip(items, keys, strict=True):
            result = await self._take(item, sender, key, key in seen)
            results.append(result.to_dict())
            if result.status < 300:
                seen.add(key)  # the same id again in this batch is a replay, as it would be alone
            elif batch.retriable(result.status, result.error):
                break
        return web.json_response({"results": results})

    async def _take(self, item: batch.Item, sender: str, seen_key: str, seen: bool) -> batch.Result:
        structlog.contextvars.bind_contextvars(message_id=item.id)
        try:
            if seen:
                raise Replayed("this message id was already processed; nothing changed")
            async with self._once(seen_key) as outcome:
                if item.kind == "ticket":
                    outcome.status, _ = await self._take_ticket(item.body, sender)
                else:
                    outcome.status, _ = await self._take_event(item.body, sender)
            return batch.Result(item.id, outcome.status)
        except LinkageError as exc:
            self._refused(exc)
            return batch.Result(item.id, exc.status, exc.error_id)
        except STORE_ERRORS as exc:
            log.warning("http.store_unavailable", error=exc.__class__.__name__)
            return batch.Result(item.id, 503, STORE_UNAVAILABLE)
        finally:
            structlog.contextvars.unbind_contextvars("message_id")

    async def _take_ticket(self, data: Any, sender: str) -> tuple[int, dict[str, Any]]:
        ticket = parse_ticket(data)
        if sender != ticket.source.site and sender not in ticket.path:
            raise Forbidden(f"site {sender} may not push a ticket that neither comes from it nor passed through it")
        if self.config.site.name not in (ticket.path or [ticket.target.site]):
            raise InvalidInput(f"ticket is addressed to site {ticket.target.site}, not {self.config.site.name}")
        if ticket.source.site == self.config.site.name:
            raise InvalidInput("a ticket created here cannot be received from a peer")
        stored, created = await self.tickets.receive(ticket, via="push")
        return 201 if created else 200, {"id": stored.id, "status": stored.status, "created": created}

    async def _take_event(self, data: Any, sender: str, ticket_id: str | None = None) -> tuple[int, dict[str, Any]]:
        event = parse_event(data)
        if ticket_id is not None and event.ticket_id != ticket_id:
            raise InvalidInput("event ticket_id does not match the URL")
        ticket, outcome = await self.tickets.apply_remote(event, sender=sender)
        return 202 if outcome == "queued" else 200, {"id": ticket.id, "status": ticket.status, "outcome": outcome,
                                                     "applied": outcome == "applied"}

    async def get_ticket(self, request: web.Request) -> web.Response:
        ticket_id = self._ticket_id(request)
        ticket = await self.tickets.store.get(ticket_id)
        if ticket is None:
            raise NotFound(f"ticket {ticket_id} not found")
        return web.json_response(ticket.to_dict())

    # ---- agent / CTI side ---------------------------------------------------------------------------
    async def list_calls(self, request: web.Request) -> web.Response:
        agent = request.get("agent") or request.query.get("agent")  # an agent's token sees its own calls
        calls = []
        for c in self.calls.calls.values():
            legs = [{"uniqueid": leg.uniqueid, "channel": leg.channel, "endpoint": leg.endpoint, "state": leg.state}
                    for leg in c.legs.values()]
            if agent and not any(leg["endpoint"] == f"agent{agent}" for leg in legs):
                continue
            calls.append({"linkedid": c.linkedid, "legs": legs, "bridged": c.bridged_at is not None,
                          "ticket_id": c.ticket_id, "transferring": c.transferring})
        return web.json_response({"items": calls})

    async def put_draft(self, request: web.Request) -> web.Response:
        linkedid = request.match_info["linkedid"]
        if not UNIQUEID.match(linkedid):
            raise InvalidInput("linkedid has an invalid format")
        draft = parse_draft(await self._json(request))
        call = self.calls.get(linkedid)
        if call is not None:
            self._own_call(request, [leg.endpoint for leg in call.legs.values()])
        return web.json_response({"linkedid": linkedid, "draft": self.transfers.set_draft(linkedid, draft)})

    async def transfer(self, request: web.Request) -> web.Response:
        linkedid = request.match_info["linkedid"]
        if not UNIQUEID.match(linkedid):
            raise InvalidInput("linkedid has an invalid format")
        body = await self._json(request)
        if not isinstance(body, dict) or not set(body) <= {"target", "agent"}:
            raise InvalidInput("body is {target, agent}")
        target = body.get("target") or (self.config.targets[0].name if self.config.targets else "")
        if not isinstance(target, str):
            raise InvalidInput("field 'target' must be a string", field="target")
        ticket = await self.transfers.http_transfer(linkedid, target, self._agent(request, body))
        return web.json_response({"ticket_id": ticket.id, "status": ticket.status}, status=202)

    async def threeway(self, request: web.Request) -> web.Response:
        linkedid = request.match_info["linkedid"]
        if not UNIQUEID.match(linkedid):
            raise InvalidInput("linkedid has an invalid format")
        body = await self._json(request)
        if not isinstance(body, dict) or not set(body) <= {"agent"}:
            raise InvalidInput("body is {agent}")
        ticket = await self.conference.http_threeway(linkedid, self._agent(request, body))
        return web.json_response({"ticket_id": ticket.id, "conference": ticket.id}, status=202)

    async def amend(self, request: web.Request) -> web.Response:
        ticket_id = self._ticket_id(request)
        body = await self._json(request)
        if not isinstance(body, dict) or not isinstance(body.get("fields"), dict):
            raise InvalidInput("body is {agent, fields: {…}}")
        fields = parse_draft(body["fields"])
        ticket = await self.tickets.record(ticket_id, "amended", self._agent(request, body), dict(fields))
        return web.json_response(ticket.to_dict())

    async def transition(self, request: web.Request) -> web.Response:
        ticket_id = self._ticket_id(request)
        body = await self._json(request)
        if not isinstance(body, dict) or not set(body) <= {"type", "agent", "payload"}:
            raise InvalidInput("body is {type, agent, payload}")
        etype = body.get("type")
        if etype not in LOCAL_TRANSITIONS:
            raise InvalidInput(f"type must be one of {', '.join(sorted(LOCAL_TRANSITIONS))}", field="type")
        ticket = await self.tickets.record(ticket_id, str(etype), self._agent(request, body),
                                           parse_payload(body.get("payload", {})))
        return web.json_response(ticket.to_dict())

    async def stream(self, request: web.Request) -> web.StreamResponse:
        agent = request.get("agent") or request.query.get("agent")  # an agent's token: its own stream only
        if agent is not None and not OPTIONAL_AGENT_ID.match(agent):
            raise InvalidInput("agent must be digits")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        sub = self.hub.subscribe(agent or None)
        counter = 0
        try:
            await response.write(b": connected\n\n")
            while True:
                try:
                    async with asyncio.timeout(15):  # not wait_for: see telephony/waits.py
                        message = await sub.queue.get()
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                counter += 1
                if sub.dropped:  # too slow to read: say how many it lost, then carry on
                    await response.write(f"event: dropped\ndata: {sub.dropped}\n\n".encode())
                    sub.dropped = 0
                await response.write(sse(message, str(counter)))
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.hub.unsubscribe(sub)
        return response

    # ---- queries ------------------------------------------------------------------------------------
    async def list_tickets(self, request: web.Request) -> web.Response:
        flt = queries.parse_filter(request.query)
        number, size = queries.page_args(request.query)
        return web.json_response(await queries.page(self.tickets.store, flt, number, size))

    async def export(self, request: web.Request) -> web.StreamResponse:
        flt = queries.parse_filter(request.query)
        fmt = request.query.get("format", "jsonl")
        if fmt not in ("jsonl", "csv"):
            raise InvalidInput("format is jsonl or csv", field="format")
        content_type = "application/x-ndjson" if fmt == "jsonl" else "text/csv"
        response = web.StreamResponse(headers={
            "Content-Type": f"{content_type}; charset=utf-8",
            "Content-Disposition": f'attachment; filename="tickets-{self.config.site.name}.{fmt}"'})
        await response.prepare(request)
        if fmt == "csv":
            await response.write(queries.csv_header().encode())
        async for ticket in queries.select(self.tickets.store, flt):
            line = queries.jsonl(ticket) if fmt == "jsonl" else queries.csv_row(ticket)
            await response.write(line.encode())
        await response.write_eof()
        return response
