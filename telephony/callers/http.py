"""HTTP adapter of callers for consoles: flag a caller's number (an agent, as itself, or the supervisor), lift
a flag (the supervisor only: a flag changes how a caller is treated, and lifting it is the supervisor's call),
and the supervisor's views — the flags, their audit, the repeat callers suggested and the counts per number.
Numbers there are in full: only the site token reads them (an agent's token is 403)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from aiohttp import web
from msgspec import Meta

from telephony.callers.flags import Number, Reason
from telephony.callers.services import CallerService, by_of
from telephony.errors import Forbidden, InvalidInput, NotFound
from telephony.http_request import own_agent, read_json
from telephony.ids import OptionalAgentId
from telephony.validation import translate

LIMIT = Annotated[int, Meta(ge=1, le=1000)]
MESSAGES = {"number": "field 'number' must be a caller's number: an optional + and 1-20 digits",
            "reason": "field 'reason' is required: 1-200 characters, no control characters"}


class FlagBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    number: Number
    reason: Reason
    agent: OptionalAgentId = ""  # an agent's token may name only itself


class UnflagBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    number: Number
    reason: Reason


class CallersHttp:
    def __init__(self, callers: CallerService | None) -> None:
        self.service = callers

    @property
    def callers(self) -> CallerService:
        if self.service is None:  # an app built without them (tests of other routes)
            raise NotFound("caller flags are not served here")
        return self.service

    async def flag(self, request: web.Request) -> web.Response:
        """POST /v1/callers/flags {number, reason, agent?}: 201 (flagged), 200 (its reason replaced)."""
        body = _decode(await read_json(request), FlagBody)
        own = own_agent(request)
        if own is not None and body.agent not in ("", own):
            raise Forbidden(f"this token belongs to agent {own}, not {body.agent}", agent=own)
        by = own or body.agent or by_of(None)
        flag, new, synced = await self.callers.flag(body.number, _reason(body), by)
        return web.json_response({**msgspec.to_builtins(flag), "pbx": "synced" if synced else "pending"},
                                 status=201 if new else 200)

    async def unflag(self, request: web.Request) -> web.Response:
        """POST /v1/callers/unflag {number, reason}: the supervisor lifts a flag; 404 if it is not flagged."""
        _supervisor(request, "lifts a flag")
        body = _decode(await read_json(request), UnflagBody)
        flag, synced = await self.callers.unflag(body.number, _reason(body), by_of(None))
        return web.json_response({**msgspec.to_builtins(flag), "pbx": "synced" if synced else "pending"})

    async def flags(self, request: web.Request) -> web.Response:
        _supervisor(request, "reads the flags")
        return web.json_response({"items": msgspec.to_builtins(self.callers.flags())})

    async def audit(self, request: web.Request) -> web.Response:
        _supervisor(request, "reads the audit")
        entries = await self.callers.audit(_limit(request, 100))
        return web.json_response({"items": msgspec.to_builtins(entries)})

    async def suggestions(self, request: web.Request) -> web.Response:
        _supervisor(request, "reads the suggestions")
        h = self.callers.config.harassment
        return web.json_response({"calls": h.repeat_calls, "minutes": h.repeat_minutes,
                                  "items": [s.to_dict() for s in self.callers.suggestions()]})

    async def counts(self, request: web.Request) -> web.Response:
        _supervisor(request, "reads the counts per number")
        return web.json_response({"minutes": self.callers.config.harassment.repeat_minutes,
                                  "items": self.callers.counts(_limit(request, 50))})


def _decode(raw: Any, kind: type[FlagBody] | type[UnflagBody]) -> Any:
    try:
        return msgspec.convert(raw, kind)
    except msgspec.ValidationError as exc:
        raise translate(exc, "the request", MESSAGES, top="body must be a JSON object") from exc


def _reason(body: FlagBody | UnflagBody) -> str:
    reason = body.reason.strip()
    if not reason:
        raise InvalidInput(MESSAGES["reason"], field="reason")
    return reason


def _supervisor(request: web.Request, what: str) -> None:
    own = own_agent(request)
    if own is not None:
        raise Forbidden(f"only the supervisor (the site token) {what}; this token is agent {own}'s", agent=own)


def _limit(request: web.Request, default: int) -> int:
    raw = request.query.get("limit", str(default))
    try:
        return msgspec.convert(int(raw), LIMIT)
    except (ValueError, msgspec.ValidationError) as exc:
        raise InvalidInput("limit must be an integer from 1 to 1000", field="limit") from exc
