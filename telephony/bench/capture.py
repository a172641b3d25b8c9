"""Timestamps of the two packets that bound a transfer, read off the loopback interface by one listener (one
clock): the agent's last DTMF end packet (RFC 4733, end bit) towards the PBX, and the INVITE arriving at the far
agent's SIP port."""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass, field

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


@dataclass
class Marks:
    dtmf_end: list[float] = field(default_factory=list)  # first end packet of each digit
    invites: list[float] = field(default_factory=list)


class TransferCapture:
    def __init__(self, agent_media_port: int, far_agent_sip_port: int) -> None:
        self.media_port = agent_media_port
        self.sip_port = far_agent_sip_port
        self.marks = Marks()
        self._seen_end: set[int] = set()  # RTP timestamps of digits whose end was seen
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.bind(("lo", 0))
        self.sock.settimeout(0.2)
        self.running = True
        self.thread = threading.Thread(target=self._run, name="bench-capture", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.running = False
        self.thread.join(2)
        self.sock.close()

    def reset(self) -> None:
        self.marks = Marks()
        self._seen_end = set()

    def _run(self) -> None:
        while self.running:
            try:
                frame, addr = self.sock.recvfrom(65535)
            except (TimeoutError, OSError):
                continue
            now = time.time()
            if addr[2] == PACKET_OUTGOING or len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
                continue
            udp = 14 + (frame[14] & 0x0F) * 4
            sport, dport = struct.unpack("!HH", frame[udp:udp + 4])
            payload = frame[udp + 8:]
            if dport == self.sip_port and payload.startswith(b"INVITE "):
                self.marks.invites.append(now)
            elif sport == self.media_port and len(payload) >= 16 and payload[1] & 0x7F == 101:
                ts = struct.unpack("!I", payload[4:8])[0]
                if payload[13] & 0x80 and ts not in self._seen_end:
                    self._seen_end.add(ts)
                    self.marks.dtmf_end.append(now)
