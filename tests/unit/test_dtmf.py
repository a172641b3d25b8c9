"""The RFC 4733 pcap played by SIPp: parsed back byte by byte."""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass
from pathlib import Path

import pytest

from linkage_lab.harness.dtmf import PAYLOAD_TYPE, write_pcap


@dataclass
class Packet:
    ms: int
    marker: bool
    payload_type: int
    seq: int
    ts: int
    ssrc: int
    event: int
    end: bool
    duration: int


Pcap = tuple[tuple[int, ...], list[Packet]]


def ones_complement_ok(header: bytes) -> bool:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total >> 16) + (total & 0xFFFF)
    return total == 0xFFFF


def read_pcap(path: Path) -> Pcap:
    data = path.read_bytes()
    header = struct.unpack("<IHHiIII", data[:24])
    packets = []
    offset = 24
    while offset < len(data):
        sec, usec, incl, orig = struct.unpack("<IIII", data[offset:offset + 16])
        frame = data[offset + 16:offset + 16 + incl]
        assert incl == orig == len(frame)
        assert frame[12:14] == b"\x08\x00"  # IPv4 ethertype
        ip = frame[14:34]
        assert ip[0] == 0x45 and ip[9] == 17  # IPv4, no options, UDP
        assert struct.unpack("!H", ip[2:4])[0] == len(frame) - 14
        assert ones_complement_ok(ip)
        udp = frame[34:42]
        assert struct.unpack("!H", udp[4:6])[0] == len(frame) - 34
        rtp = frame[42:]
        b0, b1, seq, ts, ssrc = struct.unpack("!BBHII", rtp[:12])
        assert b0 == 0x80  # RTP version 2, no padding, no extension, no CSRC
        event, flags, duration = struct.unpack("!BBH", rtp[12:16])
        packets.append(Packet(sec * 1000 + usec // 1000, bool(b1 & 0x80), b1 & 0x7F, seq, ts, ssrc, event,
                              bool(flags & 0x80), duration))
        offset += 16 + incl
    return header, packets


def by_digit(packets: list[Packet]) -> list[list[Packet]]:
    groups: list[list[Packet]] = []
    for p in packets:
        if not groups or (groups[-1][-1].end and not p.end):
            groups.append([])
        groups[-1].append(p)
    return groups


@pytest.fixture
def star8(tmp_path: Path) -> Pcap:
    path = write_pcap("*8", tmp_path / "sub" / "keys.pcap")
    assert path.exists()
    return read_pcap(path)


def test_global_header(star8: Pcap) -> None:
    (magic, major, minor, _zone, _sigfigs, snaplen, linktype), _ = star8
    assert magic == 0xA1B2C3D4
    assert (major, minor) == (2, 4)
    assert snaplen == 65535
    assert linktype == 1  # Ethernet


def test_rtp_payload_type_and_events(star8: Pcap) -> None:
    _, packets = star8
    assert {p.payload_type for p in packets} == {PAYLOAD_TYPE} == {101}
    assert len({p.ssrc for p in packets}) == 1
    digits = by_digit(packets)
    assert [{p.event for p in d} for d in digits] == [{10}, {8}]  # '*' is event 10


def test_sequence_numbers_strictly_increase_across_digits(star8: Pcap) -> None:
    _, packets = star8
    seqs = [p.seq for p in packets]
    assert all(b == a + 1 for a, b in itertools.pairwise(seqs))
    times = [p.ms for p in packets]
    assert times == sorted(times)


def test_one_timestamp_per_digit(star8: Pcap) -> None:
    _, packets = star8
    stamps = [{p.ts for p in digit} for digit in by_digit(packets)]
    assert all(len(s) == 1 for s in stamps)
    assert stamps[0] != stamps[1]
    assert min(stamps[1]) > min(stamps[0])


def test_marker_only_on_first_packet_of_each_digit(star8: Pcap) -> None:
    _, packets = star8
    for digit in by_digit(packets):
        assert [p.marker for p in digit] == [True] + [False] * (len(digit) - 1)


def test_end_bit_on_the_last_three_packets_of_each_digit(star8: Pcap) -> None:
    _, packets = star8
    digits = by_digit(packets)
    assert len(digits) == 2
    for digit in digits:
        assert len(digit) == 8  # 100 ms of tone in 20 ms packets, then three end packets
        assert [p.end for p in digit] == [False] * 5 + [True] * 3
        durations = [p.duration for p in digit]
        assert durations[:5] == [160, 320, 480, 640, 800]
        assert durations[5:] == [800] * 3


@pytest.mark.parametrize("digits", ["*x", "", "8 ", "E", "*8\n"])
def test_invalid_digits_raise(tmp_path: Path, digits: str) -> None:
    target = tmp_path / "keys.pcap"
    with pytest.raises(ValueError, match="DTMF"):
        write_pcap(digits, target)
    assert not target.exists()


def test_lower_case_letters_are_accepted(tmp_path: Path) -> None:
    _, packets = read_pcap(write_pcap("a#", tmp_path / "k.pcap"))
    assert [d[0].event for d in by_digit(packets)] == [12, 11]
