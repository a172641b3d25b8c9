"""HTTP client for a peer controller: push a ticket, send an event, fetch a ticket by reference.

Over https:// each request carries the peer's own TLS context (its CA, our client certificate), so one shared
session serves peers with different trust; a TLS failure is an unreachable peer, retried like any other.
"""

from __future__ import annotations

import json
import ssl
import uuid
from typing import Any

import aiohttp

from telephony.config import Peer
from telephony.security import signing


class PeerError(Exception):
    def __init__(self, message: str, retry_after: float | None = None, permanent: bool = False,
                 not_found: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.permanent = permanent
        self.not_found = not_found


class PeerClient:
    def __init__(self, session: aiohttp.ClientSession, peer: Peer, site: str, timeout: float = 3.0) -> None:
        self.session = session
        self.peer = peer
        self.site = site  # who we are, so the peer knows which secrets to check
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        # an https:// peer always has a context; True (aiohttp's default checks) matters only for http://
        self.ssl: ssl.SSLContext | bool = peer.tls.context if peer.tls is not None else True

    def _headers(self, message_id: str, body: bytes) -> dict[str, str]:
        return {"Content-Type": "application/json",
                **signing.headers(self.site, self.peer.secrets, message_id, body)}

    async def send(self, message: dict[str, Any]) -> None:
        kind = message.get("kind")
        if kind == "ticket":
            url = f"{self.peer.url}/v1/tickets"
            message_id = f"ticket-{message['body']['id']}-{message['body'].get('version', 0)}"
        elif kind == "event":
            url = f"{self.peer.url}/v1/tickets/{message['body']['ticket_id']}/events"
            message_id = f"event-{message['body']['id']}"
        else:
            raise PeerError(f"unknown outbox message kind {kind!r}", permanent=True)
        body = json.dumps(message["body"], ensure_ascii=False, separators=(",", ":")).encode()
        try:
            async with self.session.post(url, data=body, headers=self._headers(message_id, body),
                                         timeout=self.timeout, ssl=self.ssl) as resp:
                if resp.status < 300:
                    return
                text = (await resp.text())[:300]
                if resp.status == 409 and '"replayed"' in text:
                    return  # an earlier attempt got through; its answer was lost
                retry_after = _retry_after(resp.headers.get("Retry-After"))
                # 4xx other than 404/408/409/429 will not improve by retrying: park it as dead.
                permanent = 400 <= resp.status < 500 and resp.status not in (404, 408, 409, 425, 429)
                raise PeerError(f"peer answered {resp.status}: {text}", retry_after, permanent,
                                not_found=resp.status == 404)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:  # OSError: ssl.SSLError, resets
            raise PeerError(f"peer unreachable: {_reason(exc)}") from exc

    async def fetch_ticket(self, url: str) -> dict[str, Any]:
        """Dereference a Call-Info URL; only URLs under the configured peer base are followed."""
        if not url.startswith(self.peer.url + "/v1/tickets/"):
            raise PeerError("reference is not under the peer's base URL", permanent=True)
        try:
            async with self.session.get(url, headers=self._headers(f"fetch-{uuid.uuid4().hex}", b""),
                                        timeout=self.timeout, ssl=self.ssl) as resp:
                if resp.status != 200:
                    raise PeerError(f"peer answered {resp.status}")
                data: dict[str, Any] = await resp.json()
                return data
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            raise PeerError(f"fetch failed: {_reason(exc)}") from exc


def _reason(exc: BaseException) -> str:
    """The class, and for TLS the handshake or verification reason an operator can act on."""
    for inner in (getattr(exc, "certificate_error", None), getattr(exc, "os_error", None), exc.__cause__, exc):
        verify = getattr(inner, "verify_message", None)
        if verify:
            return f"{exc.__class__.__name__}: TLS certificate verify failed: {verify}"
        if isinstance(inner, ssl.SSLError) and inner.reason:
            return f"{exc.__class__.__name__}: TLS {inner.reason}"
    # a listener that wants a client certificate we did not send resets the connection after the handshake
    strerror = getattr(exc, "strerror", None)
    return f"{exc.__class__.__name__}: {strerror}" if strerror else exc.__class__.__name__


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, min(float(value), 3600.0))
    except ValueError:
        return None
