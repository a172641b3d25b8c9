"""Drain the lab around every scenario: no channel and no SIP request still being retransmitted on any PBX.

The lab's PBXes know each agent, the citizen and the target phones by host:port (PJSIP `identify` and a static AOR
contact, pbx/render.py), so every scenario's SIPp plays an account on the same port as the scenario before it. A
request a PBX sent towards a role whose SIPp had already exited is retransmitted until Timer B/F (64 × T1: 6.4 s
with the lab's T1 of 100 ms); an INVITE that never got a provisional answer cannot even be CANCELled, so it keeps
going after its channel is gone. Landing in the next scenario's SIPp on that port, it is answered as if it were
that scenario's call. Zero channels therefore is not enough: a scenario starts, and ends, only once every running
PBX reports no channel (`core show channels count`) and no client transaction still sending (`pjsip dump endpt
details`: a transaction whose last message is a request, in state Calling, Trying or Proceeding).
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass

from linkage_lab.lab.lab import Lab

SENDING = ("Calling", "Trying", "Proceeding")  # pjsip_tsx_state_str of a client transaction not yet answered
_CHANNELS = re.compile(r"^\s*(\d+) active channels?\b", re.M)
# pjsip_tsx_layer_dump(detail): " <tsx name> <last message info>|<status code>|<state>", e.g.
# " tsx0x7f3c1c01d2a8 Request msg INVITE/cseq=12113 (tdta0x7f3c1c0c1a28)|0|Calling"
_TSX = re.compile(r"(\S+) Request msg (\w+)/cseq=(\d+) \([^)]*\)\|(-?\d+)\|(\w+)\s*$", re.M)
_TOTAL = re.compile(r"Total (\d+) transactions")
POLL = 0.2


@dataclass(frozen=True)
class Busy:
    """What keeps one PBX from being idle."""

    site: str
    channels: int
    sending: tuple[str, ...]  # "INVITE cseq 12113 Calling"

    def __str__(self) -> str:
        return f"{self.site}: {self.channels} channel(s)" + "".join(f", {s}" for s in self.sending)


def channel_count(text: str) -> int | None:
    """From `core show channels count`; None when the PBX did not answer (not running: nothing to drain)."""
    found = _CHANNELS.search(text)
    return int(found.group(1)) if found else None


def sending(dump: str) -> tuple[str, ...]:
    """The client transactions of `pjsip dump endpt details` that may still retransmit."""
    return tuple(f"{m.group(2)} cseq {m.group(3)} {m.group(5)}" for m in _TSX.finditer(dump)
                 if m.group(5) in SENDING)


def transactions_listed(dump: str) -> bool:
    """Whether the dump really carried the transaction table (else `sending` would miss everything)."""
    return _TOTAL.search(dump) is not None


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


async def busy(lab: Lab, site: str) -> Busy | None:
    channels = channel_count(await _rx(lab.rx_argv(site, "core show channels count")))
    if channels is None:
        return None
    dump = await _rx(lab.rx_argv(site, "pjsip dump endpt details"))
    if not transactions_listed(dump):
        return Busy(site, channels, ("transaction table not readable",)) if channels else None
    pending = sending(dump)
    return Busy(site, channels, pending) if channels or pending else None


@dataclass(frozen=True)
class Drained:
    waited: float
    seen: list[Busy]  # busy at the first look (empty: the lab was idle)
    left: list[Busy]  # still busy when the wait ran out (empty: drained)

    def note(self, when: str) -> str | None:
        """A timeline line when the wait was not for nothing."""
        if not self.seen:
            return None
        outcome = f"still busy after {self.waited:.1f}s: " + "; ".join(map(str, self.left)) if self.left else \
            f"drained in {self.waited:.1f}s"
        return f"lab {when}: {'; '.join(map(str, self.seen))}; {outcome}"


async def drain(lab: Lab, sites: list[str], timeout: float) -> Drained:
    """Wait until no site's PBX is busy, at most `timeout` seconds."""
    start = time.monotonic()
    seen: list[Busy] | None = None
    while True:
        now = [b for b in await asyncio.gather(*(busy(lab, s) for s in sites)) if b is not None]
        seen = now if seen is None else seen
        waited = time.monotonic() - start
        if not now or waited > timeout:
            return Drained(waited, seen, now)
        await asyncio.sleep(POLL)
