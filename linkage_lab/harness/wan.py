"""A cuttable network between the lab's sites, for fault drills: the controllers' site-to-site HTTP goes through
a network namespace the drill creates, and "cutting the link" drops every packet in that namespace.

    root namespace                          namespace linkage-wan-<pid>
    controller 12345 --> 10.231.0.2:25080 ==veth==> relay listener --(relay)--> 127.0.0.1:25080 controller 110
    controller 110   --> 10.231.0.2:15080 ==veth==> relay listener --(relay)--> 127.0.0.1:15080 controller 12345

The relay process creates its listening sockets inside the namespace (setns) and its outgoing connections in
the root namespace, so each request crosses the veth pair. `cut()` inserts a DROP rule in the namespace (a
black hole: connects hang and time out, established connections stall, as with a dead line), `heal()` removes
it. Everything is created with names carrying our pid and removed by `close()`; the relay is stopped by pid.
SIP between the PBXes stays on loopback: the drill cuts the controllers' link (tickets and feedback).
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from linkage_lab.lab.processes import Proc, spawn, stop

CLONE_NEWNET = 0x40000000
ROOT_SIDE, NS_SIDE = "10.231.0.1", "10.231.0.2"


def _ip(*args: str, netns: str | None = None) -> None:
    cmd = ["ip", "netns", "exec", netns, *args] if netns else list(args)
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=10)


def sweep_stale() -> list[str]:
    """Remove the namespaces (and their veth pairs) that a drill killed before its `close()` left behind: a name
    whose pid no longer runs. A left-over pair would hold 10.231.0.1 and fail the next drill's `open()`."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10, check=False)
    swept = []
    for line in listed.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        tag = name.removeprefix("linkage-wan-")
        if tag == name or not tag.isdigit() or Path(f"/proc/{tag}").exists():
            continue
        subprocess.run(["ip", "link", "del", f"lkw{tag}a"], capture_output=True, timeout=10, check=False)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10, check=False)
        swept.append(name)
    return swept


class Wan:
    def __init__(self, ports: list[int], log_dir: Path) -> None:
        self.ports = ports
        self.log_dir = log_dir
        self.tag = str(os.getpid())  # whole, so sweep_stale can tell a live drill from a dead one
        self.netns = f"linkage-wan-{self.tag}"
        self.veth = (f"lkw{self.tag}a", f"lkw{self.tag}b")
        self.relay: Proc | None = None
        self.is_cut = False

    @property
    def host(self) -> str:
        return NS_SIDE

    def open(self) -> Wan:
        a, b = self.veth
        sweep_stale()
        _ip("ip", "netns", "add", self.netns)
        try:
            _ip("ip", "link", "add", a, "type", "veth", "peer", "name", b)
            _ip("ip", "link", "set", b, "netns", self.netns)
            _ip("ip", "addr", "add", f"{ROOT_SIDE}/30", "dev", a)
            _ip("ip", "link", "set", a, "up")
            _ip("ip", "link", "set", "lo", "up", netns=self.netns)
            _ip("ip", "addr", "add", f"{NS_SIDE}/30", "dev", b, netns=self.netns)
            _ip("ip", "link", "set", b, "up", netns=self.netns)
            self.relay = spawn(f"wan-relay-{self.tag}", [
                sys.executable, "-m", "linkage_lab.harness.wan", self.netns, NS_SIDE, *map(str, self.ports)],
                self.log_dir / "wan-relay.log")
            self._wait_listening()
        except Exception:
            self.close()
            raise
        return self

    def _wait_listening(self) -> None:
        import time

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((NS_SIDE, self.ports[0]), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the wan relay did not start listening (see wan-relay.log)")

    def cut(self) -> None:
        _ip("iptables", "-w", "-I", "INPUT", "-j", "DROP", netns=self.netns)
        _ip("iptables", "-w", "-I", "OUTPUT", "-j", "DROP", netns=self.netns)
        self.is_cut = True

    def heal(self) -> None:
        if self.is_cut:
            _ip("iptables", "-w", "-D", "INPUT", "-j", "DROP", netns=self.netns)
            _ip("iptables", "-w", "-D", "OUTPUT", "-j", "DROP", netns=self.netns)
            self.is_cut = False

    def close(self) -> None:
        if self.relay is not None:
            stop(self.relay)
            self.relay = None
        subprocess.run(["ip", "link", "del", self.veth[0]], capture_output=True, timeout=10, check=False)
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True, timeout=10, check=False)

    def __enter__(self) -> Wan:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---- the relay process -------------------------------------------------------------------------------
def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns failed")


def _listeners(netns: str, host: str, ports: list[int]) -> list[socket.socket]:
    root = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        _setns(target)
        socks = []
        for port in ports:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(128)
            sock.setblocking(False)
            socks.append(sock)
        return socks
    finally:
        _setns(root)  # outgoing connections are made in the root namespace
        os.close(root)
        os.close(target)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def _relay(socks: list[socket.socket]) -> None:
    async def handle(port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    def handler(port: int) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        return lambda reader, writer: handle(port, reader, writer)

    servers = [await asyncio.start_server(handler(sock.getsockname()[1]), sock=sock) for sock in socks]
    await asyncio.gather(*(s.serve_forever() for s in servers))


def main(argv: list[str]) -> int:
    netns, host, *ports = argv
    asyncio.run(_relay(_listeners(netns, host, [int(p) for p in ports])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
