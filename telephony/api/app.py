"""The HTTP app: each context's adapter under /v1 behind the middlewares, in one route table (documented in
docs/openapi.yaml, which a test checks against this router), and the browser console's files at /console.

Every body is size-bounded, parsed strictly and validated before anything is stored; errors are JSON with a
stable error id and a message for the person reading it (telephony/api/middleware.py).
"""

from __future__ import annotations

from collections.abc import Callable

import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.typedefs import Handler

from telephony.advice.http import AdviceHttp
from telephony.advice.services import AdviceService
from telephony.api.metrics import HttpMetrics
from telephony.api.middleware import Gate, errors, refused
from telephony.api.ops import HealthCheck, Ops
from telephony.api.stream import StreamHub
from telephony.callers.http import CallersHttp
from telephony.callers.services import CallerService
from telephony.calls.http import CallsHttp
from telephony.calls.registry import CallRegistry
from telephony.config import SiteConfig
from telephony.console.http import ConsoleHttp
from telephony.delivery.http import DeliveryHttp
from telephony.delivery.inbox import Inbox, ReplayMemory
from telephony.followup.adapters import FollowupHttp
from telephony.followup.services import FollowupService
from telephony.http_request import MAX_BODY, signer
from telephony.queues.adapters import QueueHttp
from telephony.queues.services import QueueService
from telephony.reporting.http import StatsHttp
from telephony.security.sealing import Sealer
from telephony.supervision.deadlines import deadline
from telephony.threeway.http import ThreewayHttp
from telephony.threeway.services import ThreewayService
from telephony.tickets.audit import ExportAudit
from telephony.tickets.http import TicketsHttp
from telephony.tickets.services import TicketService
from telephony.transfers.http import TransfersHttp
from telephony.transfers.returns import ReturnService
from telephony.transfers.sending import SendingService


def build_app(config: SiteConfig, *, tickets: TicketService, transfers: SendingService,
              threeway: ThreewayService, returns: ReturnService, calls: CallRegistry, hub: StreamHub,
              metrics: HttpMetrics, health: HealthCheck, redis: aioredis.Redis, sealer: Sealer,
              wake: Callable[[str], None], followup: FollowupService | None = None,
              advice: AdviceService | None = None, callers: CallerService | None = None,
              queue: QueueService | None = None, stats: StatsHttp | None = None) -> web.Application:
    """`redis` holds the replay memory and the dead letters (sealed with `sealer`); `wake(peer)` makes a peer's
    delivery worker send at once (after a dead-letter replay); `callers` the flags (none: its routes are 404);
    `stats` the statistics page's figures (none: 404)."""
    inbox = Inbox(config, tickets, ReplayMemory(redis, config.security.replay_window),
                  lambda exc: refused(metrics, exc))
    ops = Ops(config, health, metrics, redis, sealer)
    delivery = DeliveryHttp(config, inbox, redis, sealer, wake)
    # the console's countdown reads the supervision rule; passed in here because supervision imports tickets
    console = TicketsHttp(config, tickets, ExportAudit(redis), lambda t: deadline(t, config.supervision))
    calls_http = CallsHttp(calls, lambda number: callers.view(number) if callers else None)
    callers_http = CallersHttp(callers)
    sending = TransfersHttp(config, calls, transfers, returns)
    pages = ConsoleHttp()
    threeway_http = ThreewayHttp(threeway)
    followups = FollowupHttp(followup)
    advice_http = AdviceHttp(advice)
    queue_http = QueueHttp(queue)
    stats_http = stats or StatsHttp(config, "")
    app = web.Application(middlewares=[errors(metrics), Gate(config).middleware], client_max_size=MAX_BODY)
    # The order matters where paths overlap: /v1/tickets/export before /v1/tickets/{id}.
    app.add_routes([
        web.get("/v1/health", ops.health),
        web.get("/v1/ready", ops.ready),
        web.get("/metrics", ops.prometheus),
        web.get("/v1/whoami", ops.whoami),
        web.post("/v1/tickets", delivery.receive_ticket),
        web.post("/v1/batch", delivery.receive_batch),
        web.get("/v1/tickets", console.list_tickets),
        web.get("/v1/tickets/export", console.export),
        web.get("/v1/tickets/{id}", by_signature(delivery.lend_ticket, console.get_ticket)),
        web.patch("/v1/tickets/{id}", console.amend),
        web.post("/v1/tickets/{id}/events", delivery.receive_event),
        web.post("/v1/tickets/{id}/transitions", console.transition),
        web.get("/v1/calls", calls_http.list_calls),
        web.put("/v1/calls/{linkedid}/draft", sending.put_draft),
        web.get("/v1/calls/{linkedid}/draft", sending.get_draft),
        web.post("/v1/calls/{linkedid}/transfer", sending.transfer),
        web.post("/v1/calls/{linkedid}/threeway", threeway_http.threeway_call),
        web.post("/v1/calls/{linkedid}/consult", threeway_http.consult_call),
        web.post("/v1/calls/{linkedid}/return", sending.give_back),
        web.post("/v1/transfers", sending.refer),
        web.post("/v1/advice", advice_http.advise),
        web.get("/v1/stream", hub.serve),
        web.get("/v1/delivery", delivery.health),
        web.get("/v1/dead-letters", delivery.dead_letters),
        web.post("/v1/dead-letters/{peer}/replay", delivery.replay_dead_letters),
        web.get("/v1/audit/exports", console.export_audit),
        web.get("/v1/followups", followups.list_jobs),
        web.delete("/v1/followups/{ticket_id}", followups.cancel),
        web.get("/v1/callers/flags", callers_http.flags),
        web.post("/v1/callers/flags", callers_http.flag),
        web.post("/v1/callers/unflag", callers_http.unflag),
        web.get("/v1/audit/flags", callers_http.audit),
        web.get("/v1/callers/suggestions", callers_http.suggestions),
        web.get("/v1/callers/counts", callers_http.counts),
        web.get("/v1/queue", queue_http.status),
        web.post("/v1/queue/members/{agent}", queue_http.member),
        web.get("/v1/stats", stats_http.stats),
        web.get("/console", pages.index),
        web.get("/console/{file}", pages.asset),
    ])
    return app


def by_signature(signed: Handler, unsigned: Handler) -> Handler:
    """One route, two callers: a peer fetching a ticket by reference (signed) and a console reading it."""
    async def handler(request: web.Request) -> web.StreamResponse:
        return await (signed if signer(request) is not None else unsigned)(request)
    return handler
