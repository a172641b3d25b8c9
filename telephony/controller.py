"""The composition root: everything one site runs, built once in dependency order, started, and stopped in
reverse order on SIGTERM/SIGINT. Every hook between contexts is subscribed here and nowhere else, so this file
is the map of who hears what:

    AMI events ──▶ CallRegistry ──▶ transfers (dial outcomes; prepared transfers: an agent's leg bridged
                   reserves the ticket, the dialplan's press event makes it; their writes in lanes, off the
                   event queue), threeway (conference and consult)
    AMI login ──▶ prepared transfers' resync (presses recorded in AstDB while nobody listened)
    an agent's call rang / was answered / ended ──▶ console stream   (CallRegistry on_change)
    FastAGI    ──▶ transfers (onekey, route_in, transfer_failed, overflow), threeway (threeway, conf_key, …)
    HTTP /v1   ──▶ delivery inbox (peers), calls/transfers/threeway/tickets (console), ops
    ticket changed ──▶ console stream, metrics, supervision alarm, reporting database (TicketHooks.changed)
    app_queue's queue_log file ──▶ reporting database (QueueLogTailer polls it)
    peer ticket landed ──▶ transfers' arrivals (a waiting call rings)   (TicketHooks.landed)
    peer ticket landed here ──▶ its route published to the PBX (receiving's fast path, TicketHooks.landed)
    prepared ticket made ──▶ its push leaves before its write (that peer's outbox worker, TicketHooks.early)
    message queued ──▶ that peer's outbox worker                        (TicketHooks.queued)
    ticket written ──▶ its next deadline, in the same atomic write     (TicketHooks.deadline_of)
    hotline Newchannel ──▶ callers (repeat counts); flags ──▶ PBX globals, pops, supervisor's stream
    app_queue events ──▶ queue (members, waiting, surge ──▶ PBX global, supervisor's stream); receiving asks
                         the queue which agents are free
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import aiohttp
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry

from telephony.advice.services import AdviceService
from telephony.agi.metrics import AgiMetrics
from telephony.agi.server import AgiRequest, FastAgiServer
from telephony.ami.metrics import AmiMetrics
from telephony.ami.session import AmiSession
from telephony.api.app import build_app
from telephony.api.metrics import HttpMetrics
from telephony.api.stream import StreamHub
from telephony.callers.ami import CallerAmi, PbxFlags
from telephony.callers.flags import FlagStore
from telephony.callers.metrics import CallerMetrics
from telephony.callers.services import CallerService
from telephony.calls.registry import CallRegistry
from telephony.config import SiteConfig, SiteTls, build_tls
from telephony.delivery.client import PeerClient
from telephony.delivery.metrics import DeliveryMetrics
from telephony.delivery.outbox import OutboxWorker
from telephony.followup.adapters import FollowupAgi, FollowupAmi
from telephony.followup.services import FollowupService
from telephony.queues.adapters import QueueAgi, QueueAmi
from telephony.queues.metrics import QueueMetrics
from telephony.queues.services import QueueService
from telephony.reporting.db import resolve
from telephony.reporting.http import StatsHttp
from telephony.reporting.ingest import Ingest
from telephony.reporting.queue_log import QueueLogTailer
from telephony.security.sealing import Sealer
from telephony.supervision.deadlines import Alarm, DeadlineRule, Supervisor
from telephony.supervision.metrics import SupervisionMetrics
from telephony.threeway.agi import ThreewayAgi
from telephony.threeway.ami import ThreewayAmi
from telephony.threeway.services import ThreewayService
from telephony.tickets.hooks import TicketHooks
from telephony.tickets.metrics import TicketMetrics
from telephony.tickets.services import TicketService
from telephony.tickets.store import Head, TicketStore, connect
from telephony.transfers.agi import TransferAgi
from telephony.transfers.ami import PreparedAmi, TransferAmi
from telephony.transfers.arrivals import Arrivals
from telephony.transfers.drafts import DraftStore
from telephony.transfers.metrics import TransferMetrics
from telephony.transfers.prepared import PreparedService
from telephony.transfers.receiving import ReceivingService
from telephony.transfers.reservations import ReservationStore, Reserved
from telephony.transfers.returns import ReturnService
from telephony.transfers.sending import SendingService

log = structlog.get_logger("controller")
SHUTDOWN_TIMEOUT = 10.0
TICKET_CACHE = 1024  # tickets kept in memory to read without a Redis round trip (TicketStore)


class Controller:
    """Built inside the running event loop (its HTTP client session needs one): see `serve`."""

    def __init__(self, config: SiteConfig) -> None:
        self.config = config
        self.tls = build_tls(config)  # reads the certificate files: at start, a bad one stops it here
        self.registry = CollectorRegistry()  # this controller's own: /metrics renders it
        # shared clients
        self.redis = connect(config.redis.url)
        self.session = aiohttp.ClientSession()
        sealer = Sealer(config.storage.keys)
        # the console stream: hears calls and ticket changes, and names flagged callers (恶意骚扰) on them
        self.hub = StreamHub(config.site.name, flag_of=lambda number: self.callers.view(number))
        self.calls = CallRegistry(on_change=self.hub.publish_call)
        self.ami = AmiSession(config.pbx.ami, self.calls, AmiMetrics(self.registry))
        self.agi = FastAgiServer(config.pbx.agi.host, config.pbx.agi.port, AgiMetrics(self.registry))
        # flagged and repeat callers: the flags reach the dialplan as PBX globals, again after every AMI login
        self.callers = CallerService(config, FlagStore(self.redis, sealer), PbxFlags(config, self.ami.send),
                                     CallerMetrics(self.registry), notify=self.hub.publish_supervisor)
        self.pbx_login = self.ami.login_event()
        # delivery: one client and one outbox worker per peer
        self.delivery_metrics = DeliveryMetrics(self.registry)
        self.peers = {p.name: PeerClient(self.session, p, config.site.name, ssl_context=self.tls.peers.get(p.name))
                      for p in config.peers}
        self.workers = {name: OutboxWorker(self.redis, client, push_delay=config.delivery.push_delay, sealer=sealer,
                                           metrics=self.delivery_metrics, linger=config.delivery.delivered_linger)
                        for name, client in self.peers.items()}
        # what hears a ticket change
        self.alarm = Alarm(DeadlineRule(config))
        self.arrivals = Arrivals(config.transfer.push_wait)
        self.ticket_metrics = TicketMetrics(self.registry, config.site.name)
        # a peer's return with the caller takes our caller back (self.returns is built with the tickets below)
        hooks = TicketHooks(changed=(self.hub.publish, self.ticket_metrics.on_ticket_change, self.alarm.on_change,
                                     lambda ticket, event: self.returns.on_change(ticket, event),
                                     lambda ticket, event: self.followup.on_change(ticket, event),
                                     lambda ticket, event: self.reporting_ingest(ticket, event),
                                     lambda ticket, event: self.receiving.on_change(ticket, event)),
                            landed=(self.arrivals.land, lambda ticket: self.receiving.on_landed(ticket)),
                            queued=self._wake, early=self._early, deadline_of=self.alarm.rule)
        # the contexts
        self.store = TicketStore(self.redis, sealer, deadline_of=hooks.deadline_of, cache=TICKET_CACHE)
        self.tickets = TicketService(config, self.store, hooks)
        url = resolve(config.reporting.url, str(Path(config.source_file).parent) if config.source_file else "")
        self.reporting = Ingest(url, config.site.name, self.store) if url else None
        # app_queue's queue_log file, tailed into the same database (the PBX writes it; we only read)
        queue_log = config_path(config, config.reporting.queue_log)
        self.queue_log = QueueLogTailer(url, config.site.name, queue_log) if url and queue_log else None
        self.supervisor = Supervisor(config, self.tickets, self.alarm, SupervisionMetrics(self.registry))
        self.returns = ReturnService(config, self.calls, self.tickets, self.ami.send)
        self.advice = AdviceService.build(config_path(config, config.advice.catalogue))  # loads jieba: ~1 s
        reserved, reservations = Reserved(), ReservationStore(self.redis, sealer)
        self.sending = SendingService(config, self.calls, self.tickets, self.ami.send,
                                      DraftStore(self.redis, sealer), self.returns, advisor=self.advice,
                                      reserved=reserved, reservations=reservations)
        self.prepared = PreparedService(config, self.calls, self.sending, reservations, reserved, self.ami.send,
                                        self.ami.ask)
        self.prepared_login = self.ami.login_event()
        self.receiving = ReceivingService(config, self.calls, self.tickets, self.peers, self.arrivals,
                                          self.ami.send)
        self.threeway = ThreewayService(config, self.calls, self.tickets, self.sending, self.ami.send)
        self.followup = FollowupService(config, self.tickets, self.ami.send)
        self.queue = QueueService(config, self.redis, self.ami.send, self.ami.send_list, self.tickets,
                                  QueueMetrics(self.registry), notify=self.hub.publish_supervisor)
        self.queue_login = self.ami.login_event()
        self.sending.escalate = self.threeway.start
        self.receiving.available = self.queue.available  # a linked call rings a free agent of the queue
        # adapters
        self.transfer_metrics = TransferMetrics(self.registry)
        # the awaited parts of these two run in lanes (telephony/lanes.py), off the one AMI event queue
        self.transfer_ami = TransferAmi(self.receiving, self.transfer_metrics)
        self.prepared_ami = PreparedAmi(self.prepared, self.transfer_metrics)
        self.ami_handlers = (ThreewayAmi(self.threeway).on_event, FollowupAmi(self.followup).on_event,
                             self.transfer_ami.on_event, self.prepared_ami.on_event,
                             CallerAmi(config, self.callers).on_event,
                             QueueAmi(self.queue, self.hub.publish_supervisor).on_event)
        for name, handler in {**TransferAgi(self.sending, self.receiving, self.prepared).routes(),
                              **ThreewayAgi(self.threeway).routes(), **FollowupAgi(self.followup).routes(),
                              **QueueAgi(self.queue).routes(),
                              **self._bench_routes()}.items():
            self.agi.route(name, handler)
        self.http_metrics = HttpMetrics(self.registry, self.delivery_metrics)
        self.api = build_app(config, tickets=self.tickets, transfers=self.sending, threeway=self.threeway,
                             returns=self.returns, followup=self.followup, advice=self.advice,
                             calls=self.calls, hub=self.hub, metrics=self.http_metrics, health=self.health,
                             redis=self.redis, sealer=sealer, wake=self._wake, callers=self.callers,
                             queue=self.queue, stats=StatsHttp(config, url))

    def _bench_routes(self) -> dict[str, Any]:
        bench = self.config.bench
        return {"bench_floor": bench_floor} if bench.baseline_key and bench.agi_floor_key else {}

    def reporting_ingest(self, ticket: Any, event: Any) -> None:
        if self.reporting is not None:
            self.reporting.on_change(ticket, event)

    def _early(self, peer: str, message: dict[str, Any]) -> None:
        worker = self.workers.get(peer)
        if worker is not None:
            worker.push_early(message)

    def _wake(self, peer: str, head: Head | None = None) -> None:
        worker = self.workers.get(peer)
        if worker is not None:
            worker.notify(head)

    async def health(self) -> dict[str, Any]:
        try:
            async with asyncio.timeout(1.0):
                redis_ok = await self.store.ping()
        except Exception:
            redis_ok = False
        ami_ok = self.ami.logged_in.is_set()
        return {"ok": bool(redis_ok and ami_ok), "site": self.config.site.name, "platform": self.config.site.platform,
                "redis": redis_ok, "ami": ami_ok, "calls": len(self.calls.calls)}

    async def run(self) -> None:
        """Listeners first (HTTP, FastAGI), then AMI; the owned tasks run until SIGTERM/SIGINT."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        runner = web.AppRunner(self.api, access_log=None, handle_signals=False)
        await runner.setup()
        await http_site(runner, self.config, self.tls).start()
        await self.agi.start()
        await self.ami.start()
        tls = self.config.controller.http.tls
        log.info("controller.started", site=self.config.site.name, http=self.config.controller.http.port,
                 agi=self.config.pbx.agi.port,
                 tls="mutual" if tls is not None and tls.client_ca else "on" if tls else "off")
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self.ami.run(self.ami_handlers)),
                         group.create_task(self.supervisor.run()), group.create_task(self.followup.run()),
                         group.create_task(self.ami.resync()), group.create_task(self.ami.watchdog()),
                         group.create_task(self.callers.run(self.pbx_login)),
                         group.create_task(self.queue.run(self.queue_login)),
                         group.create_task(self.prepared.run(self.prepared_login))]
                tasks += [group.create_task(w.run()) for w in self.workers.values()]
                if self.reporting is not None:
                    tasks.append(group.create_task(self.reporting.run()))
                if self.queue_log is not None:
                    tasks.append(group.create_task(self.queue_log.run()))
                await stop.wait()
                log.info("controller.stopping")
                for task in tasks:
                    task.cancel()
        finally:
            async with asyncio.timeout(SHUTDOWN_TIMEOUT):
                await self.close(runner)

    async def close(self, runner: web.AppRunner | None = None) -> None:
        """In reverse order of use: no new calls or requests, then the PBX link, then the clients."""
        self.threeway.close()
        self.returns.close()
        self.prepared.close()
        self.prepared_ami.lanes.close()
        self.receiving.close()
        self.transfer_ami.lanes.close()
        self.followup.close()
        self.hub.close()  # the consoles' streams end, so the HTTP server's cleanup does not wait for them
        await self.agi.stop()
        if runner is not None:
            await runner.cleanup()
        self.ami.close()
        await self.session.close()
        await self.redis.aclose()
        log.info("controller.stopped")


