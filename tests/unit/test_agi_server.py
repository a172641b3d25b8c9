"""The FastAGI server, driven over loopback by a client that speaks as Asterisk does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from structlog.testing import capture_logs

from telephony.agi import server as agi
from telephony.agi.server import AgiError, AgiRequest, FastAgiServer

UNIQUEID = "1767268800.42"


class Recorder:
    def __init__(self) -> None:
        self.requests: list[AgiRequest] = []
        self.errors: list[str] = []
        self.results: list[object] = []
        self.done = asyncio.Event()


@pytest.fixture
async def server() -> AsyncIterator[FastAgiServer]:
    srv = FastAgiServer("127.0.0.1", 0)
    await srv.start()
    assert srv.server is not None
    srv.port = srv.server.sockets[0].getsockname()[1]
    yield srv
    await srv.stop()


def headers(port: int, script: str, *args: str) -> bytes:
    lines = [f"agi_request: agi://127.0.0.1:{port}/{script}", "agi_channel: PJSIP/agent1001-00000001",
             "agi_language: en", f"agi_uniqueid: {UNIQUEID}", "agi_callerid: 13912345678"]
    lines += [f"agi_arg_{i}: {a}" for i, a in enumerate(args, start=1)]
    return ("\n".join(lines) + "\n\n").encode()


async def connect(srv: FastAgiServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", srv.port)


async def read_until_closed(reader: asyncio.StreamReader, timeout: float = 2.0) -> bytes:
    """Everything the server sends until it closes the connection (EOF or reset)."""
    data = b""
    try:
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(4096):
                data += chunk
    except ConnectionResetError:
        pass
    return data


async def test_route_sets_a_variable(server: FastAgiServer) -> None:
    rec = Recorder()

    async def onekey(request: AgiRequest) -> None:
        rec.requests.append(request)
        await request.set_variable("LINKAGE_XFER", "110*37080020260101120000123456")
        rec.done.set()

    server.route("onekey", onekey)
    reader, writer = await connect(server)
    writer.write(headers(server.port, "onekey", "1767268800.41", "second arg"))
    await writer.drain()
    line = await asyncio.wait_for(reader.readline(), 2)
    assert line == b'SET VARIABLE LINKAGE_XFER "110*37080020260101120000123456"\n'
    writer.write(b"200 result=1\n")
    await writer.drain()
    await asyncio.wait_for(rec.done.wait(), 2)
    assert await read_until_closed(reader) == b""  # the handler returned: the server hangs up, nothing more
    writer.close()

    [request] = rec.requests
    assert request.script == "onekey"
    assert request.args == ["1767268800.41", "second arg"]
    assert request.arg(0) == "1767268800.41" and request.arg(5) == ""
    assert request.uniqueid == UNIQUEID
    assert request.channel == "PJSIP/agent1001-00000001"
    assert request.headers["agi_callerid"] == "13912345678"


async def test_get_variable_skips_100_trying(server: FastAgiServer) -> None:
    rec = Recorder()

    async def route_in(request: AgiRequest) -> None:
        rec.results.append(await request.get_variable("${PJSIP_HEADER(read,X-Linkage-Id)}"))
        rec.results.append(await request.get_variable("${UNSET}"))
        rec.done.set()

    server.route("route_in", route_in)
    reader, writer = await connect(server)
    writer.write(headers(server.port, "route_in"))
    line = await asyncio.wait_for(reader.readline(), 2)
    assert line == b"GET FULL VARIABLE ${PJSIP_HEADER(read,X-Linkage-Id)}\n"
    writer.write(b"100 result=0 Trying...\n200 result=1 (37080020260101120000123456)\n")
    assert await asyncio.wait_for(reader.readline(), 2) == b"GET FULL VARIABLE ${UNSET}\n"
    writer.write(b"200 result=0\n")
    await asyncio.wait_for(rec.done.wait(), 2)
    writer.close()
    assert rec.results == ["37080020260101120000123456", ""]


async def test_hangup_during_a_command_ends_the_handler(server: FastAgiServer) -> None:
    rec = Recorder()

    async def onekey(request: AgiRequest) -> None:
        try:
            await request.set_variable("LINKAGE_XFER", "110*1")
        except AgiError as exc:
            rec.errors.append(str(exc))
        rec.done.set()

    server.route("onekey", onekey)
    reader, writer = await connect(server)
    writer.write(headers(server.port, "onekey"))
    await asyncio.wait_for(reader.readline(), 2)
    writer.write(b"HANGUP\n")
    await asyncio.wait_for(rec.done.wait(), 2)
    writer.close()
    assert rec.errors == ["channel hung up"]


async def test_unknown_route_closes_without_commands(server: FastAgiServer) -> None:
    called: list[str] = []

    async def onekey(request: AgiRequest) -> None:
        called.append(request.script)

    server.route("onekey", onekey)
    reader, writer = await connect(server)
    writer.write(headers(server.port, "onekey_typo", "x"))
    await writer.drain()
    assert await read_until_closed(reader) == b""
    writer.close()
    assert called == []


async def test_headers_larger_than_8_kib_are_refused(server: FastAgiServer) -> None:
    called: list[str] = []

    async def onekey(request: AgiRequest) -> None:
        called.append(request.script)

    server.route("onekey", onekey)
    reader, writer = await connect(server)
    big = b"".join(f"agi_padding_{i}: {'x' * 100}\n".encode() for i in range(80))
    assert 8192 < len(big) < 65536
    writer.write(f"agi_request: agi://127.0.0.1:{server.port}/onekey\n".encode() + big + b"\n")
    try:
        await writer.drain()
    except ConnectionResetError:
        pass
    assert await read_until_closed(reader) == b""
    writer.close()
    assert called == []


async def test_headers_just_under_the_limit_are_accepted(server: FastAgiServer) -> None:
    rec = Recorder()

    async def onekey(request: AgiRequest) -> None:
        rec.requests.append(request)
        rec.done.set()

    server.route("onekey", onekey)
    _, writer = await connect(server)
    head = headers(server.port, "onekey", "a")
    pad = b"agi_padding: " + b"x" * (8192 - len(head) - len(b"agi_padding: \n")) + b"\n"
    assert len(head) + len(pad) == 8192
    writer.write(pad + head)
    await asyncio.wait_for(rec.done.wait(), 2)
    writer.close()
    assert rec.requests[0].args == ["a"]


@pytest.mark.parametrize("name, value", [
    ("LINKAGE_XFER", 'x" ; Hangup() ; "'), ("LINKAGE_XFER", "110\nHANGUP"), ("LINKAGE_XFER", "${SHELL(id)}"),
    ("LINKAGE_XFER", "a b"), ("LINKAGE_XFER", "x" * 257), ("linkage_xfer", "110"), ("LINKAGE XFER", "110"),
    ("", "110"),
])
async def test_set_variable_refuses_unsafe_values(server: FastAgiServer, name: str, value: str) -> None:
    rec = Recorder()

    async def onekey(request: AgiRequest) -> None:
        try:
            await request.set_variable(name, value)
        except AgiError as exc:
            rec.errors.append(str(exc))
        rec.done.set()

    server.route("onekey", onekey)
    reader, writer = await connect(server)
    writer.write(headers(server.port, "onekey"))
    await writer.drain()
    assert await read_until_closed(reader) == b""  # not one byte written to Asterisk
    writer.close()
    assert rec.done.is_set()
    assert len(rec.errors) == 1 and "unsafe" in rec.errors[0]


async def test_incomplete_headers_are_dropped_after_the_timeout(server: FastAgiServer,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agi, "HEADER_TIMEOUT", 0.2)
    called: list[str] = []

    async def onekey(request: AgiRequest) -> None:
        called.append(request.script)

    server.route("onekey", onekey)
    reader, writer = await connect(server)
    begin = time.monotonic()
    writer.write(f"agi_request: agi://127.0.0.1:{server.port}/onekey\nagi_uniqueid: 1".encode())
    await writer.drain()
    assert await read_until_closed(reader, timeout=2) == b""
    elapsed = time.monotonic() - begin
    writer.close()
    assert 0.15 <= elapsed < 1.0
    assert called == []


async def test_server_keeps_serving_after_a_bad_client(server: FastAgiServer) -> None:
    rec = Recorder()

    async def onekey(request: AgiRequest) -> None:
        rec.requests.append(request)
        rec.done.set()

    server.route("onekey", onekey)
    _, bad = await connect(server)
    bad.write(b"\xff\xfe garbage\n")
    bad.close()
    _, writer = await connect(server)
    writer.write(headers(server.port, "onekey"))
    await asyncio.wait_for(rec.done.wait(), 2)
    writer.close()
    assert rec.requests[0].uniqueid == UNIQUEID


async def test_trickled_headers_are_dropped_after_the_timeout(server: FastAgiServer,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agi, "HEADER_TIMEOUT", 0.2)
    server.route("onekey", lambda request: asyncio.sleep(0))
    reader, writer = await connect(server)
    begin = time.monotonic()
    closed_at = None
    for i in range(10):  # one line every 0.1 s for 1 s, never the blank line
        try:
            writer.write(f"agi_x_{i}: y\n".encode())
            await writer.drain()
        except ConnectionResetError:
            pass
        await asyncio.sleep(0.1)
        if reader.at_eof() or (await _peek_closed(reader)):
            closed_at = time.monotonic() - begin
            break
    writer.close()
    assert closed_at is not None and closed_at < 0.6


async def _peek_closed(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(1), 0.01) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


async def test_a_single_line_over_the_limit_is_refused(server: FastAgiServer) -> None:
    called: list[str] = []

    async def onekey(request: AgiRequest) -> None:
        called.append(request.script)

    server.route("onekey", onekey)
    reader, writer = await connect(server)
    with capture_logs() as logs:
        writer.write(f"agi_request: agi://127.0.0.1:{server.port}/onekey\n".encode()
                     + b"agi_callerid: " + b"1" * 9000 + b"\n\n")
        try:
            await writer.drain()
        except ConnectionResetError:
            pass
        assert await read_until_closed(reader) == b""
        await asyncio.sleep(0.05)
    writer.close()
    assert called == []
    assert [entry["event"] for entry in logs] == ["agi.failed"]  # refused, not a crash
