"""AMI reconnect: one backoff loop (ours, not panoramisk's fixed timers) from reconnect_min to reconnect_max,
through refused connects and lost connections alike, starting over after a login. A scripted AMI server on
loopback stands in for Asterisk: it only needs to greet and accept the login."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from structlog.testing import capture_logs
from throwaway import free_port

from telephony.ami.session import AmiSession, reconnect_delay
from telephony.calls.registry import CallRegistry
from telephony.config import AmiConfig


def ami(port: int, lo: float = 0.5, hi: float = 30.0) -> AmiConfig:
    return AmiConfig("127.0.0.1", port, "linkage", "secret123", reconnect_min=lo, reconnect_max=hi)


def test_delays_grow_from_min_and_cap_at_max() -> None:
    config = ami(1)
    top = [reconnect_delay(n, config, rand=lambda: 1.0) for n in range(1, 12)]
    low = [reconnect_delay(n, config, rand=lambda: 0.0) for n in range(1, 12)]
    assert top[:7] == [0.5, 1, 2, 4, 8, 16, 30] and set(top[6:]) == {30}
    assert low[0] == 0.5 and low[1:4] == [0.5, 1, 2] and low[-1] == 15  # the jitter is never below min
    assert all(0.5 <= d <= 30 for d in top + low)


async def wait_for(predicate: Any, timeout: float = 5) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
    assert predicate()


async def test_refused_connects_go_through_one_backoff_loop() -> None:
    session = AmiSession(ami(free_port(), 0.02, 0.1), CallRegistry())  # nothing listens there
    with capture_logs() as logs:
        await session.start()
        await asyncio.sleep(0.8)
        session.close()
        await asyncio.sleep(0.2)
    failed = [e for e in logs if e["event"] == "ami.connect_failed"]
    scheduled = [e for e in logs if e["event"] == "ami.reconnect_scheduled"]
    assert len(failed) >= 4 and len(scheduled) == len(failed)  # one retry per failure: a single loop
    assert [e["attempt"] for e in scheduled] == list(range(1, len(scheduled) + 1))
    assert all(0.02 <= e["delay"] <= 0.1 for e in scheduled) and scheduled[-1]["delay"] > scheduled[0]["delay"]
    assert session.retry is None


class FakeAsterisk:
    """Greets, accepts any login, and can drop every connection."""

    def __init__(self) -> None:
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []
        self.logins = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", self.port)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        writer.write(b"Asterisk Call Manager/9.0.0\r\n")
        try:
            while True:
                action = (await reader.readuntil(b"\r\n\r\n")).decode()
                action_id = re.search(r"ActionID: (\S+)", action)
                if "Action: Login" in action and action_id:
                    self.logins += 1
                    writer.write(f"Response: Success\r\nActionID: {action_id.group(1)}\r\n"
                                 f"Message: Authentication accepted\r\n\r\n".encode())
        except (asyncio.IncompleteReadError, ConnectionError):
            pass

    def drop(self) -> None:
        for w in self.writers:
            w.close()
        self.writers.clear()

    async def stop(self) -> None:
        self.drop()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def test_a_lost_connection_reconnects_and_a_login_resets_the_backoff() -> None:
    asterisk = FakeAsterisk()
    session = AmiSession(ami(asterisk.port, 0.05, 0.2), CallRegistry())
    with capture_logs() as logs:
        await session.start()  # Asterisk is down: refused, backing off
        await wait_for(lambda: session.attempt >= 3)
        await asterisk.start()
        await wait_for(session.logged_in.is_set)
        assert session.attempt == 0 and asterisk.logins == 1
        asterisk.drop()
        await wait_for(lambda: not session.logged_in.is_set())
        await wait_for(session.logged_in.is_set)
        assert asterisk.logins == 2
        session.close()
        await asterisk.stop()
    events = [e["event"] for e in logs]
    after_drop = [e for e in logs[events.index("ami.disconnected"):] if e["event"] == "ami.reconnect_scheduled"]
    assert [(e["attempt"], e["delay"]) for e in after_drop] == [(1, 0.05)]  # one loop, started over from min
