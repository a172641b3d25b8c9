"""Exponential backoff with jitter, shared by everything that retries a link (peer delivery, AMI, Redis).

The delay for attempt n (1, 2, …) is drawn from [d/2, d] with d = min(cap, base * 2**(n-1)): it doubles until the
cap and never reaches zero, and the jitter keeps many retriers (every worker after a Redis restart) from
stepping in lockstep."""

from __future__ import annotations

import random
from collections.abc import Callable


def delay(attempt: int, base: float, cap: float, rand: Callable[[], float] = random.random) -> float:
    ceiling = min(cap, base * 2.0 ** min(max(attempt, 1) - 1, 30))  # the exponent is bounded: retries go on for days
    return ceiling / 2 + rand() * ceiling / 2
