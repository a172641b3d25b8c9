"""Signed site-to-site requests (Standard Webhooks style): tolerance, rotation, tampering."""

from __future__ import annotations

import base64

import pytest

from telephony.errors import Unauthorized
from telephony.security import signing

OLD = "whsec_" + base64.b64encode(b"old-secret-old-secret-0").decode()
NEW = "whsec_" + base64.b64encode(b"new-secret-new-secret-1").decode()
BODY = b'{"id":"1"}'
NOW = 1_800_000_000.0


def test_a_signed_request_verifies_and_returns_its_id() -> None:
    h = signing.headers("12345", [NEW], "event-abc", BODY, now=NOW)
    assert h["linkage-site"] == "12345" and h["webhook-signature"].startswith("v1,")
    assert signing.verify([NEW], h, BODY, now=NOW) == "event-abc"


def test_rotation_either_secret_is_accepted_while_both_are_configured() -> None:
    both = signing.headers("12345", [NEW, OLD], "m1", BODY, now=NOW)
    assert len(both["webhook-signature"].split(" ")) == 2
    assert signing.verify([OLD], both, BODY, now=NOW) == "m1"  # a receiver not yet rotated
    old_only = signing.headers("12345", [OLD], "m2", BODY, now=NOW)
    assert signing.verify([NEW, OLD], old_only, BODY, now=NOW) == "m2"  # a receiver that already added NEW
    with pytest.raises(Unauthorized, match="wrong signature"):
        signing.verify([NEW], old_only, BODY, now=NOW)


@pytest.mark.parametrize("skew", [-301, 301])
def test_timestamps_more_than_five_minutes_away_are_refused(skew: int) -> None:
    h = signing.headers("12345", [NEW], "m", BODY, now=NOW + skew)
    with pytest.raises(Unauthorized, match="five minutes"):
        signing.verify([NEW], h, BODY, now=NOW)
    assert signing.verify([NEW], signing.headers("12345", [NEW], "m", BODY, now=NOW + skew / 2), BODY, now=NOW)


def test_tampering_with_body_id_or_timestamp_breaks_the_signature() -> None:
    h = signing.headers("12345", [NEW], "m", BODY, now=NOW)
    for changed, body in (({**h}, BODY + b" "), ({**h, "webhook-id": "other"}, BODY),
                          ({**h, "webhook-timestamp": str(int(NOW) + 1)}, BODY)):
        with pytest.raises(Unauthorized, match="wrong signature"):
            signing.verify([NEW], changed, body, now=NOW)


@pytest.mark.parametrize("drop", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_unsigned_requests_are_refused(drop: str) -> None:
    h = signing.headers("12345", [NEW], "m", BODY, now=NOW)
    del h[drop]
    with pytest.raises(Unauthorized, match="unsigned"):
        signing.verify([NEW], h, BODY, now=NOW)


def test_malformed_headers_are_refused() -> None:
    h = signing.headers("12345", [NEW], "m", BODY, now=NOW)
    with pytest.raises(Unauthorized, match="webhook-id"):
        signing.verify([NEW], {**h, "webhook-id": "bad id\r\n"}, BODY, now=NOW)
    with pytest.raises(Unauthorized, match="Unix seconds"):
        signing.verify([NEW], {**h, "webhook-timestamp": "yesterday"}, BODY, now=NOW)
