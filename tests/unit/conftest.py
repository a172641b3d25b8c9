"""A clean database of the session's real Redis for a test module (the module says which with REDIS_DB), and a
throwaway PostgreSQL 15 cluster per module that asks for one, with a fresh database per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
import redis.asyncio as aioredis
from throwaway_pg import ThrowawayPostgres, available


@pytest.fixture
async def redis(redis_url: str, request: pytest.FixtureRequest) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url.rsplit("/", 1)[0] + f"/{request.module.REDIS_DB}")
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture(scope="module")
def postgres() -> Iterator[ThrowawayPostgres]:
    if not available():
        pytest.skip("PostgreSQL 15 (Debian's postgresql) and root are needed")
    cluster = ThrowawayPostgres().init()
    yield cluster
    cluster.remove()
    assert cluster.pid is None


@pytest.fixture
def pg_url(postgres: ThrowawayPostgres) -> Iterator[str]:
    name = f"t{id(object())}"
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield postgres.url.rsplit("/", 1)[0] + f"/{name}"
    if postgres.pid is not None:
        with psycopg.connect(postgres.url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
