"""The event stream for consoles (SSE): a screen pop when a linked call is offered to an agent, and every later
change of that agent's tickets. Each subscriber has a bounded queue; a console too slow to read loses its
oldest events rather than slowing the controller, and is told so. `StreamHub.serve` is the GET /v1/stream
handler.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from telephony.errors import InvalidInput
from telephony.http_request import own_agent
from telephony.ids import OPTIONAL_AGENT_ID
from telephony.tickets.models import Event, Ticket

KEEP_ALIVE = 15.0  # seconds without an event before a comment line keeps proxies from closing the stream


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

    async def serve(self, request: web.Request) -> web.StreamResponse:
        agent = own_agent(request) or request.query.get("agent")  # an agent's token: its own stream only
        if agent is not None and not OPTIONAL_AGENT_ID.match(agent):
            raise InvalidInput("agent must be digits")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        sub = self.subscribe(agent or None)
        counter = 0
        try:
            await response.write(b": connected\n\n")
            while True:
                try:
                    async with asyncio.timeout(KEEP_ALIVE):  # not wait_for: see telephony/waits.py
                        message = await sub.queue.get()
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                counter += 1
                if sub.dropped:  # too slow to read: say how many it lost, then carry on
                    await response.write(f"event: dropped\ndata: {sub.dropped}\n\n".encode())
                    sub.dropped = 0
                await response.write(sse(message, str(counter)))
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.unsubscribe(sub)
        return response


def sse(message: dict[str, Any], event_id: str) -> bytes:
    data = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
    return f"id: {event_id}\nevent: {message['type']}\ndata: {data}\n\n".encode()
