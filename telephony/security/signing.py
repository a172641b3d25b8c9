"""Signed site-to-site requests in the style of the Standard Webhooks spec.

The sender adds `webhook-id` (the message id, the same on every retry), `webhook-timestamp` (Unix seconds) and
`webhook-signature` (`v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, one per secret, space-separated, so a
secret can be rotated: the peers accept any secret in their list while both are configured), plus
`linkage-site` naming the sender. The receiver refuses a missing or wrong signature and a timestamp more than
five minutes away either way; a message id it already processed is answered 409 `replayed` and changes nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence

from telephony.errors import Unauthorized
from telephony.ids import SIGNED_MESSAGE_ID

TOLERANCE = 300  # seconds, both ways


def secret_bytes(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


def sign(secrets: Sequence[str], message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    return " ".join("v1," + base64.b64encode(hmac.new(secret_bytes(s), signed, hashlib.sha256).digest()).decode()
                    for s in secrets)


def headers(site: str, secrets: Sequence[str], message_id: str, body: bytes,
            now: float | None = None) -> dict[str, str]:
    ts = int(time.time() if now is None else now)
    return {"webhook-id": message_id, "webhook-timestamp": str(ts),
            "webhook-signature": sign(secrets, message_id, ts, body), "linkage-site": site}


def verify(secrets: Sequence[str], got: Mapping[str, str], body: bytes, now: float | None = None) -> str:
    """Returns the message id; raises Unauthorized with the reason otherwise."""
    message_id = got.get("webhook-id", "")
    raw_ts = got.get("webhook-timestamp", "")
    signatures = got.get("webhook-signature", "")
    if not message_id or not raw_ts or not signatures:
        raise Unauthorized("unsigned request: webhook-id, webhook-timestamp and webhook-signature are required")
    if not SIGNED_MESSAGE_ID.match(message_id):
        raise Unauthorized("webhook-id has an invalid format")
    if not raw_ts.isdigit():
        raise Unauthorized("webhook-timestamp must be Unix seconds")
    ts = int(raw_ts)
    if abs((time.time() if now is None else now) - ts) > TOLERANCE:
        raise Unauthorized("webhook-timestamp is more than five minutes away from now")
    expected = {sig.removeprefix("v1,") for sig in sign(secrets, message_id, ts, body).split(" ")}
    offered = [part.removeprefix("v1,") for part in signatures.split(" ") if part.startswith("v1,")]
    if not any(hmac.compare_digest(o, e) for o in offered for e in expected):
        raise Unauthorized("wrong signature")
    return message_id
