"""Drain the lab around every scenario: no channel left on any PBX, and no INVITE still being retransmitted.

The lab's PBXes know each agent, the citizen and the target phones by host:port (PJSIP `identify` and a static AOR
contact, pbx/render.py), so every scenario's SIPp plays an account on the same port as the scenario before it. An
INVITE a PBX sent towards a role whose SIPp had already exited gets no answer at all; without a provisional answer
it cannot be CANCELled either, so PJSIP retransmits it until Timer B (64 × T1: 6.4 s in the lab) even after its
channel is gone. Landing in the next scenario's SIPp on that port, it is taken for that scenario's call. Zero
channels is therefore not enough: after the channels, the drain waits out Timer B of every outgoing leg whose
far end never answered anything, from the AMI events the scenario recorded. (Asterisk has no command that lists
PJSIP transactions: `pjsip dump endpt` shows pools and timers, not which request they belong to.)

The wait belongs to whoever binds that port next, not to every scenario after such a leg: most scenarios leave
agent 1002 ringing unanswered (the queue rings every agent, few scenarios play 1002), and the next one rarely
plays 1002. So the drain after a scenario records, for each unanswered leg whose address it knows (the lab's
accounts in `desc`), until when the PBX may still send to that host:port (`IN_FLIGHT`); everything that starts
a SIPp on a lab account waits for its own addresses first (`IN_FLIGHT.wait`, `wait_sync`): the runner before
a scenario, the fault drills' traffic, the forged-trunk test. A leg whose address is not known is waited for
at once, as before. The record lives in this process: a command that ends (`linkage scenario run`, a pytest
session leaving the lab up) waits out what is left (`IN_FLIGHT.wait_all`).
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

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


Address = tuple[str, int]


def leg_address(site: dict[str, Any], channel: str) -> Address | None:
    """Where a site's PBX sends the INVITE of an outgoing leg, from its channel's endpoint (pbx/render.py names
    them agent<id>, citizen, target-<name>, followup-out) and the site's accounts as `lab describe` gives them;
    None for an endpoint the description does not place."""
    endpoint = channel.removeprefix("PJSIP/").rsplit("-", 1)[0]
    place: dict[str, Any] | None = None
    accounts = site.get("accounts", {})
    if endpoint == "citizen":
        place = accounts.get("citizen")
    elif endpoint == "followup-out":
        place = site.get("followup", {}).get("gateway")
    elif endpoint.startswith("target-"):
        place = site.get("targets", {}).get(endpoint[len("target-"):], {}).get("phone")
    elif endpoint.startswith("agent"):
        place = next((a for a in accounts.get("agents", []) if f"agent{a.get('id')}" == endpoint), None)
    if not place or "host" not in place or "port" not in place:
        return None
    return str(place["host"]), int(place["port"])


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


@dataclass
class InFlight:
    """Addresses a PBX of this process's lab may still send an unanswered INVITE to, each with the time (epoch)
    its last such INVITE's Timer B runs out. Whoever binds one of them waits until then."""

    until: dict[Address, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)  # tests run scenarios in worker threads too

    def add(self, address: Address, first_sent: float) -> float:
        end = first_sent + TIMER_B + MARGIN
        with self.lock:
            self.until[address] = max(self.until.get(address, 0.0), end)
        return end

    def pending(self, addresses: Iterable[Address] | None = None) -> dict[Address, float]:
        """Of `addresses` (default: all), those still in flight, with their end; the ended are forgotten."""
        now = time.time()
        wanted = None if addresses is None else set(addresses)
        with self.lock:
            for address in [a for a, end in self.until.items() if end <= now]:
                del self.until[address]
            return {a: end for a, end in self.until.items() if wanted is None or a in wanted}

    async def wait(self, addresses: Iterable[Address]) -> tuple[float, dict[Address, float]]:
        """Sleep until no INVITE can still reach any of `addresses`: the seconds slept and what was waited for."""
        pending = self.pending(addresses)
        pause = max(pending.values(), default=0.0) - time.time()
        if pause > 0:
            await asyncio.sleep(pause)
        return max(0.0, pause), pending

    def wait_sync(self, addresses: Iterable[Address] | None = None) -> tuple[float, dict[Address, float]]:
        """As `wait`, for callers without an event loop; all addresses when `addresses` is None."""
        pending = self.pending(addresses)
        pause = max(pending.values(), default=0.0) - time.time()
        if pause > 0:
            time.sleep(pause)
        return max(0.0, pause), pending

    def wait_all(self) -> float:
        return self.wait_sync()[0]


IN_FLIGHT = InFlight()


@dataclass(frozen=True)
class Drained:
    channels: dict[str, int]  # what each busy PBX had at the first look
    waited_channels: float
    left: dict[str, int]  # still there when the wait ran out (empty: drained)
    legs: dict[str, float]  # unanswered legs whose Timer B had not run out yet, with their first INVITE
    waited_legs: float = 0.0
    deferred: dict[str, Address] = field(default_factory=dict)  # of `legs`: left to whoever binds the address

    def note(self, when: str) -> str | None:
        """A timeline line when the drain had to wait."""
        parts = []
        if self.channels:
            parts.append("channels " + ", ".join(f"{s}: {n}" for s, n in self.channels.items())
                         + (f", still {self.left} after {self.waited_channels:.1f}s" if self.left
                            else f", gone in {self.waited_channels:.1f}s"))
        waited = sorted(set(self.legs) - set(self.deferred))
        if waited:
            parts.append(f"waited {self.waited_legs:.1f}s for Timer B of unanswered " + ", ".join(waited))
        if self.deferred:
            parts.append("Timer B of unanswered " + ", ".join(
                f"{leg} ({host}:{port})" for leg, (host, port) in sorted(self.deferred.items()))
                + " left to whoever binds that address next")
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
                events: list[tuple[float, dict[str, str]]] | dict[str, list[tuple[float, dict[str, str]]]]
                | None = None, desc: dict[str, Any] | None = None) -> Drained:
    """Wait, at most `timeout` seconds, until no PBX of `sites` has a channel; then, with the AMI `events` of the
    scenario (recorded until now; by site, or all sites in one list), see to Timer B of every unanswered leg:
    a leg whose address `desc` (shaped like `lab describe`) gives is recorded in IN_FLIGHT for whoever binds
    that address next, any other is waited for here."""
    start = time.monotonic()
    first: dict[str, int] | None = None
    while True:
        now = await _channels(lab, sites)
        first = now if first is None else first
        if not now or time.monotonic() - start > timeout:
            break
        await asyncio.sleep(POLL)
    waited = time.monotonic() - start
    by_site = events if isinstance(events, dict) else {"": events or []}
    legs: dict[str, float] = {}
    deferred: dict[str, Address] = {}
    for site, recorded in by_site.items():
        for chan, at in unanswered_legs(sorted(recorded, key=lambda x: x[0])).items():
            if at + TIMER_B + MARGIN <= time.time():
                continue
            legs[chan] = at
            address = leg_address(desc["sites"][site], chan) if desc and site in desc.get("sites", {}) else None
            if address is not None:
                IN_FLIGHT.add(address, at)
                deferred[chan] = address
    if not legs:
        return Drained(first, waited, now, {})
    here = [at for chan, at in legs.items() if chan not in deferred]
    pause = max(here) + TIMER_B + MARGIN - time.time() if here else 0.0
    if pause > 0:
        await asyncio.sleep(pause)
    return Drained(first, waited, now, legs, max(0.0, pause), deferred)
