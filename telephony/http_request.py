"""What every HTTP adapter reads from a request the same way: the size-bounded JSON body, the ids in the path,
and who is calling (set by the authentication middleware: a peer site, an agent's token or the console).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from telephony.errors import Forbidden, InvalidInput, PayloadTooLarge
from telephony.ids import AGENT_ID, TICKET_ID, UNIQUEID

MAX_BODY = 64 * 1024
# Request keys the authentication middleware sets: an agent's token acts for that agent only; a signed
# request names its peer site and the message id it was signed under.
AGENT_KEY = web.RequestKey("agent", str)
PEER_KEY = web.RequestKey("peer", str)
MESSAGE_KEY = web.RequestKey("message_id", str)


async def read_json(request: web.Request) -> Any:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise PayloadTooLarge(f"body larger than {MAX_BODY} bytes")
    raw = await request.read()
    if len(raw) > MAX_BODY:
        raise PayloadTooLarge(f"body larger than {MAX_BODY} bytes")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"body is not valid JSON: {exc}") from exc


def ticket_id(request: web.Request) -> str:
    value = request.match_info["id"]
    if not TICKET_ID.match(value):
        raise InvalidInput("ticket id must be 20-32 digits")
    return value


def linkedid(request: web.Request) -> str:
    value = request.match_info["linkedid"]
    if not UNIQUEID.match(value):
        raise InvalidInput("linkedid has an invalid format")
    return value


def own_agent(request: web.Request) -> str | None:
    """The agent whose own token made the request, or None for the console (and for peers)."""
    return request.get(AGENT_KEY)


def agent(request: web.Request, body: dict[str, Any]) -> str:
    """The body's `agent`, which an agent's token may only name as itself."""
    value = body.get("agent", "")
    if not isinstance(value, str) or not value or not AGENT_ID.match(value):
        raise InvalidInput("field 'agent' (the agent's id, digits) is required", field="agent")
    own = own_agent(request)
    if own is not None and own != value:
        raise Forbidden(f"this token belongs to agent {own}, not {value}", agent=own)
    return value


def own_call(request: web.Request, call_legs: list[str]) -> None:
    own = own_agent(request)
    if own is not None and f"agent{own}" not in call_legs:
        raise Forbidden(f"that call is not agent {own}'s", agent=own)


def signer(request: web.Request) -> tuple[str, str] | None:
    """The peer site and message id of a signed request (verified by the middleware), else None."""
    peer = request.get(PEER_KEY)
    return None if peer is None else (peer, request[MESSAGE_KEY])
