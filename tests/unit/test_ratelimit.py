"""The per-caller token bucket of the API."""

from __future__ import annotations

from telephony.security.ratelimit import RateLimiter


def test_burst_then_refill_and_callers_are_independent() -> None:
    limiter = RateLimiter(rate=10, burst=3)
    assert [limiter.take("110", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.take("110", now=0.0)
    assert 0.09 < wait <= 0.1  # one token comes back every 0.1 s
    assert limiter.take("12345", now=0.0) == 0.0  # another caller has its own bucket
    assert limiter.take("110", now=0.1) == 0.0
    assert limiter.take("110", now=0.1) > 0
    assert limiter.take("110", now=10.0) == 0.0  # refilled, but never beyond the burst
    assert [limiter.take("110", now=10.0) for _ in range(2)] == [0.0, 0.0]
    assert limiter.take("110", now=10.0) > 0
