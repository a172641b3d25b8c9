"""Adapters of follow-up calls: the dialplan's FastAGI `followup_key` (linkage-followup read a key, or none), the
AMI `OriginateResponse` of a call that was never answered, and the console's list of open follow-ups."""

from __future__ import annotations

import structlog
from aiohttp import web

from telephony.agi.server import AgiRequest, Handler
from telephony.errors import Forbidden, InvalidInput, NotFound
from telephony.followup.services import FollowupService
from telephony.http_request import own_agent
from telephony.ids import TICKET_ID


class FollowupAgi:
    def __init__(self, followup: FollowupService) -> None:
        self.followup = followup

    def routes(self) -> dict[str, Handler]:
        return {"followup_key": self.key}

    async def key(self, request: AgiRequest) -> None:
        """followup_key(ticket id, key, invalid tries): the key is one digit 1–5 or empty (the dialplan filters)."""
        ticket_id = request.arg(0)
        structlog.contextvars.bind_contextvars(ticket_id=ticket_id)
        await self.followup.keyed(ticket_id, request.arg(1)[:1], request.arg(2)[:2])


class FollowupAmi:
    def __init__(self, followup: FollowupService) -> None:
        self.followup = followup

    async def on_event(self, event: dict[str, str]) -> None:
        if (event.get("Event") == "OriginateResponse" and event.get("Context") == "linkage-followup"
                and event.get("Response") == "Failure" and TICKET_ID.match(event.get("Exten", ""))):
            await self.followup.originate_failed(event["Exten"], event.get("Reason", "")[:4])


class FollowupHttp:
    def __init__(self, followup: FollowupService | None) -> None:
        self.followup = followup  # None: an app built without the follow-up worker (answers "not enabled")

    async def list_jobs(self, request: web.Request) -> web.Response:
        """GET /v1/followups: the open follow-ups of tickets this site sent (scheduled, dialling, manual)."""
        if self.followup is None:
            return web.json_response({"enabled": False, "items": []})
        return web.json_response({"enabled": self.followup.enabled, "items": await self.followup.jobs()})

    async def cancel(self, request: web.Request) -> web.Response:
        """DELETE /v1/followups/{ticket_id}: the supervisor calls a follow-up off (the citizen asked not to be
        called, say); the ticket itself is unchanged. 404 when there is no open follow-up for it."""
        own = own_agent(request)
        if own is not None:
            raise Forbidden(f"calling a follow-up off is for the supervisor (the site token), not agent {own}",
                            agent=own)
        ticket_id = request.match_info["ticket_id"]
        if not TICKET_ID.match(ticket_id):
            raise InvalidInput("a ticket id is 20-32 digits", field="ticket_id")
        if self.followup is None or not await self.followup.cancel(ticket_id):
            raise NotFound("no open follow-up for that ticket", ticket_id=ticket_id)
        return web.json_response({"ticket_id": ticket_id, "state": "cancelled"})
