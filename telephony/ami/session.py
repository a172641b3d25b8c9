"""The AMI session (panoramisk): log in, feed every event to the call registry in arrival order, and hand
call events to the services through one queue consumed by one owned task (so handlers see events in order).

Reconnecting is ours, not panoramisk's: its fixed timers (after a lost connection and after a refused connect)
are taken out, and one timer at a time waits an exponential, jittered delay from pbx.ami.reconnect_min to
reconnect_max, starting over after a successful login.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog
from panoramisk import Manager
from prometheus_client import CollectorRegistry

from telephony import backoff
from telephony.ami.metrics import AmiMetrics
from telephony.calls.registry import CallRegistry
from telephony.config import AmiConfig

log = structlog.get_logger("ami")
EventHandler = Callable[[dict[str, str]], Awaitable[None]]
INTERESTING = {"DialBegin", "DialEnd", "BlindTransfer", "Hangup", "BridgeEnter", "ConfbridgeJoin",
               "ConfbridgeLeave", "AttendedTransfer", "OriginateResponse",
               "UserEvent",  # the dialplan's press of a prepared transfer (transfers/prepared.py)
               "Newchannel",  # Newchannel: the hotline's calls counted (callers/)
               "QueueMemberAdded", "QueueMemberRemoved", "QueueMemberPause", "QueueCallerJoin",
               "QueueCallerLeave", "QueueCallerAbandon"}  # the queue (queues/)
CONNECT_TIMEOUT = 10.0  # seconds for the TCP connect: a host that drops SYNs would otherwise hold it for minutes
ACTION_TIMEOUT = 5.0  # seconds for an action's response


def reconnect_delay(attempt: int, config: AmiConfig, rand: Callable[[], float] | None = None) -> float:
    """Seconds before reconnect attempt n (1, 2, …): never below reconnect_min, never above reconnect_max."""
    jittered = backoff.delay(attempt, config.reconnect_min, config.reconnect_max, *([rand] if rand else []))
    return max(config.reconnect_min, jittered)


class _Manager(Manager):  # type: ignore[misc]  # panoramisk has no type hints
    """panoramisk's Manager without its own reconnect timers: it reports a failed connect and a lost
    connection, and the session decides when to try again."""

    pinger: asyncio.TimerHandle | None

    def __init__(self, on_connect_failed: Callable[[BaseException], None], **config: Any) -> None:
        super().__init__(**config)
        self.on_connect_failed = on_connect_failed

    def connection_made(self, f: asyncio.Future[Any]) -> None:
        error = TimeoutError("connect timed out") if f.cancelled() else f.exception()
        if error is not None:
            self.loop.call_soon(self.on_connect_failed, error)
            return
        super().connection_made(f)

    def connection_lost(self, exc: Any) -> None:
        self._connected = False
        if self.pinger:
            self.pinger.cancel()
            self.pinger = None
        self.loop.call_soon(self.on_disconnect, self, exc)


def event_dict(message: Any) -> dict[str, str]:
    """A panoramisk Message as a plain dict of its single-valued headers (repeated headers are lists: dropped).
    Reads the case-insensitive dict's store directly: its items() does a lower() and two lookups per header,
    which was most of the controller's cost per event (bench: python -m linkage_lab.bench.ami_ingest)."""
    store = getattr(message, "_store", None)
    if not isinstance(store, dict):
        return {str(k): str(v) for k, v in message.items() if isinstance(v, str)}
    return {k: v for k, v in store.values() if isinstance(v, str)}


