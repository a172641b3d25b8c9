"""The composition root: build the Redis client, AMI session, HTTP session and services once, wire them,
run the servers and owned tasks, and shut all of it down in order on SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from telephony.agi.server import AgiRequest, FastAgiServer
from telephony.ami.session import AmiSession
from telephony.api.http import Api
from telephony.api.stream import StreamHub
from telephony.calls.registry import CallRegistry
from telephony.config import SiteConfig, SiteTls, build_tls
from telephony.delivery.client import PeerClient
from telephony.delivery.outbox import OutboxWorker
from telephony.metrics import Metrics
from telephony.security.sealing import Sealer
from telephony.supervision.deadlines import Supervisor
from telephony.threeway.services import ThreewayService
from telephony.tickets.models import Event, Ticket
from telephony.tickets.services import TicketService
from telephony.tickets.store import Head, TicketStore, connect
from telephony.transfers.services import TransferService

log = structlog.get_logger("controller")


class Controller:
    def __init__(self, config: SiteConfig) -> None:
        self.config = config
        self.tls = build_tls(config)  # reads the certificate files: at start, a bad one stops it here
        self.metrics = Metrics()
        self.redis = connect(config.redis.url)
        self.store = TicketStore(self.redis, Sealer(config.storage.keys))
        self.calls = CallRegistry()
        self.workers: dict[str, OutboxWorker] = {}
        self.tickets = TicketService(config, self.store, self._notify)
        self.ami = AmiSession(config.pbx.ami, self.calls, self.metrics)
        self.agi = FastAgiServer(config.pbx.agi.host, config.pbx.agi.port, self.metrics)
        self.session: aiohttp.ClientSession | None = None
        self.peers: dict[str, PeerClient] = {}
        self.transfers = TransferService(config, self.calls, self.tickets, self.peers, self.ami.send)
        self.threeway = ThreewayService(config, self.calls, self.tickets, self.transfers, self.ami.send)
        self.hub = StreamHub(config.site.name)
        self.tickets.listeners.append(self.hub.publish)
        self.tickets.listeners.append(self._count)
        self.supervisor = Supervisor(config, self.tickets, self.metrics)
        self.api = Api(config, self.tickets, self.transfers, self.calls, self.health, self.metrics, self.hub,
                       self.threeway)

    def _count(self, ticket: Ticket, event: Event) -> None:
        origin = "local" if event.actor.get("site") == self.config.site.name else "remote"
        self.metrics.inc("linkage_ticket_events_total", type=event.type, origin=origin)
        if event.type == "created" and origin == "local":
            self.metrics.inc("linkage_tickets_created_total", target=ticket.target.site)

    def _notify(self, peer: str, head: Head | None = None) -> None:
        worker = self.workers.get(peer)
        if worker is not None:
            worker.notify(head)

    async def health(self) -> dict[str, Any]:
        try:
            redis_ok = await asyncio.wait_for(self.store.ping(), 1.0)
        except Exception:
            redis_ok = False
        ami_ok = self.ami.logged_in.is_set()
        return {"ok": bool(redis_ok and ami_ok), "site": self.config.site.name, "platform": self.config.site.platform,
                "redis": redis_ok, "ami": ami_ok, "calls": len(self.calls.calls)}

    async def run(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        self.session = aiohttp.ClientSession()
        for peer in self.config.peers:
            client = PeerClient(self.session, peer, self.config.site.name,
                                ssl_context=self.tls.peers.get(peer.name))
            self.peers[peer.name] = client
            self.workers[peer.name] = OutboxWorker(self.redis, client, push_delay=self.config.delivery.push_delay,
                                                   sealer=self.store.sealer, metrics=self.metrics,
                                                   linger=self.config.delivery.delivered_linger)
        self.agi.route("onekey", self.transfers.agi_onekey)
        self.agi.route("route_in", self.transfers.agi_route_in)
        self.agi.route("transfer_failed", self.transfers.agi_transfer_failed)
        self.agi.route("overflow", self.transfers.agi_overflow)
        self.agi.route("threeway", self.threeway.agi_threeway)
        self.agi.route("conf_key", self.threeway.agi_conf_key)
        self.agi.route("consult", self.threeway.agi_consult)
        self.agi.route("consult_out", self.threeway.agi_consult_out)
        if self.config.bench.baseline_key and self.config.bench.agi_floor_key:
            self.agi.route("bench_floor", bench_floor)
        self.ami.handlers.append(self.threeway.on_ami_event)
        self.ami.handlers.append(self.transfers.on_ami_event)

        runner = web.AppRunner(self.api.app(), access_log=None, handle_signals=False)
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
                tasks = [group.create_task(self.ami.run()), group.create_task(self.supervisor.run()),
                         group.create_task(self.ami.resync()), group.create_task(self.ami.watchdog())]
                tasks += [group.create_task(w.run()) for w in self.workers.values()]
                await stop.wait()
                log.info("controller.stopping")
                for task in tasks:
                    task.cancel()
        finally:
            await asyncio.wait_for(self._shutdown(runner), 10)

    async def _shutdown(self, runner: web.AppRunner) -> None:
        self.threeway.close()
        await self.agi.stop()
        await runner.cleanup()
        self.ami.close()
        if self.session is not None:
            await self.session.close()
        await self.redis.aclose()
        log.info("controller.stopped")


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
