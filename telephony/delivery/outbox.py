"""The outbox worker: one per peer, FIFO, retried with exponential backoff and jitter.

Messages are queued in Redis in the same transaction as the ticket change that produced them
(see TicketStore.put), so a crash between "stored" and "sent" only delays delivery. The head message is
removed only after the peer acknowledged it; the receiver is idempotent on ticket and event ids.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any

import redis.asyncio as aioredis
import structlog

from telephony.delivery.client import PeerClient, PeerError
from telephony.metrics import Metrics
from telephony.security.sealing import Sealer
from telephony.tickets.store import PREFIX, outbox_key

log = structlog.get_logger("delivery")
NOT_FOUND_TRIES = 4


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

    def notify(self) -> None:
        self.wake.set()

    async def run(self) -> None:
        attempt = 0
        key = outbox_key(self.peer)
        while True:
            raw = await self.redis.lindex(key, 0)
            if raw is None:
                self.wake.clear()
                try:
                    await asyncio.wait_for(self.wake.wait(), 1.0)
                except TimeoutError:
                    pass
                continue
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
                if exc.permanent or (exc.not_found and attempt >= NOT_FOUND_TRIES):
                    log.error("delivery.dead_letter", peer=self.peer, error=str(exc), kind=message.get("kind"))
                    self.metrics.inc("linkage_delivery_dead_total", peer=self.peer)
                    async with self.redis.pipeline(transaction=True) as pipe:
                        pipe.rpush(f"{PREFIX}dead:{self.peer}", raw)
                        pipe.lpop(key)
                        await pipe.execute()
                    attempt = 0
                    continue
                attempt += 1
                delay = min(self.max_delay, self.base_delay * 2 ** min(attempt, 20))
                delay = exc.retry_after if exc.retry_after is not None else random.uniform(delay / 2, delay)
                log.warning("delivery.retry", peer=self.peer, attempt=attempt, delay=round(delay, 3),
                            error=str(exc))
                self.metrics.inc("linkage_delivery_retries_total", peer=self.peer)
                await asyncio.sleep(delay)
                continue
            attempt = 0
            self.metrics.inc("linkage_delivery_sent_total", peer=self.peer)
            await self.redis.lpop(key)
