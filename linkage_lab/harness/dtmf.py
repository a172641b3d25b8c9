"""Generate a pcap of RFC 4733 telephone-events for SIPp's play_pcap_audio.

SIPp's shipped per-digit pcaps share RTP sequence numbers and timestamps, so playing `*` then `8` gets only
`*` detected. One file carrying the whole string, with advancing sequence numbers and one timestamp per
event, is detected digit by digit (LAB-NOTES).
"""

from __future__ import annotations

import struct
from pathlib import Path

EVENTS = {**{str(d): d for d in range(10)}, "*": 10, "#": 11, "A": 12, "B": 13, "C": 14, "D": 15}
PAYLOAD_TYPE = 101
PACKET_MS = 20


def _checksum(data: bytes) -> int:
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _frame(rtp: bytes, sport: int = 6000, dport: int = 6001) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(rtp), 0) + rtp
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                     bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]))
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    eth = b"\x00" * 12 + b"\x08\x00"
    return eth + ip + udp


def rtp_packets(digits: str, tone_ms: int = 100, gap_ms: int = 100, ssrc: int = 0x4C4E4B21,
                seq0: int = 1000, ts0: int = 160000) -> list[tuple[int, bytes]]:
    """(time in ms, RTP packet) for each packet of the digit string."""
    out: list[tuple[int, bytes]] = []
    seq, ts, clock = seq0, ts0, 0
    for digit in digits:
        event = EVENTS[digit.upper()]
        steps = max(1, tone_ms // PACKET_MS)
        for i in range(1, steps + 1):
            marker = 0x80 if i == 1 else 0
            payload = struct.pack("!BBH", event, 10, i * PACKET_MS * 8)
            out.append((clock, struct.pack("!BBHII", 0x80, marker | PAYLOAD_TYPE, seq, ts, ssrc) + payload))
            seq += 1
            clock += PACKET_MS
        for _ in range(3):  # the end packet, sent three times as RFC 4733 recommends
            payload = struct.pack("!BBH", event, 0x80 | 10, steps * PACKET_MS * 8)
            out.append((clock, struct.pack("!BBHII", 0x80, PAYLOAD_TYPE, seq, ts, ssrc) + payload))
            seq += 1
        clock += gap_ms
        ts += (steps * PACKET_MS + gap_ms) * 8
    return out


def write_pcap(digits: str, path: Path, tone_ms: int = 100, gap_ms: int = 100, seq0: int = 1000,
               ts0: int = 160000) -> Path:
    """A second key string in the same call needs later seq0/ts0, or the receiver takes it for a repeat."""
    if not digits or any(d.upper() not in EVENTS for d in digits):
        raise ValueError(f"not a DTMF string: {digits!r}")
    data = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    for ms, rtp in rtp_packets(digits, tone_ms, gap_ms, seq0=seq0, ts0=ts0):
        frame = _frame(rtp)
        data += struct.pack("<IIII", ms // 1000, (ms % 1000) * 1000, len(frame), len(frame)) + frame
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(data))
    return path
