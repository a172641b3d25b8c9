"""A clean database of the session's real Redis for a test module: the module says which with REDIS_DB."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis


@pytest.fixture
async def redis(redis_url: str, request: pytest.FixtureRequest) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url.rsplit("/", 1)[0] + f"/{request.module.REDIS_DB}")
    await client.flushdb()
    yield client
    await client.aclose()
