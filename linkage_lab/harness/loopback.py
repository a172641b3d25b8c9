"""UDP packets on the loopback interface, read with an AF_PACKET socket (root) from a thread, one clock for all:
the harness's RTP check and the benchmark's packet timestamps both build on it.

Each packet carries the kernel's receive time (SO_TIMESTAMPNS, the wall clock `time.time()` reads), not the
time this thread got round to reading it: a thread that waits for the interpreter while the harness's event
loop is busy reads a backlog late, and stamping on read moved whole bursts of RTP out of the window a check
looked at."""

from __future__ import annotations

import ctypes
import socket
import struct
import threading
import time
from collections.abc import Callable

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; the control message has the same type
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # Linux: as root, past net.core.rmem_max
RCVBUF = 32 * 1024 * 1024
TIMESPEC = struct.Struct("@qq")  # struct timespec on a 64-bit Linux: seconds, nanoseconds
Handler = Callable[[float, int, int, bytes], None]  # (time, source port, destination port, UDP payload)


# A classic BPF program run by the kernel on every loopback frame: keep IPv4 UDP, drop the rest (Redis, HTTP and
# every other TCP byte on the machine's loopback would otherwise fill this socket's buffer while its reader is
# busy, and the RTP it is for would be dropped). (code, jt, jf, k) per instruction.
UDP_ONLY = ((0x28, 0, 0, 12),  # ldh [12]: the Ethernet type
            (0x15, 0, 3, 0x0800),  # IPv4? else drop
            (0x30, 0, 0, 23),  # ldb [23]: the IP protocol
            (0x15, 0, 1, 17),  # UDP? else drop
            (0x06, 0, 0, 0x40000),  # keep the frame
            (0x06, 0, 0, 0))  # drop it
SO_ATTACH_FILTER = 26


def attach_udp_filter(sock: socket.socket) -> None:
    program = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *ins) for ins in UDP_ONLY))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER,
                    struct.pack("HL", len(UDP_ONLY), ctypes.addressof(program)))  # the kernel copies it here


class UdpListener:
    def __init__(self, handler: Handler, name: str = "udp-listener") -> None:
        self.handler = handler
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.bind(("lo", 0))
        attach_udp_filter(self.sock)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        # every loopback frame of the machine lands here (Redis, HTTP, other tests' traffic): a default-sized
        # buffer fills within a fraction of a second while the reader is busy, and the RTP it is for is dropped
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
        except OSError:  # not root: as large as the system allows
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        self.sock.settimeout(0.2)
        self.running = True
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.running = False
        self.thread.join(2)
        self.sock.close()

    def _run(self) -> None:
        while self.running:
            try:
                frame, ancillary, _, addr = self.sock.recvmsg(65535, socket.CMSG_SPACE(TIMESPEC.size))
            except (TimeoutError, OSError):
                continue
            now = received_at(ancillary)
            # each loopback packet is seen twice (out and in): keep the incoming copy; IPv4 + UDP only
            if addr[2] == PACKET_OUTGOING or len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
                continue
            udp = 14 + (frame[14] & 0x0F) * 4
            sport, dport = struct.unpack("!HH", frame[udp:udp + 4])
            self.handler(now, sport, dport, frame[udp + 8:])


def received_at(ancillary: list[tuple[int, int, bytes]]) -> float:
    """The kernel's receive time of a packet from its control messages; now, if the kernel gave none."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= TIMESPEC.size:
            seconds, nanoseconds = TIMESPEC.unpack_from(data)
            return float(seconds + nanoseconds / 1e9)
    return time.time()
