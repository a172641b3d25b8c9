"""HTTP adapter of calls for consoles: the calls in progress (an agent's token sees its own)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from telephony.calls.registry import CallRegistry
from telephony.http_request import own_agent


class CallsHttp:
    def __init__(self, calls: CallRegistry, flag_of: Callable[[str], dict[str, Any] | None] = lambda _: None) -> None:
        self.calls = calls
        self.flag_of = flag_of  # a flagged caller (恶意骚扰), as on the stream's call messages

    async def list_calls(self, request: web.Request) -> web.Response:
        agent = own_agent(request) or request.query.get("agent")  # an agent's token sees its own calls
        calls = []
        for c in self.calls.calls.values():
            legs = [{"uniqueid": leg.uniqueid, "channel": leg.channel, "endpoint": leg.endpoint, "state": leg.state}
                    for leg in c.legs.values()]
            if agent and not any(leg["endpoint"] == f"agent{agent}" for leg in legs):
                continue
            # the caller's number and the times as on the stream's call messages: a console that reloads
            # shows the current call without waiting for its next event
            calls.append({"linkedid": c.linkedid, "legs": legs, "bridged": c.bridged_at is not None,
                          "ticket_id": self.calls.ticket_of(c), "transferring": c.transferring,
                          # the ticket a linked call arrived with (its agent may return it: 退回)
                          "received": self.calls.received.get(c.linkedid),
                          "caller_number": CallRegistry.caller_of(c), "started_at": c.started_at,
                          "bridged_at": c.bridged_at, "caller_flag": self.flag_of(CallRegistry.caller_of(c))})
        return web.json_response({"items": calls})
