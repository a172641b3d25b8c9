"""A token bucket per caller (a peer site, or a console token), so one noisy client cannot starve the others;
refused requests get 429 with Retry-After, which the peers' delivery workers honour."""

from __future__ import annotations

import time


class RateLimiter:
    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill)

    def take(self, key: str, now: float | None = None) -> float:
        """0 when allowed; otherwise the seconds to wait before the next request will be."""
        t = time.monotonic() if now is None else now
        tokens, last = self.buckets.get(key, (self.burst, t))
        tokens = min(self.burst, tokens + (t - last) * self.rate)
        if tokens >= 1:
            self.buckets[key] = (tokens - 1, t)
            return 0.0
        self.buckets[key] = (tokens, t)
        return (1 - tokens) / self.rate
