"""The real lab (two Asterisk 22 PBXes, two Redis, two controllers) for the whole lab test session.

The lab is brought up once and taken down at the end unless it was already running; after `down`, no
process of the lab is left and none of its ports is listening.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from linkage_lab.harness.drain import IN_FLIGHT
from linkage_lab.lab.lab import SITES, Lab


def lab_ports() -> list[int]:
    ports = []
    for s in SITES:
        ports += [s.base + 38, s.base + 573, s.base + 80, s.base + 379]  # the TCP listeners
    return ports


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    lab = Lab()
    was_up = lab.is_up()
    lab.up(log=lambda m: None)
    yield lab
    if not was_up:
        lab.down(quiet=True)
        left = [p for p in lab_ports() if listening(p)]
        assert not left, f"lab down left listeners on {left}"
    else:  # left up: the next command's SIPp may take any account's address at once (harness/drain.py)
        IN_FLIGHT.wait_all()


@pytest.fixture(scope="session")
def desc(lab: Lab) -> dict[str, Any]:
    return lab.describe()
