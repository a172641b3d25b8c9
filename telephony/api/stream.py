"""The event stream for consoles (SSE): a screen pop when a linked call is offered to an agent, and every later
change of that agent's tickets. Each subscriber has a bounded queue; a console too slow to read loses its
oldest events rather than slowing the controller, and is told so.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from telephony.tickets.models import Event, Ticket


@dataclass(eq=False)
class Subscriber:
    agent: str | None
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=lambda: asyncio.Queue(maxsize=200))
    dropped: int = 0


def concerns(ticket: Ticket, event: Event, agent: str) -> bool:
    return agent in (ticket.offered_to, ticket.signed_for_by, ticket.agent_id, event.actor.get("agent"))


class StreamHub:
    def __init__(self, site: str) -> None:
        self.site = site
        self.subscribers: set[Subscriber] = set()

    def publish(self, ticket: Ticket, event: Event) -> None:
        if not self.subscribers:
            return  # nobody listening: no need to render the ticket (this runs on every change)
        kind = "screen_pop" if event.type == "offered" else "ticket"
        message = {"type": kind, "site": self.site, "event": event.to_dict(), "ticket": ticket.to_dict()}
        for sub in list(self.subscribers):
            if sub.agent is not None and not concerns(ticket, event, sub.agent):
                continue
            if sub.agent is not None and kind == "screen_pop" and event.actor.get("agent") != sub.agent:
                continue  # a phone ringing elsewhere is not this agent's screen pop
            if sub.queue.full():
                sub.queue.get_nowait()
                sub.dropped += 1
            sub.queue.put_nowait(message)

    def subscribe(self, agent: str | None) -> Subscriber:
        sub = Subscriber(agent)
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)


def sse(message: dict[str, Any], event_id: str) -> bytes:
    data = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
    return f"id: {event_id}\nevent: {message['type']}\ndata: {data}\n\n".encode()
