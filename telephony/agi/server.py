"""A small asyncio FastAGI server.

panoramisk's fast_agi reads request headers with no timeout and spins forever on a closed socket, so the
controller runs this one: bounded header size, a timeout on every read, routes by script name, and values
written back to the dialplan checked against a strict pattern (no quotes, no newlines, no `${`).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import structlog
from panoramisk.utils import parse_agi_result
from prometheus_client import CollectorRegistry

from telephony.agi.metrics import AgiMetrics

log = structlog.get_logger("agi")

MAX_HEADER_BYTES = 8192
HEADER_TIMEOUT = 2.0
COMMAND_TIMEOUT = 5.0
SAFE_VALUE = re.compile(r"^[A-Za-z0-9*#+/@._:-]{0,256}$")
SAFE_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")


class AgiError(Exception):
    pass


class AgiRequest:
    def __init__(self, headers: dict[str, str], reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.headers = headers
        self.reader = reader
        self.writer = writer
        self.script = urlsplit(headers.get("agi_request", "")).path.lstrip("/") or headers.get(
            "agi_network_script", "")
        self.args = [headers[f"agi_arg_{i}"] for i in range(1, 20) if f"agi_arg_{i}" in headers]

    @property
    def uniqueid(self) -> str:
        return self.headers.get("agi_uniqueid", "")

    @property
    def channel(self) -> str:
        return self.headers.get("agi_channel", "")

    def arg(self, index: int) -> str:
        return self.args[index] if index < len(self.args) else ""

    async def command(self, line: str) -> dict[str, object]:
        self.writer.write(line.encode() + b"\n")
        await self.writer.drain()
        while True:
            async with asyncio.timeout(COMMAND_TIMEOUT):
                raw = await self.reader.readline()
            if not raw:
                raise AgiError("channel went away")
            result: dict[str, object] = parse_agi_result(raw.decode(errors="replace").rstrip("\n"))
            if result.get("error") == "AGIResultHangup":
                raise AgiError("channel hung up")
            if result.get("status_code") != 100:
                return result

    async def set_variable(self, name: str, value: str) -> None:
        if not SAFE_NAME.match(name) or not SAFE_VALUE.match(value):
            raise AgiError(f"refusing unsafe dialplan variable {name!r}")
        await self.command(f'SET VARIABLE {name} "{value}"')

    async def get_variable(self, expression: str) -> str:
        result = await self.command(f"GET FULL VARIABLE {expression}")
        code_value = result.get("result")
        if not isinstance(code_value, tuple) or len(code_value) != 2:
            return ""
        return str(code_value[1]) if code_value[0] == "1" else ""


Handler = Callable[[AgiRequest], Awaitable[None]]


class FastAgiServer:
    def __init__(self, host: str, port: int, metrics: AgiMetrics | None = None) -> None:
        self.host = host
        self.port = port
        self.metrics = metrics or AgiMetrics(CollectorRegistry())
        self.routes: dict[str, Handler] = {}
        self.server: asyncio.Server | None = None

    def route(self, name: str, handler: Handler) -> None:
        self.routes[name] = handler

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, self.host, self.port, reuse_address=True,
                                                 limit=MAX_HEADER_BYTES)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _read_headers(self, reader: asyncio.StreamReader) -> dict[str, str]:
        """The whole header block (up to the blank line) must arrive within HEADER_TIMEOUT, not each line, and
        fit in MAX_HEADER_BYTES. One read for the block: this is on the key-press-to-ring path."""
        try:
            async with asyncio.timeout(HEADER_TIMEOUT):
                block = await reader.readuntil(b"\n\n")
        except asyncio.IncompleteReadError as exc:
            raise AgiError("connection closed in headers") from exc
        except asyncio.LimitOverrunError as exc:
            raise AgiError("request headers too large") from exc
        if len(block) > MAX_HEADER_BYTES:
            raise AgiError("request headers too large")
        headers: dict[str, str] = {}
        for line in block.decode(errors="replace").split("\n"):
            key, sep, value = line.rstrip("\r").partition(": ")
            if sep and key.startswith("agi_"):
                headers[key] = value
        return headers

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        structlog.contextvars.clear_contextvars()
        accepted = time.monotonic()
        try:
            headers = await self._read_headers(reader)
            request = AgiRequest(headers, reader, writer)
            structlog.contextvars.bind_contextvars(uniqueid=request.uniqueid, agi=request.script)
            handler = self.routes.get(request.script)
            self.metrics.requests.labels(script=request.script if handler else "unknown").inc()
            if handler is None:
                log.warning("agi.unknown_route")
                return
            try:
                await handler(request)
            finally:  # a failed handling is timed too: the dialplan waited for it all the same
                self.metrics.handling.labels(script=request.script).observe(time.monotonic() - accepted)
        except (AgiError, TimeoutError, ConnectionError, ValueError) as exc:  # ValueError: line over the limit
            log.warning("agi.failed", error=str(exc))
        except Exception:
            log.exception("agi.crashed")
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except ConnectionError:
                pass