async def serve(config: SiteConfig) -> None:
    await Controller(config).run()


def config_path(config: SiteConfig, path: str) -> str:
    """A path from the site file, relative to the file's folder."""
    if not path or Path(path).is_absolute() or not config.source_file:
        return path
    return str(Path(config.source_file).parent / path)


def http_site(runner: web.AppRunner, config: SiteConfig, tls: SiteTls) -> web.TCPSite:
    """The peer and console listener: TLS when controller.http.tls is set, mutual TLS when it names a client CA."""
    if tls.listener is None and config.controller.public_url.startswith("https://"):
        # legitimate behind a proxy that terminates TLS; a mistake if peers are meant to reach us directly
        log.warning("http.plain_behind_https_url", public_url=config.controller.public_url,
                    note="controller.http.tls is not set: TLS must be terminated in front of this listener")
    return web.TCPSite(runner, config.controller.http.host, config.controller.http.port, reuse_address=True,
                       ssl_context=tls.listener)


async def bench_floor(request: AgiRequest) -> None:
    """Bench only (bench.agi_floor_key): answer at once with one command, as the transfer AGIs do. The bench's
    floor path runs this on both PBXes around a plain dialplan transfer: what FastAGI itself costs."""
    await request.set_variable("LINKAGE_BENCH", "1")
