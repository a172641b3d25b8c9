"""FastAGI adapter of the three-way context (the contract is agi/README.md): the three-way, consult and
conference keys, and the consultation call asking for its target."""

from __future__ import annotations

import structlog

from telephony.agi.server import AgiRequest, Handler
from telephony.threeway.services import ThreewayService


class ThreewayAgi:
    def __init__(self, threeway: ThreewayService) -> None:
        self.threeway = threeway

    def routes(self) -> dict[str, Handler]:
        return {"threeway": self.threeway_key, "conf_key": self.conf_key, "consult": self.consult,
                "consult_out": self.consult_out}

    async def threeway_key(self, request: AgiRequest) -> None:
        """threeway(linkedid) on the agent's channel."""
        structlog.contextvars.bind_contextvars(call_id=request.arg(0))
        await self.threeway.key(request.arg(0), request.uniqueid)

    async def consult(self, request: AgiRequest) -> None:
        """consult(linkedid) on the agent's channel."""
        structlog.contextvars.bind_contextvars(call_id=request.arg(0))
        await self.threeway.consult(request.arg(0), request.uniqueid)

    async def consult_out(self, request: AgiRequest) -> None:
        """consult_out(slot) on the consultation's Local channel: LINKAGE_CONSULT = the extension to dial."""
        exten = self.threeway.consult_dialled(request.arg(0), request.channel)
        if exten is not None:
            await request.set_variable("LINKAGE_CONSULT", exten)

    async def conf_key(self, request: AgiRequest) -> None:
        """conf_key(action, ticket id, uniqueid) inside the conference."""
        structlog.contextvars.bind_contextvars(ticket_id=request.arg(1))
        await self.threeway.conf_key(request.arg(0), request.arg(1), request.arg(2))
