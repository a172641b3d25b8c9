"""The plan's negotiation rules for a three-way call, as pure functions of the room's facts.

- An agent presses "my platform takes it": that agent's platform keeps the caller (rule `agreed`), whatever the
  matter; a key pressed by any other channel decides nothing.
- Nobody decided — both agents left, or `decide_seconds` passed: an emergency (its category is one of
  `threeway.emergency_categories`) stays with the emergency platform (110及时派警先行处置, rule `emergency_110`);
  anything else stays with the platform that first received the call (首接先行受理, rule `first_receiver`).
- The caller left before a decision: nobody keeps anything (rule `caller_left`).

The rule names are words on the ticket that both platforms read, so `emergency_110` keeps its name whichever
platform the site configures as its emergency platform.

After a decision the other platform's agent is released; if the keeper's agent already left, the caller is
brought to the keeper's platform instead of being left alone in the conference.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

AGREED, FIRST_RECEIVER, EMERGENCY, CALLER_LEFT = "agreed", "first_receiver", "emergency_110", "caller_left"
ACCEPTED, TIMEOUT, BOTH_LEFT = "accepted", "timeout", "both_left"  # what ends it, with CALLER_LEFT
TRIGGERS = (ACCEPTED, TIMEOUT, BOTH_LEFT, CALLER_LEFT)
OURS, THEIRS = "ours", "theirs"  # whose agent pressed accept
HERE, THERE = "here", "there"  # where a caller left alone is brought


@dataclass(frozen=True)
class Policy:
    """The site's configuration of the rules (threeway.emergency_categories, threeway.emergency_platform)."""

    emergency_categories: frozenset[str]
    emergency_platform: str

    def emergency(self, category: str) -> bool:
        return category in self.emergency_categories


@dataclass(frozen=True)
class Facts:
    trigger: str  # one of TRIGGERS
    category: str = ""  # the ticket's category
    first_receiver: str = ""  # the platform that first received the call: the ticket's source platform
    accepted_by: str = ""  # the platform whose agent pressed accept
    by: str = ""  # who pressed it: <site>/<agent> here, or the other site's name


@dataclass(frozen=True)
class Outcome:
    keeper: str  # the platform that keeps the caller; empty when nobody does
    rule: str
    by: str  # who or what decided: the presser, timeout, both_left or caller

    def payload(self) -> dict[str, str]:
        """The `decided` event's payload."""
        return {"keeper": self.keeper, "rule": self.rule, "by": self.by}


def decide(facts: Facts, policy: Policy) -> Outcome:
    if facts.trigger == ACCEPTED:
        return Outcome(facts.accepted_by, AGREED, facts.by)
    if facts.trigger == CALLER_LEFT:
        return Outcome("", CALLER_LEFT, "caller")
    if facts.trigger in (TIMEOUT, BOTH_LEFT):
        if policy.emergency(facts.category):
            return Outcome(policy.emergency_platform, EMERGENCY, facts.trigger)
        return Outcome(facts.first_receiver, FIRST_RECEIVER, facts.trigger)
    raise ValueError(f"unknown trigger {facts.trigger!r}")


def presser(channel: str, agent: str, far: str) -> str:
    """Whose agent pressed accept: OURS (this platform's agent), THEIRS (the other platform's leg) or ''."""
    if channel and channel == agent:
        return OURS
    if channel and channel == far:
        return THEIRS
    return ""


def both_agents_left(agent: str, far: str, left: Collection[str]) -> bool:
    """Both agents left: only once the other platform's leg was in the conference at all."""
    return bool(far) and agent in left and far in left


def release(ours: bool, agent: str, far: str, members: Mapping[str, str]) -> str:
    """The channel to release from the conference after a decision (the other platform's agent), or ''.
    `ours` says whether this platform keeps the caller."""
    other = far if ours else agent
    return other if other and other in members else ""


def rescue(ours: bool, agent: str, far: str, caller: str, members: Mapping[str, str]) -> str:
    """HERE or THERE when the keeper's agent already left and the caller is still in the conference: the caller
    is brought to the keeper's platform instead of being left alone. '' otherwise."""
    keeper = agent if ours else far
    if keeper in members or caller not in members:
        return ""
    return HERE if ours else THERE
