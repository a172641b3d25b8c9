"""The outbox worker: one per peer, FIFO, retried with exponential backoff and jitter.

Messages are queued in Redis in the same transaction as the ticket change that produced them
(see TicketStore.put), so a crash between "stored" and "sent" only delays delivery. The head message is
removed only after the peer acknowledged it; the receiver is idempotent on ticket and event ids.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import redis.asyncio as aioredis
import structlog

from telephony import backoff
from telephony.delivery import deadletters
from telephony.delivery.client import PeerClient, PeerError
from telephony.metrics import Metrics
from telephony.security.sealing import Sealer
from telephony.tickets.store import STORE_ERRORS, outbox_key

log = structlog.get_logger("delivery")
NOT_FOUND_TRIES = 4
STORE_RETRY_MAX = 5.0  # seconds between attempts to reach Redis during an outage


class OutboxWorker:
    def __init__(self, redis: aioredis.Redis, client: PeerClient, base_delay: float = 0.2,
                 max_delay: float = 60.0, push_delay: float = 0.0, sealer: Sealer | None = None,
                 metrics: Metrics | None = None) -> None:
        self.redis = redis
        self.client = client
        self.peer = client.peer.name
        self.wake = asyncio.Event()
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.metrics = metrics or Metrics()
        self.push_delay = push_delay
        self.sealer = sealer or Sealer(())
        self.attempt = 0  # failed sends of the head message in a row

    def notify(self) -> None:
        self.wake.set()

    async def run(self) -> None:
        """Owned by the controller's task group: it must outlive a Redis outage. A message sent but not yet
        popped when Redis went away is sent again afterwards; the peer answers that as a replay, which counts
        as delivered."""
        outage = 0
        while True:
            try:
                await self._step()
            except STORE_ERRORS as exc:
                outage += 1
                if outage == 1:
                    log.warning("delivery.store_unavailable", peer=self.peer, error=exc.__class__.__name__)
                await asyncio.sleep(backoff.delay(outage, self.base_delay, STORE_RETRY_MAX))
                continue
            if outage:
                log.info("delivery.store_available", peer=self.peer, attempts=outage)
                outage = 0

    async def _step(self) -> None:
        """Wait for a message, or send the head one: on success pop it; on a refusal for good park it;
        otherwise sleep the backoff (retries go on for days: only a ticket the peer never knows gets parked)."""
        key = outbox_key(self.peer)
        raw = await self.redis.lindex(key, 0)
        if raw is None:
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), 1.0)
            except TimeoutError:
                pass
            return
        message: dict[str, Any] = json.loads(self.sealer.open(raw))
        if self.push_delay and message.get("kind") == "ticket":
            wait = float(message.get("queued_at", 0)) + self.push_delay - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
        try:
            await self.client.send(message)
        except PeerError as exc:
            # The peer does not know the ticket: messages go in order on this link, so the ticket was never
            # ours to give it. A few tries (it may be restoring), then park it rather than block the link.
            if exc.permanent or (exc.not_found and self.attempt >= NOT_FOUND_TRIES):
                log.error("delivery.dead_letter", peer=self.peer, error=str(exc), kind=message.get("kind"))
                self.metrics.inc("linkage_delivery_dead_total", peer=self.peer)
                await deadletters.park(self.redis, self.sealer, self.peer, message, str(exc))
                self.attempt = 0
                return
            self.attempt += 1
            await self._pause(exc)
            return
        self.attempt = 0
        self.metrics.inc("linkage_delivery_sent_total", peer=self.peer)
        await self.redis.lpop(key)

    async def _pause(self, exc: PeerError) -> None:
        # The peer's Retry-After is honoured up to our own cap: a peer asking for an hour is tried again sooner,
        # which costs it one more 429, while a ticket waiting an hour would cost a caller.
        delay = backoff.delay(self.attempt, self.base_delay, self.max_delay)
        if exc.retry_after is not None:
            delay = min(exc.retry_after, self.max_delay)
        log.warning("delivery.retry", peer=self.peer, attempt=self.attempt, delay=round(delay, 3), error=str(exc))
        self.metrics.inc("linkage_delivery_retries_total", peer=self.peer)
        await asyncio.sleep(delay)
