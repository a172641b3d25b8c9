"""Outbox messages: what a ticket change queues for a peer, declared once.

A message is `{"kind": "ticket", "queued_at": …, "body": <ticket>}` (a push; `queued_at` lets the lab hold
pushes back) or `{"kind": "event", "body": <event>}`. The body is the ticket or event rendered at the moment of
the change (a snapshot: the ticket may change again before the worker sends it). The store encodes a message
with the same JSON keys as ever; the outbox worker reads queued entries as plain data, because an entry may
have been written by an earlier version or be unreadable, and it must still be parked, not crash the worker.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec


class TicketMessage(msgspec.Struct, tag_field="kind", tag="ticket", kw_only=True):
    queued_at: float = msgspec.field(default_factory=time.time)
    body: dict[str, Any]


class EventMessage(msgspec.Struct, tag_field="kind", tag="event"):
    body: dict[str, Any]


OutboxMessage = TicketMessage | EventMessage


def as_data(message: OutboxMessage | dict[str, Any]) -> dict[str, Any]:
    """The plain form the worker reads (what json.loads gives of the stored entry); the body is shared, not
    copied: nothing on the sending side changes it."""
    if isinstance(message, dict):
        return message
    if isinstance(message, TicketMessage):
        return {"kind": "ticket", "queued_at": message.queued_at, "body": message.body}
    return {"kind": "event", "body": message.body}

