"""A Redis server a test may stop and start again (same port, same append-only file), and free loopback ports
above the range the lab's sites use (15000-35999) and outside every block the lab, its harness and the image
tests bind (the kernel's reserved ports, which they reserve, and those blocks by name): scripts/test.sh runs the
unit tests beside the image tests, so a unit test must never take a port they are about to bind."""

from __future__ import annotations

import random
import socket
import subprocess
import time
from pathlib import Path

BLOCKS = ((42000, 42999), (45000, 45999), (46000, 47999), (55000, 55999))  # harness, images 12345, drills, images 110


def _reserved() -> list[tuple[int, int]]:
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_reserved_ports").read_text().strip()
    except OSError:
        return []
    spans = []
    for item in filter(None, text.split(",")):
        lo, _, hi = item.partition("-")
        spans.append((int(lo), int(hi or lo)))
    return spans


def free_port() -> int:
    taken = [*BLOCKS, *_reserved()]
    for _ in range(200):
        port = random.randint(40000, 60999)
        if any(lo <= port <= hi for lo, hi in taken):
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port in 40000-60999")


class ThrowawayRedis:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
             "--appendfsync", "always", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("the throwaway redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()  # this process only, by its own handle
            self.proc.wait(timeout=5)
            self.proc = None
