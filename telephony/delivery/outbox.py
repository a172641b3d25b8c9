"""The outbox worker: one per peer, FIFO, retried with exponential backoff and jitter.

Messages are queued in Redis in the same transaction as the ticket change that produced them
(see TicketStore.put), so a crash between "stored" and "sent" only delays delivery. The head message is
removed only after the peer acknowledged it; the receiver is idempotent on ticket and event ids.

Under load (more than one message queued) the head messages go in one batch (POST /v1/batch): the peer
processes them in order and stops at the first it cannot take yet, so the acknowledged prefix is removed, a
message refused for good is parked as if sent alone, and the rest waits for the next attempt in the same order.

A prepared transfer's ticket may be pushed early (`push_early`, before the write that queues it, only while the
worker is idle): when its entry reaches the head, it is removed without a second send if that push got through.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from typing import Any

import redis.asyncio as aioredis
import structlog
from prometheus_client import CollectorRegistry

from telephony import backoff
from telephony.delivery import batch, deadletters
from telephony.delivery.client import PeerClient, PeerError
from telephony.delivery.metrics import DeliveryMetrics
from telephony.errors import ConfigError
from telephony.security.sealing import Sealer
from telephony.tickets.models import epoch_of
from telephony.tickets.store import STORE_ERRORS, Head, outbox_key
from telephony.waits import raise_if_cancelled, wait_event

log = structlog.get_logger("delivery")
NOT_FOUND_TRIES = 4
STORE_RETRY_MAX = 5.0  # seconds between attempts to reach Redis during an outage
BATCH_MAX = 50  # messages per batch: a burst of feedback drains in a few requests
BATCH_BYTES = 48 * 1024  # of JSON per batch, well inside the receiver's 64 KiB body limit
BATCH_RETRY_AFTER = 300.0  # seconds of single sends to a peer that refused the batch route
RECENT_SENT = 256  # entries remembered as sent, so a head hint that arrives late is not sent a second time
EARLY_MAX = 64  # early pushes remembered until their outbox entry reaches the head
PROBE_EVERY = 2.0  # seconds between /v1/health probes of a peer that refused connections, during a backoff


def _delivered(message: dict[str, Any]) -> bool:
    body = message.get("body")
    return message.get("kind") == "event" and isinstance(body, dict) and body.get("type") == "delivered"


def _as_bytes(entry: Any) -> bytes:
    return entry if isinstance(entry, bytes) else str(entry).encode()

# KEYS: the outbox. ARGV: the entries expected at its head. Removes them only if they are still there.
TRIM_SCRIPT = """
local head = redis.call('LRANGE', KEYS[1], 0, #ARGV - 1)
if #head ~= #ARGV then
  return 0
end
for i = 1, #ARGV do
  if head[i] ~= ARGV[i] then
    return 0
  end
end
redis.call('LTRIM', KEYS[1], #ARGV, -1)
return 1
"""


class OutboxWorker:
    def __init__(self, redis: aioredis.Redis, client: PeerClient, base_delay: float = 0.2,
                 max_delay: float = 60.0, push_delay: float = 0.0, sealer: Sealer | None = None,
                 metrics: DeliveryMetrics | None = None, linger: float = 0.0) -> None:
        self.redis = redis
        self.client = client
        self.peer = client.peer.name
        self.wake = asyncio.Event()
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.metrics = metrics or DeliveryMetrics(CollectorRegistry())
        self.sent = self.metrics.sent.labels(peer=self.peer)  # bound once: every series is exposed from the start
        self.retries = self.metrics.retries.labels(peer=self.peer)
        self.dead = self.metrics.dead.labels(peer=self.peer)
        self.batches = self.metrics.batches.labels(peer=self.peer)
        self.batched_messages = self.metrics.batched_messages.labels(peer=self.peer)
        self.push_delay = push_delay
        # Seconds a `delivered` event that went into an empty outbox waits for company: the far phone rings a few
        # ms later and `offered` follows, and one request for both costs both sites less than one each. Only that
        # event: others are people's actions, and their order as the other site sees it should stay as close
        # to the real one as the link allows. Tickets never wait: a call may be waiting for them.
        self.linger = linger
        self.sealer = sealer or Sealer(())
        self.attempt = 0  # failed sends of the head message in a row
        self.batch_off_until = 0.0  # monotonic time until which the peer gets single sends only
        self.batch_refused = False  # the peer refused batches and we said so (once)
        self._trim_script = redis.register_script(TRIM_SCRIPT)
        self._head: Head | None = None  # a message that went into the empty outbox: send it without reading it
        self._recent: deque[bytes] = deque(maxlen=RECENT_SENT)  # entries sent and removed lately
        self.idle = False  # waiting with an empty outbox: an early push goes only then (see push_early)
        self.early: dict[str, asyncio.Task[bool]] = {}  # message id -> its early send (True: delivered)

    def notify(self, head: Head | None = None) -> None:
        """Something was queued. `head` is given when it went into an empty outbox (the store saw the list's
        length become 1): it is the head, and the worker sends it at once instead of reading it back first."""
        if head is not None:
            self._head = head
        self.wake.set()

    def push_early(self, message: dict[str, Any]) -> None:
        """TicketHooks.early: a prepared transfer's ticket, sent now, before its durable write queues it. Only
        while this worker is idle (under load the outbox's batches are cheaper, and order is theirs) and with
        no push_delay (the lab holds pushes back on purpose). Its outbox entry, once at the head, is removed
        without a second send when this one was delivered; otherwise it is sent as usual."""
        if not self.idle or self.push_delay or len(self.early) >= EARLY_MAX:
            return
        self.early[batch.message_id(message)] = asyncio.get_running_loop().create_task(self._send_early(message))

    async def _send_early(self, message: dict[str, Any]) -> bool:
        try:
            await self.client.send(message)
        except PeerError as exc:
            log.info("delivery.early_push_failed", peer=self.peer, error=str(exc))
            return False
        return True

    async def _sent_early(self, message: dict[str, Any]) -> bool:
        """Was this head message delivered by its early push (waited for, when still in flight)?"""
        if not self.early:
            return False
        try:
            task = self.early.pop(batch.message_id(message), None)
        except (KeyError, TypeError):
            return False
        if len(self.early) >= EARLY_MAX // 2:  # pushes whose write never queued them (a failed write)
            for mid in [m for m, t in self.early.items() if t.done()][:EARLY_MAX // 4]:
                del self.early[mid]
        return task is not None and await task

    async def run(self) -> None:
        """Owned by the controller's task group: it must outlive a Redis outage. A message sent but not yet
        popped when Redis went away is sent again afterwards; the peer answers that as a replay, which counts
        as delivered."""
        outage = 0
        while True:
            raise_if_cancelled()
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
        """Wait for a message, or send what is at the head: several in one batch when more than one is queued
        (and the peer takes batches), else the head alone. On success pop; on a refusal for good park; otherwise
        sleep the backoff (retries go on for days: only a ticket the peer never knows gets parked)."""
        key = outbox_key(self.peer)
        self.wake.clear()  # before reading: a message queued while the read is in flight wakes the next wait
        hinted, self._head = self._head, None
        if hinted is not None and _as_bytes(hinted.entry) in self._recent:
            hinted = None  # already read back and sent by an earlier step
        if hinted is not None and self.linger and _delivered(hinted.message) and self._batching():
            await asyncio.sleep(self.linger)
            if self.wake.is_set():  # more was queued meanwhile: read the outbox and send them together
                hinted = None
        if hinted is not None:
            raws: list[Any] = [hinted.entry]
        elif self._batching():
            raws = await self.redis.lrange(key, 0, BATCH_MAX - 1)
        else:
            head = await self.redis.lindex(key, 0)
            raws = [] if head is None else [head]
        if not raws:
            self.idle = True
            try:
                await wait_event(self.wake, 1.0)
            finally:
                self.idle = False
            return
        message: dict[str, Any] = hinted.message if hinted else json.loads(self.sealer.open(raws[0]))
        if await self._sent_early(message):
            self.sent.inc()
            await self._trim(key, [raws[0]])
            return
        wait = self._due_in(message)
        if wait > 0:
            await asyncio.sleep(wait)
        chosen = self._select(message, raws)
        if len(chosen) > 1:
            await self._send_batch(key, chosen)
        else:
            await self._send_one(key, raws[0], message)

    async def _send_one(self, key: str, raw: Any, message: dict[str, Any]) -> None:
        try:
            await self.client.send(message)
        except PeerError as exc:
            if self._refused(exc, at_head=True):
                await self._park(message, exc)
                self.attempt = 0
                return
            self.attempt += 1
            await self._pause(exc)
            return
        self.attempt = 0
        self.sent.inc()
        await self._trim(key, [raw])

    def _refused(self, exc: PeerError, at_head: bool) -> bool:
        # The peer does not know the ticket: messages go in order on this link, so the ticket was never
        # ours to give it. A few tries (it may be restoring), then park it rather than block the link.
        return exc.permanent or (exc.not_found and at_head and self.attempt >= NOT_FOUND_TRIES)

    async def _park(self, message: dict[str, Any], exc: PeerError) -> None:
        log.error("delivery.dead_letter", peer=self.peer, error=str(exc), kind=message.get("kind"))
        self.dead.inc()
        await deadletters.park(self.redis, self.sealer, self.peer, message, str(exc))

    # ---- batches -------------------------------------------------------------------------------------
    def _batching(self) -> bool:
        return time.monotonic() >= self.batch_off_until

    def _due_in(self, message: dict[str, Any]) -> float:
        """Seconds until a new ticket may be pushed (push_delay, lab and drills only)."""
        if not self.push_delay or message.get("kind") != "ticket":
            return 0.0
        return float(message.get("queued_at", 0)) + self.push_delay - time.time()

    def _select(self, head: dict[str, Any], raws: list[Any]) -> list[tuple[Any, dict[str, Any], batch.Outgoing]]:
        """The head messages that go in one batch: up to the first that cannot (unreadable, unknown kind, a
        ticket not yet due), within BATCH_BYTES. Those left out are sent once they reach the head."""
        chosen: list[tuple[Any, dict[str, Any], batch.Outgoing]] = []
        size = 0
        for i, raw in enumerate(raws):
            try:
                message = head if i == 0 else json.loads(self.sealer.open(raw))
            except (ValueError, ConfigError):
                break
            if message.get("kind") not in ("ticket", "event") or (i and self._due_in(message) > 0):
                break
            item = batch.Outgoing.of(message)
            size += len(item.data) + 1
            if chosen and size > BATCH_BYTES:
                break
            chosen.append((raw, message, item))
        return chosen

    async def _send_batch(self, key: str, chosen: list[tuple[Any, dict[str, Any], batch.Outgoing]]) -> None:
        try:
            results = await self.client.send_batch([item for _, _, item in chosen])
        except PeerError as exc:
            if exc.unsupported:
                self._fall_back(exc)
                return
            self.attempt += 1
            await self._pause(exc)
            return
        self.batch_refused = False
        self.batches.inc()
        self.batched_messages.inc(len(chosen))
        removed = 0
        acked: list[Any] = []  # delivered entries at the head, not yet removed
        stop: PeerError | None = None
        for (raw, message, _), result in zip(chosen, results, strict=False):
            if batch.delivered(result.status, result.error):
                acked.append(raw)
                self.sent.inc()
                continue
            refusal = PeerError.of(result.status, result.error or "")
            if not self._refused(refusal, at_head=not removed and not acked):
                stop = refusal
                break
            if not await self._trim(key, acked):
                return
            await self._park(message, refusal)  # now the head: parked exactly as a single send would
            removed, acked = removed + len(acked) + 1, []
        if not await self._trim(key, acked):
            return
        removed += len(acked)
        if stop is None and len(results) == len(chosen):
            self.attempt = 0
            return
        # The first message not delivered is the head now: this was its first failure if the head moved.
        self.attempt = 1 if removed else self.attempt + 1
        await self._pause(stop or PeerError("peer answered only part of a batch"))

    async def _trim(self, key: str, acked: list[Any]) -> bool:
        """Remove the acknowledged head entries, only if they are still the head (one script, one round trip)."""
        if not acked:
            return True
        if await self._trim_script(keys=[key], args=acked):
            self._recent.extend(_as_bytes(raw) for raw in acked)
            return True
        log.error("delivery.head_moved", peer=self.peer, count=len(acked))  # someone else popped: read again
        return False

    def _fall_back(self, exc: PeerError) -> None:
        self.batch_off_until = time.monotonic() + BATCH_RETRY_AFTER
        if not self.batch_refused:  # once, not every BATCH_RETRY_AFTER while the peer stays old
            log.warning("delivery.batch_unsupported", peer=self.peer, error=str(exc),
                        retry_in=BATCH_RETRY_AFTER)
            self.batch_refused = True

    async def _pause(self, exc: PeerError) -> None:
        # The peer's Retry-After is honoured up to our own cap: a peer asking for an hour is tried again sooner,
        # which costs it one more 429, while a ticket waiting an hour would cost a caller.
        delay = backoff.delay(self.attempt, self.base_delay, self.max_delay)
        if exc.retry_after is not None:
            delay = min(exc.retry_after, self.max_delay)
        log.warning("delivery.retry", peer=self.peer, attempt=self.attempt, delay=round(delay, 3), error=str(exc))
        self.retries.inc()
        if not exc.refused or exc.retry_after is not None or delay <= PROBE_EVERY:
            await asyncio.sleep(delay)
            return
        # The peer refused connections (down, restarting): one back would wait out the rest of the backoff (40 s
        # and more after minutes down). Its health answer, every PROBE_EVERY, ends the wait; attempts go on.
        loop = asyncio.get_running_loop()
        until = loop.time() + delay
        while (left := until - loop.time()) > 0:
            await asyncio.sleep(min(PROBE_EVERY, left))
            if until - loop.time() > 0 and await self.client.back():
                log.info("delivery.peer_back", peer=self.peer, attempt=self.attempt,
                         saved=round(max(0.0, until - loop.time()), 1))
                return


async def backlog(redis: aioredis.Redis, sealer: Sealer, peer: str) -> dict[str, Any]:
    """What waits for a peer (the supervisor's delivery health): how many messages, and since when the oldest
    waits (its push's queue time, or its event's time; None when the outbox is empty or its head unreadable)."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.llen(outbox_key(peer))
        pipe.lindex(outbox_key(peer), 0)
        queued, head = await pipe.execute()
    oldest: float | None = None
    if head is not None:
        try:
            message = json.loads(sealer.open(head))
            at = message.get("queued_at") or message.get("body", {}).get("at")
            oldest = float(at) if isinstance(at, int | float) else epoch_of(str(at)) if at else None
        except (ValueError, TypeError, AttributeError):
            oldest = None
    return {"peer": peer, "queued": int(queued), "oldest_since": oldest}

