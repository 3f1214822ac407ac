"""Fixtures shared by the distributed tests (the redis-server, workers and clients come from
the `flowcraft_arq.testing` plugin)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    """A connection to the tests' own redis-server."""
    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()
