"""Listen on the loopback interface for the RTP a SIPp role receives, to prove the caller is never left in
dead air: during a window of the call, packets keep coming (no gap above a bound) and some carry sound.

SIPp itself cannot inspect received audio, so this reads packets with an AF_PACKET socket on `lo` (root).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from linkage_lab.harness.loopback import UdpListener

QUIET = {0xFF, 0x7F, 0xFE, 0x7E}  # G.711 mu-law values at or next to zero


@dataclass
class Packet:
    at: float
    audible: bool


class RtpSniffer:
    """The RTP a role receives on its media port, each packet marked audible or quiet."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.packets: list[Packet] = []
        self.listener = UdpListener(self._on_udp, name=f"rtp-sniffer-{port}")

    def start(self) -> None:
        self.listener.start()

    def stop(self) -> None:
        self.listener.stop()

    def _on_udp(self, now: float, _: int, dport: int, payload: bytes) -> None:
        if dport != self.port or len(payload) <= 12:
            return
        audio = payload[12:]
        loud = sum(1 for b in audio if b not in QUIET)
        self.packets.append(Packet(now, loud > len(audio) // 10))


def check_window(packets: list[Packet], start: float, end: float, max_gap_ms: float,
                 min_audible_ms: float) -> list[str]:
    """Problems found in [start, end]: a gap in the packet flow, or too little sound."""
    inside = [p for p in packets if start <= p.at <= end]
    if not inside:
        return [f"no RTP reached the caller in the {1000 * (end - start):.0f} ms window"]
    problems = []
    times = [start] + [p.at for p in inside] + [end]
    worst = max(b - a for a, b in itertools.pairwise(times)) * 1000
    if worst > max_gap_ms:
        problems.append(f"the caller heard nothing for {worst:.0f} ms (bound {max_gap_ms:.0f} ms)")
    audible = sum(1 for p in inside if p.audible) * 20
    if audible < min_audible_ms:
        problems.append(f"only {audible} ms of audible tone or music reached the caller (want {min_audible_ms:.0f})")
    return problems
