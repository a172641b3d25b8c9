"""The event stream for consoles (SSE): a screen pop when a linked call is offered to an agent, every later
change of that agent's tickets, and its calls as they ring, are answered and end (`publish_call`, from the call
registry). An agent's token opens only its own stream; the whole site's is the supervisor's. Each subscriber
has a bounded queue; a console too slow to read loses its oldest events rather than slowing the controller,
and is told so. `StreamHub.serve` is the GET /v1/stream handler.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from telephony.calls.registry import CallChange
from telephony.errors import Forbidden, InvalidInput
from telephony.http_request import own_agent
from telephony.ids import AGENT_ID
from telephony.tickets.models import Event, Ticket

FlagOf = Callable[[str], "dict[str, Any] | None"]  # a caller's flag as consoles show it (callers/services.py)
KEEP_ALIVE = 15.0  # seconds without an event before a comment line keeps proxies from closing the stream
_END: dict[str, Any] = {"type": "end"}  # put by StreamHub.close: the stream's handler returns (compared by identity)


@dataclass(eq=False)
class Subscriber:
    agent: str | None
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=lambda: asyncio.Queue(maxsize=200))
    dropped: int = 0


def concerns(ticket: Ticket, event: Event, agent: str) -> bool:
    return agent in (ticket.offered_to, ticket.signed_for_by, ticket.agent_id, event.actor.get("agent"))


class StreamHub:
    def __init__(self, site: str, flag_of: FlagOf | None = None) -> None:
        """`flag_of` names a flagged caller (恶意骚扰) on the pop and the call messages (`caller_flag`, only
        when flagged)."""
        self.site = site
        self.flag_of = flag_of or (lambda _: None)
        self.subscribers: set[Subscriber] = set()
        self.closed = False

    def close(self) -> None:
        """The controller is stopping: every stream ends now. A handler waiting for its console's next event (a
        console gone meanwhile is only noticed at the next write) would otherwise hold the HTTP server's graceful
        shutdown for up to KEEP_ALIVE, past the controller's own shutdown timeout."""
        self.closed = True
        for sub in list(self.subscribers):
            self._put(sub, _END)

    def publish(self, ticket: Ticket, event: Event) -> None:
        if not self.subscribers:
            return  # nobody listening: no need to render the ticket (this runs on every change)
        kind = "screen_pop" if event.type == "offered" else "ticket"
        message = {"type": kind, "site": self.site, "event": event.to_dict(), "ticket": ticket.to_dict()}
        flag = self.flag_of(ticket.caller_number)
        if flag is not None:  # only a flagged caller's messages carry it
            message["caller_flag"] = flag
        # a referral received here that nobody took yet is in every agent's inbox: no phone rings for it
        shared = ticket.mode == "referral" and ticket.target.site == self.site and not ticket.signed_for_by
        for sub in list(self.subscribers):
            if sub.agent is not None and not shared and not concerns(ticket, event, sub.agent):
                continue
            if sub.agent is not None and kind == "screen_pop" and event.actor.get("agent") != sub.agent:
                continue  # a phone ringing elsewhere is not this agent's screen pop
            self._put(sub, message)

    def publish_call(self, change: CallChange) -> None:
        """An agent's call rang, was answered or ended: to that agent's streams and the site's. The caller's
        number goes unmasked: the agent needs it (the logs mask it; nothing here logs it)."""
        if not self.subscribers:
            return
        call = change.to_dict()
        flag = self.flag_of(change.caller_number)
        if flag is not None:
            call["caller_flag"] = flag
        message = {"type": "call", "site": self.site, "state": change.state, "call": call}
        for sub in list(self.subscribers):
            if sub.agent is None or sub.agent == change.agent:
                self._put(sub, message)

    def publish_supervisor(self, message: dict[str, Any]) -> None:
        """A site-wide notice (a caller flagged, a repeat caller suggested): to the supervisor's streams only."""
        for sub in list(self.subscribers):
            if sub.agent is None:
                self._put(sub, {**message, "site": self.site})

    @staticmethod
    def _put(sub: Subscriber, message: dict[str, Any]) -> None:
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
        agent = stream_of(request)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        sub = self.subscribe(agent)
        counter = 0
        try:
            await response.write(b": connected\n\n")
            while not self.closed:
                try:
                    async with asyncio.timeout(KEEP_ALIVE):  # not wait_for: see telephony/waits.py
                        message = await sub.queue.get()
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if message is _END:
                    break
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


def stream_of(request: web.Request) -> str | None:
    """Whose stream a request may open: an agent's token its own only (another agent's is 403), the site
    (supervisor) token any agent's or, with no `agent=`, the whole site's (None)."""
    own = own_agent(request)
    asked = request.query.get("agent") or None
    if asked is not None and not AGENT_ID.match(asked):
        raise InvalidInput("agent must be digits", field="agent")
    if own is not None and asked is not None and asked != own:
        raise Forbidden(f"this token belongs to agent {own}: it opens that agent's stream only", agent=own)
    return own or asked


def sse(message: dict[str, Any], event_id: str) -> bytes:
    data = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
    return f"id: {event_id}\nevent: {message['type']}\ndata: {data}\n\n".encode()
