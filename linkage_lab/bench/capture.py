"""Timestamps of the packets that bound a transfer, read off the loopback interface by one listener (one clock):
the agent's last DTMF end packet (RFC 4733, end bit) towards the PBX, the trunk INVITE arriving at the far PBX's
SIP port (which splits the transfer into the sending PBX's part and the far PBX's), and the INVITE arriving at the
far agent's SIP port."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from linkage_lab.harness.loopback import UdpListener


@dataclass
class Marks:
    dtmf_end: list[float] = field(default_factory=list)  # first end packet of each digit
    invites: list[float] = field(default_factory=list)
    trunk_invites: list[float] = field(default_factory=list)  # at the far PBX, from the sending one


class TransferCapture:
    def __init__(self, agent_media_port: int, far_agent_sip_port: int, far_pbx_sip_port: int = 0) -> None:
        self.media_port = agent_media_port
        self.sip_port = far_agent_sip_port
        self.pbx_port = far_pbx_sip_port
        self.marks = Marks()
        self._seen_end: set[int] = set()  # RTP timestamps of digits whose end was seen
        self.listener = UdpListener(self._on_udp, name="bench-capture")

    def start(self) -> None:
        self.listener.start()

    def stop(self) -> None:
        self.listener.stop()

    def reset(self) -> None:
        self.marks = Marks()
        self._seen_end = set()

    def _on_udp(self, now: float, sport: int, dport: int, payload: bytes) -> None:
        if dport == self.sip_port and payload.startswith(b"INVITE "):
            self.marks.invites.append(now)
        elif dport == self.pbx_port and payload.startswith(b"INVITE "):
            self.marks.trunk_invites.append(now)
        elif sport == self.media_port and len(payload) >= 16 and payload[1] & 0x7F == 101:
            ts = struct.unpack("!I", payload[4:8])[0]
            if payload[13] & 0x80 and ts not in self._seen_end:
                self._seen_end.add(ts)
                self.marks.dtmf_end.append(now)