class AmiSession:
    def __init__(self, config: AmiConfig, calls: CallRegistry, metrics: AmiMetrics | None = None) -> None:
        self.config = config
        self.calls = calls
        self.queue: asyncio.Queue[dict[str, str]] = asyncio.Queue(maxsize=100000)
        self.logged_in = asyncio.Event()
        self.metrics = metrics or AmiMetrics(CollectorRegistry())
        self.closing = False
        self.resync_needed = asyncio.Event()
        self.logins: list[asyncio.Event] = []  # set at every login: see login_event
        self.missed_pings = 0
        self.attempt = 0  # reconnect attempts since the last login
        self.retry: asyncio.TimerHandle | None = None  # the one pending reconnect: never two loops at once
        self.manager = _Manager(
            self._on_connect_failed,
            host=config.host, port=config.port, username=config.username, secret=config.secret,
            ping_delay=3600, ping_interval=3600,  # our watchdog pings and checks replies
            log=logging.getLogger("panoramisk"), on_login=self._on_login, on_disconnect=self._on_disconnect,
        )
        self.manager.register_event("*", self._on_event)

    def _on_login(self, _: Any) -> None:
        log.info("ami.logged_in", host=self.config.host, port=self.config.port)
        self.attempt = 0
        self.logged_in.set()
        self.metrics.connected.set(1)
        self.resync_needed.set()  # the calls that live now are Asterisk's to tell, not our memory's
        for login in self.logins:
            login.set()

    def _on_disconnect(self, manager: Any, exc: Exception | None) -> None:
        log.warning("ami.disconnected", error=str(exc) if exc else "")
        self.logged_in.clear()
        self.metrics.connected.set(0)
        self.calls.live = False  # events are being missed: key presses take the AGI's word for the call
        self._schedule_reconnect()

    def _on_connect_failed(self, exc: BaseException) -> None:
        if self.closing:  # an attempt still in flight when the session closed: nothing failed, nothing follows
            return
        log.warning("ami.connect_failed", error=str(exc) or exc.__class__.__name__)
        self._schedule_reconnect()

    def _schedule_reconnect(self) -> None:
        if self.closing or self.retry is not None:
            return
        self.attempt += 1
        delay = reconnect_delay(self.attempt, self.config)
        log.warning("ami.reconnect_scheduled", delay=round(delay, 3), attempt=self.attempt)
        self.retry = asyncio.get_running_loop().call_later(delay, self._connect)

    def _connect(self) -> None:
        self.retry = None
        if self.closing:
            return
        task = self.manager.connect()
        # A timed-out connect is cancelled; the manager reports it as a failed connect, which schedules the next.
        asyncio.get_running_loop().call_later(CONNECT_TIMEOUT, lambda: task.done() or task.cancel())

    def _on_event(self, _: Any, message: Any) -> None:
        event = event_dict(message)
        self.metrics.events.inc()
        self.calls.on_event(event)
        if event.get("Event") in INTERESTING:
            try:
                self.queue.put_nowait(event)
            except asyncio.QueueFull:
                log.error("ami.queue_full", event_name=event.get("Event"))

    def login_event(self) -> asyncio.Event:
        """An event set at every login, for a task that must bring the PBX in line after one (the controller
        asks, so every such task is named in the composition root)."""
        event = asyncio.Event()
        self.logins.append(event)
        return event

    async def start(self) -> None:
        self._connect()

    async def run(self, handlers: Sequence[EventHandler]) -> None:
        """Owned by the controller's task group: deliver queued events to handlers, one at a time."""
        while True:
            event = await self.queue.get()
            self._observe_lag(event)
            structlog.contextvars.clear_contextvars()
            structlog.contextvars.bind_contextvars(call_id=event.get("Linkedid", ""))
            for handler in handlers:
                try:
                    await handler(event)
                except Exception:
                    log.exception("ami.handler_failed", event_name=event.get("Event"))

    def _observe_lag(self, event: dict[str, str]) -> None:
        """Asterisk stamps events only with timestampevents = yes (manager.conf): without it, nothing to see."""
        stamp = event.get("Timestamp")
        if stamp is None:
            return
        try:
            lag = time.time() - float(stamp)
        except ValueError:
            return
        self.metrics.event_lag.observe(max(0.0, lag))  # a clock stepped back must not make a negative lag

    async def resync(self) -> None:
        """Owned task: after every login, rebuild the call registry from CoreShowChannels."""
        while True:
            await self.resync_needed.wait()
            self.resync_needed.clear()
            try:
                async with asyncio.timeout(ACTION_TIMEOUT):
                    reply = await self.manager.send_action({"Action": "CoreShowChannels"}, as_list=True)
            except (TimeoutError, ConnectionError) as exc:
                log.warning("ami.resync_failed", error=str(exc))
                continue
            channels = [{str(k): str(v) for k, v in m.items() if isinstance(v, str)}
                        for m in (reply if isinstance(reply, list) else []) if m.get("Event") == "CoreShowChannel"]
            log.info("ami.resynced", calls=self.calls.resync(channels), channels=len(channels))
            self.calls.live = self.logged_in.is_set()

    async def watchdog(self) -> None:
        """Owned task: panoramisk never checks ping replies, so a hung AMI would go unnoticed until TCP closes.
        Two unanswered pings in a row drop the connection; the reconnect and a resync follow."""
        while True:
            await asyncio.sleep(self.config.ping_interval)
            if not self.logged_in.is_set():
                continue
            try:
                async with asyncio.timeout(self.config.ping_interval):
                    await self.manager.send_action({"Action": "Ping"}, as_list=False)
                self.missed_pings = 0
            except (TimeoutError, ConnectionError):
                self.missed_pings += 1
                log.warning("ami.ping_unanswered", missed=self.missed_pings)
                if self.missed_pings >= 2 and self.manager.protocol is not None:
                    self.missed_pings = 0
                    self.logged_in.clear()
                    self.manager.protocol.transport.close()

    async def send(self, action: dict[str, str]) -> Any:
        # as_list=False: every action we send has one response. Left to guess, panoramisk waits for more after
        # "... successfully queued" (Atxfer, async Originate) and swallows the call's events with that ActionID.
        async with asyncio.timeout(ACTION_TIMEOUT):
            return await self.manager.send_action(action, as_list=False)

    async def send_list(self, action: dict[str, str]) -> list[dict[str, str]]:
        """An action answered by a list of events (QueueStatus): each as a plain dict."""
        async with asyncio.timeout(ACTION_TIMEOUT):
            reply = await self.manager.send_action(action, as_list=True)
        return [{str(k): str(v) for k, v in m.items() if isinstance(v, str)}
                for m in (reply if isinstance(reply, list) else [reply])]

    async def ask(self, action: dict[str, str]) -> list[dict[str, str]]:
        """An action answered by one response or, when its response says "will follow", by a list of events
        (DBGet: a list when the key exists, a lone Error when not — as_list=True would wait for a list that
        never comes after the Error)."""
        async with asyncio.timeout(ACTION_TIMEOUT):
            reply = await self.manager.send_action(action, as_list=None)
        return [{str(k): str(v) for k, v in m.items() if isinstance(v, str)}
                for m in (reply if isinstance(reply, list) else [reply])]

    def close(self) -> None:
        self.closing = True
        if self.retry is not None:
            self.retry.cancel()
            self.retry = None
        self.manager.close()
