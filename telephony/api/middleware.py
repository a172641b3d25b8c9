"""The middlewares every route runs through, outermost first:

- `errors`: binds the request to the log context and turns every refusal into the JSON error body (a stable
  error id and a message for the person reading it); a store that is away is a 503 the caller retries;
- `Gate`: authentication and the rate limit. Peer routes need a peer's signature; reading a ticket takes a
  signature or a console token; the rest a console token or an agent's own token. Health, metrics and
  the console's static files are public.
The replay memory of signed messages is not here: it belongs to the inbox (telephony/delivery/inbox.py).
"""

from __future__ import annotations

import hmac
import re

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from telephony.api.metrics import HttpMetrics
from telephony.config import SiteConfig
from telephony.errors import LinkageError, PayloadTooLarge, TooManyRequests, Unauthorized
from telephony.http_request import AGENT_KEY, MAX_BODY, MESSAGE_KEY, PEER_KEY
from telephony.security import signing
from telephony.security.ratelimit import RateLimiter
from telephony.tickets.store import STORE_ERRORS, STORE_UNAVAILABLE

log = structlog.get_logger("http")
PEER_ROUTE = re.compile(r"^/v1/(batch|tickets(/[0-9]{20,32}/events)?)$")
TICKET_ROUTE = re.compile(r"^/v1/tickets/[0-9]{20,32}$")
PUBLIC = {"/v1/health", "/v1/ready", "/metrics"}
CONSOLE = re.compile(r"^/console(/[a-z]+\.[a-z]+)?$")  # the console's static files: the token is typed in the page


def refused(metrics: HttpMetrics, exc: LinkageError) -> None:
    """Count and log a refusal (a whole request's, or one message's in a batch)."""
    metrics.refused.labels(status=str(exc.status)).inc()
    log.info("http.refused", status=exc.status, error=exc.error_id, reason=exc.message)


def store_unavailable(exc: Exception) -> None:
    log.warning("http.store_unavailable", error=exc.__class__.__name__)


def errors(metrics: HttpMetrics) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(http=f"{request.method} {request.path}")
        try:
            return await handler(request)
        except LinkageError as exc:
            refused(metrics, exc)
            headers = {"Retry-After": str(max(1, round(exc.details["retry_after"])))} \
                if "retry_after" in exc.details else None
            return web.json_response(exc.to_dict(), status=exc.status, headers=headers)
        except STORE_ERRORS as exc:  # Redis restarting: nothing was written; the caller (or peer) retries
            store_unavailable(exc)
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
    return middleware


class Gate:
    """Who is calling, and whether they may call again this soon (one bucket per peer site, agent, console)."""

    def __init__(self, config: SiteConfig) -> None:
        self.config = config
        self.tokens = {config.controller.api_token}  # the site's console token: supervisors, may act for any agent
        self.agent_tokens = {a.token: a.id for a in config.accounts.agents if a.token}
        self.limiter = RateLimiter(config.controller.rate_per_second, config.controller.rate_burst)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in PUBLIC or (request.method in ("GET", "HEAD") and CONSOLE.match(request.path)):
            return await handler(request)
        signed = await self._authenticate(request)
        caller = request.headers.get("linkage-site", "") if signed else request.get(AGENT_KEY) or "console"
        wait = self.limiter.take(caller)
        if wait:
            raise TooManyRequests(f"too many requests from {caller}; retry in {wait:.2f} s",
                                  retry_after=round(wait, 2))
        return await handler(request)

    async def _authenticate(self, request: web.Request) -> bool:
        """Sets who the request is from on the request; returns whether it was signed by a peer."""
        peer_route = request.method == "POST" and PEER_ROUTE.match(request.path) is not None
        signed = "webhook-signature" in request.headers
        if peer_route or (signed and request.method == "GET" and TICKET_ROUTE.match(request.path)):
            site = request.headers.get("linkage-site", "")
            peer = self.config.peer(site)
            if peer is None:
                raise Unauthorized("linkage-site names no configured peer")
            if request.content_length is not None and request.content_length > MAX_BODY:
                raise PayloadTooLarge(f"body larger than {MAX_BODY} bytes")
            request[MESSAGE_KEY] = signing.verify(peer.secrets, request.headers, await request.read())
            request[PEER_KEY] = site
            return True
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip()
        if token and any(hmac.compare_digest(token, t) for t in self.tokens):
            return False
        agent = next((a for t, a in self.agent_tokens.items() if token and hmac.compare_digest(token, t)), None)
        if agent is None:
            raise Unauthorized("missing or wrong bearer token")
        request[AGENT_KEY] = agent  # an agent's own token: it acts for that agent only
        return False
