"""Crash recovery on the sending side: the controller stored the ticket and died before the AGI answered, so the
call stayed with the agent. The next run learns the call from Asterisk (resync) and the agent's next press sends
the same ticket again: one ticket for the call, one push in the outbox, never a second one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from linkage_lab.lab.lab import PLANS, Lab
from telephony.calls.registry import CallRegistry
from telephony.tickets.hooks import TicketHooks
from telephony.tickets.services import TicketService
from telephony.tickets.store import PREFIX, TicketStore, outbox_key
from telephony.transfers.sending import SendingService

REDIS_DB = 7  # the unit conftest's `redis` fixture gives this database, emptied
LINKEDID = "1795934017.10"
CHANNELS = [
    {"Event": "CoreShowChannel", "Uniqueid": "1795934017.10", "Linkedid": LINKEDID,
     "Channel": "PJSIP/citizen-00000001", "CallerIDNum": "13912345678", "BridgeId": "b1"},
    {"Event": "CoreShowChannel", "Uniqueid": "1795934017.11", "Linkedid": LINKEDID,
     "Channel": "PJSIP/agent1001-00000002", "CallerIDNum": "1001", "BridgeId": "b1"},
]


def _service(tmp_path: Path, redis: aioredis.Redis, calls: CallRegistry) -> SendingService:
    config = Lab(rootfs=str(tmp_path)).site_config(PLANS["12345"])
    tickets = TicketService(config, TicketStore(redis), TicketHooks())
    return SendingService(config, calls, tickets, _no_pbx)


async def _no_pbx(action: dict[str, str]) -> Any:
    raise AssertionError(f"no AMI action expected here: {action}")


def _restarted() -> CallRegistry:
    calls = CallRegistry()
    calls.resync(CHANNELS)  # what a fresh controller learns at login
    return calls


async def test_a_press_after_a_restart_resends_the_stored_ticket(tmp_path: Path, redis: aioredis.Redis) -> None:
    first_calls = _restarted()
    first = _service(tmp_path, redis, first_calls)
    target = first.config.target("110")
    assert target is not None
    ticket, exten = await first.start(first_calls.calls[LINKEDID], "1795934017.11", target)
    # ...the controller dies here, before the AGI answer: the call never moved. A new run, a new press:
    calls = _restarted()
    again, exten_again = await _service(tmp_path, redis, calls).start(
        calls.calls[LINKEDID], "1795934017.11", target)
    assert (again.id, exten_again) == (ticket.id, exten)
    assert await redis.zcard(f"{PREFIX}tickets") == 1
    assert await redis.llen(outbox_key("110")) == 1  # one push, not two
    assert calls.calls[LINKEDID].ticket_id == ticket.id and calls.calls[LINKEDID].transferring


async def test_a_ticket_past_delivered_is_not_resent(tmp_path: Path, redis: aioredis.Redis) -> None:
    """The earlier transfer went and failed (recalled to the agent): a new press is a new transfer."""
    calls = _restarted()
    service = _service(tmp_path, redis, calls)
    target = service.config.target("110")
    assert target is not None
    ticket, _ = await service.start(calls.calls[LINKEDID], "1795934017.11", target)
    await service.tickets.record(ticket.id, "transfer_failed", "1001", {"reason": "no answer in time"})
    calls = _restarted()
    again, _ = await _service(tmp_path, redis, calls).start(calls.calls[LINKEDID], "1795934017.11", target)
    assert again.id != ticket.id
    assert await redis.zcard(f"{PREFIX}tickets") == 2


async def test_calls_seen_live_are_not_looked_up(tmp_path: Path, redis: aioredis.Redis) -> None:
    calls = _restarted()
    calls.resync(CHANNELS)  # a reconnect of the same run: the call was already known
    assert calls.calls[LINKEDID].recovered  # still the previous run's call
    fresh = CallRegistry()
    fresh.on_event({"Event": "Newchannel", "Uniqueid": "1795934017.20", "Linkedid": "1795934017.20",
                    "Channel": "PJSIP/citizen-00000009", "CallerIDNum": "13912345678"})
    call = fresh.get("1795934017.20")
    assert call is not None and not call.recovered
