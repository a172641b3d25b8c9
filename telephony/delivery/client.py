"""HTTP client for a peer controller: push a ticket, send an event, send a batch of both, fetch a ticket by
reference.

Over https:// each request carries the peer's own TLS context (its CA, our client certificate), so one shared
session serves peers with different trust; a TLS failure is an unreachable peer, retried like any other.
"""

from __future__ import annotations

import json
import ssl
import uuid
from collections.abc import Sequence
from typing import Any

import aiohttp

from telephony.config import Peer
from telephony.delivery import batch
from telephony.security import signing


class PeerError(Exception):
    """`unsupported`: the peer refused the batch route itself (an older peer): send the messages one by one.
    `refused`: no connection could be made (nothing listening, a reset, a TLS handshake refused) — the peer is
    down rather than slow, so the worker may ask its /v1/health whether it is back (outbox._pause)."""

    def __init__(self, message: str, retry_after: float | None = None, permanent: bool = False,
                 not_found: bool = False, unsupported: bool = False, refused: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.permanent = permanent
        self.not_found = not_found
        self.unsupported = unsupported
        self.refused = refused

    @classmethod
    def of(cls, status: int, error: str, retry_after: float | None = None) -> PeerError:
        # 4xx other than 404/408/409/425/429 will not improve by retrying: park it as dead.
        permanent = 400 <= status < 500 and status not in batch.RETRIABLE_4XX
        return cls(f"peer answered {status}: {error}", retry_after, permanent, not_found=status == 404)


class PeerClient:
    def __init__(self, session: aiohttp.ClientSession, peer: Peer, site: str, timeout: float = 3.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.session = session
        self.peer = peer
        self.site = site  # who we are, so the peer knows which secrets to check
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        # an https:// peer gets its context from build_tls; True (aiohttp's default checks) is for http://
        self.ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True

    def _headers(self, message_id: str, body: bytes) -> dict[str, str]:
        return {"Content-Type": "application/json",
                **signing.headers(self.site, self.peer.secrets, message_id, body)}

    async def send(self, message: dict[str, Any]) -> None:
        kind = message.get("kind")
        if kind == "ticket":
            url = f"{self.peer.url}/v1/tickets"
        elif kind == "event":
            url = f"{self.peer.url}/v1/tickets/{message['body']['ticket_id']}/events"
        else:
            raise PeerError(f"unknown outbox message kind {kind!r}", permanent=True)
        message_id = batch.message_id(message)
        body = json.dumps(message["body"], ensure_ascii=False, separators=(",", ":")).encode()
        try:
            async with self.session.post(url, data=body, headers=self._headers(message_id, body),
                                         timeout=self.timeout, ssl=self.ssl) as resp:
                if resp.status < 300:
                    return
                text = (await resp.text())[:300]
                if resp.status == 409 and '"replayed"' in text:
                    return  # an earlier attempt got through; its answer was lost
                raise PeerError.of(resp.status, text, _retry_after(resp.headers.get("Retry-After")))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:  # OSError: ssl.SSLError, resets
            raise _unreachable(exc) from exc

    async def send_batch(self, items: Sequence[batch.Outgoing]) -> list[batch.Result]:
        """POST /v1/batch: the results of the prefix the peer processed, in order. A retriable answer to the
        request as a whole raises PeerError; any other refusal of the route (404/405 from a peer that does not
        know it, 401 from one that does not take it as a peer route) or an answer that is not results raises
        it with `unsupported`, and the caller sends one by one instead."""
        body = batch.encode(items)
        url = f"{self.peer.url}/v1/batch"
        try:
            async with self.session.post(url, data=body, headers=self._headers(f"batch-{uuid.uuid4().hex}", body),
                                         timeout=self.timeout, ssl=self.ssl) as resp:
                if resp.status == 200:
                    return batch.parse_results(await resp.json(content_type=None), items)
                text = (await resp.text())[:300]
                if resp.status not in (404, 405) and batch.retriable(resp.status, None):
                    raise PeerError.of(resp.status, text, _retry_after(resp.headers.get("Retry-After")))
                raise PeerError(f"peer answered {resp.status} to a batch: {text}", unsupported=True)
        except ValueError as exc:
            raise PeerError(f"peer's answer to a batch is not its results: {exc}"[:300], unsupported=True) from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise _unreachable(exc) from exc

    async def back(self, timeout: float = 1.0) -> bool:
        """Whether the peer answers its /v1/health now (any answer below 500): asked while a send waits out its
        backoff after the peer refused connections, so a peer that is back is not left waiting for a minute."""
        try:
            async with self.session.get(f"{self.peer.url}/v1/health", ssl=self.ssl,
                                        timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                return resp.status < 500
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False

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


def _unreachable(exc: BaseException) -> PeerError:
    # a timeout is a slow peer, not a down one: it gets the plain backoff, never a probe on top of its load
    refused = isinstance(exc, (aiohttp.ClientConnectorError, ConnectionError)) and not isinstance(exc, TimeoutError)
    return PeerError(f"peer unreachable: {_reason(exc)}", refused=refused)


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
