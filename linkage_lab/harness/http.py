"""The harness's HTTP client for the controllers' API: one aiohttp session per scenario run, so nothing blocks
the event loop that also reads AMI and waits for SIPp. Every failure, from a refused connection to an error
status or a body that is not JSON, is an `OSError` or a `ValueError`, which is what the callers handle."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

TIMEOUT = aiohttp.ClientTimeout(total=3)


class SiteHttp:
    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def call(self, url: str, token: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
        """The status and the JSON body (`{}` for an error status without one)."""
        try:
            async with self.session.request(method, url, json=body, timeout=TIMEOUT,
                                            headers={"Authorization": f"Bearer {token}"}) as resp:
                data = await resp.read()
                if resp.status >= 400:
                    try:
                        return resp.status, json.loads(data or b"{}")
                    except ValueError:
                        return resp.status, {}
                return resp.status, json.loads(data)
        except aiohttp.ClientError as exc:
            raise OSError(f"{method} {url}: {exc.__class__.__name__} {exc}") from exc

    async def get(self, url: str, token: str, method: str = "GET", body: Any = None) -> Any:
        """The JSON body of a successful answer; an error status raises `OSError`."""
        status, data = await self.call(url, token, method, body)
        if status >= 400:
            raise OSError(f"{method} {url}: HTTP {status}")
        return data
