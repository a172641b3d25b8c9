"""Drain the lab around every scenario: no channel left on any PBX, and no INVITE still being retransmitted.

The lab's PBXes know each agent, the citizen and the target phones by host:port (PJSIP `identify` and a static AOR
contact, pbx/render.py), so every scenario's SIPp plays an account on the same port as the scenario before it. An
INVITE a PBX sent towards a role whose SIPp had already exited gets no answer at all; without a provisional answer
it cannot be CANCELled either, so PJSIP retransmits it until Timer B (64 × T1: 6.4 s in the lab) even after its
channel is gone. Landing in the next scenario's SIPp on that port, it is taken for that scenario's call. Zero
channels is therefore not enough: after the channels, the drain waits out Timer B of every outgoing leg whose
far end never answered anything, from the AMI events the scenario recorded. (Asterisk has no command that lists
PJSIP transactions: `pjsip dump endpt` shows pools and timers, not which request they belong to.)
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from typing import Protocol

from linkage_lab.lab.lab import SIP_TIMER_T1

TIMER_B = 64 * SIP_TIMER_T1 / 1000
MARGIN = 0.3  # the last retransmission leaves at 63 × T1; a little more for a loaded machine's timers
_CHANNELS = re.compile(r"^\s*(\d+) active channels?\b", re.M)
ANSWERED_STATES = {"5", "6"}  # ChannelState Ringing, Up: the far end answered, a CANCEL or BYE can end it
FINAL_STATUSES = {"ANSWER", "BUSY"}  # DialEnd statuses that are the far end's own final answer
POLL = 0.1


def channel_count(text: str) -> int | None:
    """From `core show channels count`; None when the PBX did not answer (not running: nothing to drain)."""
    found = _CHANNELS.search(text)
    return int(found.group(1)) if found else None


def unanswered_legs(events: list[tuple[float, dict[str, str]]]) -> dict[str, float]:
    """Outgoing SIP legs (Dial towards a PJSIP endpoint other than a trunk) whose far end never answered, each
    with the time its INVITE was first sent."""
    sent: dict[str, float] = {}
    answered: set[str] = set()
    for at, e in events:
        event = e.get("Event")
        if event == "DialBegin":
            dest = e.get("DestChannel", "")
            if dest.startswith("PJSIP/") and not dest.startswith("PJSIP/trunk-"):
                sent.setdefault(dest, at)
        elif event == "Newstate" and e.get("ChannelState") in ANSWERED_STATES:
            answered.add(e.get("Channel", ""))
        elif (event == "DialState" and e.get("DestChannelState") in ANSWERED_STATES) or (
                event == "DialEnd" and e.get("DialStatus") in FINAL_STATUSES):
            answered.add(e.get("DestChannel", ""))
    return {chan: at for chan, at in sent.items() if chan not in answered}


class Pbxes(Protocol):
    """What the drain needs of the sites' PBXes: the lab's (`Lab`, chroot) or the containers' (tests/images)."""

    def rx_argv(self, site: str, command: str) -> list[str]: ...


@dataclass(frozen=True)
class Drained:
    channels: dict[str, int]  # what each busy PBX had at the first look
    waited_channels: float
    left: dict[str, int]  # still there when the wait ran out (empty: drained)
    legs: dict[str, float]  # unanswered legs whose Timer B had not run out yet, with their first INVITE
    waited_legs: float = 0.0

    def note(self, when: str) -> str | None:
        """A timeline line when the drain had to wait."""
        parts = []
        if self.channels:
            parts.append("channels " + ", ".join(f"{s}: {n}" for s, n in self.channels.items())
                         + (f", still {self.left} after {self.waited_channels:.1f}s" if self.left
                            else f", gone in {self.waited_channels:.1f}s"))
        if self.legs:
            parts.append(f"waited {self.waited_legs:.1f}s for Timer B of unanswered "
                         + ", ".join(sorted(self.legs)))
        return f"lab {when}: " + "; ".join(parts) if parts else None


async def _rx(argv: list[str], timeout: float = 5.0) -> str:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.DEVNULL)
    try:
        async with asyncio.timeout(timeout):
            out, _ = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return ""
    return out.decode(errors="replace")


async def _channels(lab: Pbxes, sites: list[str]) -> dict[str, int]:
    counts = await asyncio.gather(*(_rx(lab.rx_argv(s, "core show channels count")) for s in sites))
    return {s: n for s, text in zip(sites, counts, strict=True) if (n := channel_count(text))}


async def drain(lab: Pbxes, sites: list[str], timeout: float,
                events: list[tuple[float, dict[str, str]]] | None = None) -> Drained:
    """Wait, at most `timeout` seconds, until no PBX of `sites` has a channel; then, with the AMI `events` of the
    scenario (recorded until now), until Timer B of every unanswered leg has run out."""
    start = time.monotonic()
    first: dict[str, int] | None = None
    while True:
        now = await _channels(lab, sites)
        first = now if first is None else first
        if not now or time.monotonic() - start > timeout:
            break
        await asyncio.sleep(POLL)
    waited = time.monotonic() - start
    legs = {c: at for c, at in unanswered_legs(events or []).items() if at + TIMER_B + MARGIN > time.time()}
    if not legs:
        return Drained(first, waited, now, {})
    pause = max(legs.values()) + TIMER_B + MARGIN - time.time()
    await asyncio.sleep(max(0.0, pause))
    return Drained(first, waited, now, legs, max(0.0, pause))
