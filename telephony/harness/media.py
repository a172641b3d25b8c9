"""Listen on the loopback interface for the RTP a SIPp role receives, to prove the caller is never left in
dead air: during a window of the call, packets keep coming (no gap above a bound) and some carry sound.

SIPp itself cannot inspect received audio, so this reads packets with an AF_PACKET socket on `lo` (root).
"""

from __future__ import annotations

import itertools
import socket
import struct
import threading
import time
from dataclasses import dataclass

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
QUIET = {0xFF, 0x7F, 0xFE, 0x7E}  # G.711 mu-law values at or next to zero


@dataclass
class Packet:
    at: float
    audible: bool


class RtpSniffer:
    def __init__(self, port: int) -> None:
        self.port = port
        self.packets: list[Packet] = []
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.bind(("lo", 0))
        self.sock.settimeout(0.2)
        self.running = True
        self.thread = threading.Thread(target=self._run, name=f"rtp-sniffer-{port}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.running = False
        self.thread.join(2)
        self.sock.close()

    def _run(self) -> None:
        while self.running:
            try:
                frame, addr = self.sock.recvfrom(4096)
            except (TimeoutError, OSError):
                continue
            if addr[2] == PACKET_OUTGOING or len(frame) < 14 + 20 + 8 + 12:
                continue
            if frame[12:14] != b"\x08\x00" or frame[23] != 17:
                continue
            ihl = (frame[14] & 0x0F) * 4
            udp = 14 + ihl
            dport = struct.unpack("!H", frame[udp + 2:udp + 4])[0]
            if dport != self.port:
                continue
            payload = frame[udp + 8 + 12:]
            loud = sum(1 for b in payload if b not in QUIET)
            self.packets.append(Packet(time.time(), loud > len(payload) // 10))


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
