"""The harness's two clocks agree: RTP packets carry the kernel's receive time and AMI events Asterisk's own
time, so a media window between two AMI events holds the packets of that moment however busy the harness's
event loop and threads were."""

from __future__ import annotations

import socket
import time

from linkage_lab.harness.ami import happened_at
from linkage_lab.harness.loopback import SO_TIMESTAMPNS, TIMESPEC, UdpListener, received_at


def test_an_event_keeps_asterisks_time() -> None:
    assert happened_at({"Event": "DTMFEnd", "Timestamp": "1796155154.190123"}, 1796155154.45) == 1796155154.190123


def test_an_event_without_a_plausible_time_keeps_its_arrival() -> None:
    for stamp in ("", "soon", "1796155999.0", "1.0"):  # missing, garbled, in the future, far past
        assert happened_at({"Event": "Hangup", "Timestamp": stamp}, 1796155154.45) == 1796155154.45


def test_the_kernel_time_of_a_packet_is_read_from_its_control_message() -> None:
    ancillary = [(socket.SOL_SOCKET, SO_TIMESTAMPNS, TIMESPEC.pack(1796155154, 250_000_000))]
    assert received_at(ancillary) == 1796155154.25
    before = time.time()
    assert before <= received_at([]) <= time.time() + 1


def kernel_stamps_on(out: socket.socket, port: int) -> None:
    """Wait until the kernel stamps packets on arrival. It turns receive timestamps on for the first socket that
    asks from a deferred work item, and stamps a packet that landed before that when it is read; the harness's
    sniffers start well before the calls they watch, this test does not. A probe read 50 ms after it was sent
    tells which: stamped at its send, or at its read."""
    probe = UdpListener(lambda *_: None)  # only its socket: read here, not by its thread
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            sent = time.time()
            out.sendto(b"probe", ("127.0.0.1", port))
            time.sleep(0.05)
            while True:
                frame, ancillary, _, _ = probe.sock.recvmsg(65535, socket.CMSG_SPACE(TIMESPEC.size))
                if frame.endswith(b"probe"):
                    break
            if received_at(ancillary) - sent < 0.025:
                return
        raise AssertionError("the kernel never stamped a packet on arrival")
    finally:
        probe.sock.close()


def test_a_reader_that_falls_behind_still_stamps_packets_when_they_arrived() -> None:
    got: list[float] = []
    port = 45_000 + int(time.time() * 1000) % 500
    listener = UdpListener(lambda at, _, dport, __: got.append(at) if dport == port else None)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
        kernel_stamps_on(out, port + 1)
        sent = []  # (just before, just after) each send: the kernel's receive time falls between the two
        for _ in range(3):  # sent while nobody reads the socket yet: they wait in its buffer
            before = time.time()
            out.sendto(b"\x80" * 40, ("127.0.0.1", port))
            sent.append((before, time.time()))
            time.sleep(0.05)
        time.sleep(0.2)
        reading = time.time()
        listener.start()
        deadline = time.monotonic() + 2
        while len(got) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    listener.stop()
    assert len(got) == 3
    # at its arrival: not before the send began, and soon after it (loopback delivery may finish in a softirq
    # that a loaded machine runs a little later); long before the late reader got to it
    assert all(b - 0.001 <= at <= a + 0.05 for at, (b, a) in zip(got, sent, strict=True)), (got, sent)
    assert max(got) < reading - 0.1  # stamped on arrival, not when the late reader got to them
