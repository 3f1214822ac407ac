"""Keep an arq worker alive through a Redis restart (`steady(ctx["redis"])` at start-up).

Retrying connection settings (adapter.retrying) cover plain commands, but two upstream windows
let a dropped connection escape arq's poll loop and end the worker process:

- arq's job start (`Worker.start_jobs`) runs WATCH, EXISTS, ZSCORE, MULTI/EXEC on one pipeline
  and catches WatchError only around EXEC; when the connection drops after WATCH, redis-py
  raises WatchError from EXISTS or ZSCORE instead (the watch is gone with the connection).
- redis-py retries opening a socket, but runs the connection handshake (HELLO, AUTH, SELECT)
  in `ConnectionPool.get_connection`, outside the retry of the command that needed it.

The worker's pool is created by arq from `RedisSettings` (no class can be passed in), so
`steady` upgrades that pool object in `on_startup`, before the poll loop starts: its
pipelines treat a watch lost with its connection like a watched key that changed (reads are
answered on a fresh connection, EXEC raises WatchError, which arq catches: the job stays queued
for the next poll), and its connection pool retries a handshake that was cut.
"""

from __future__ import annotations

from typing import Any

from arq.connections import ArqRedis
from redis.asyncio.client import Pipeline
from redis.asyncio.connection import ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import AuthenticationError, WatchError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


class HandshakeReset(RedisConnectionError):
    """The connection dropped during the handshake: worth another try on a new socket (a
    failure to open the socket is not: connect() has retried that already)."""


HANDSHAKE_RETRY = Retry(ExponentialBackoff(cap=2.0, base=0.05), 8, (HandshakeReset,))


async def handshake(connection: Any) -> None:
    """The connection's own handshake, its connection errors marked as HandshakeReset."""
    try:
        await connection.on_connect()
    except AuthenticationError:
        raise  # a wrong password stays wrong
    except (RedisConnectionError, RedisTimeoutError, OSError) as error:
        raise HandshakeReset(f"connection lost during the handshake: {error}") from error


class SteadyPipeline(Pipeline):
    """A pipeline whose WATCH, when its connection drops before EXEC, fails the transaction
    at EXEC (WatchError, as for a changed key) instead of failing the read in between."""

    watch_lost = False

    def execute_command(self, *args: Any, **options: Any) -> Any:
        if self.watch_lost and not self.explicit_transaction:
            return self.immediate_execute_command(*args, **options)
        return super().execute_command(*args, **options)

    async def immediate_execute_command(self, *args: Any, **options: Any) -> Any:
        pipeline: Any = super()  # redis-py's Pipeline is not annotated
        try:
            return await pipeline.immediate_execute_command(*args, **options)
        except WatchError:
            # redis-py raises WatchError here only for a connection lost while watching (it
            # has already unwatched and released it): answer the read on a new connection
            if self.watch_lost:
                raise
            self.watch_lost = True
        return await pipeline.immediate_execute_command(*args, **options)

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        if self.watch_lost:
            await self.reset()
            raise WatchError("the connection was lost while watching")
        result: list[Any] = await super().execute(raise_on_error)
        return result

    async def reset(self) -> None:
        self.watch_lost = False
        pipeline: Any = super()
        await pipeline.reset()


class SteadyArqRedis(ArqRedis):
    """ArqRedis whose transactions are `SteadyPipeline`s."""

    def pipeline(self, transaction: bool = True,
                 shard_hint: str | None = None) -> SteadyPipeline:
        return SteadyPipeline(self.connection_pool, self.response_callbacks, transaction,
                              shard_hint)


class SteadyPool:
    """Mixed into the pool's own class: `get_connection` tries again when the handshake of
    the connection it opened was cut (`HandshakeReset`)."""

    async def ensure_connection(self, connection: Any) -> None:
        if connection.redis_connect_func is None:
            connection.redis_connect_func = handshake
        parent: Any = super()
        await parent.ensure_connection(connection)

    async def get_connection(self, *args: Any, **options: Any) -> Any:
        parent: Any = super()
        return await HANDSHAKE_RETRY.call_with_retry(
            lambda: parent.get_connection(*args, **options), _ignore)


async def _ignore(error: Exception) -> None:
    """Nothing to clean up: get_connection released the connection it failed to open."""


_pool_classes: dict[type, type] = {}


def steady(redis: ArqRedis) -> ArqRedis:
    """Upgrade `redis` (arq's worker pool) in place; see the module docstring. Returns it."""
    if type(redis) is ArqRedis:
        redis.__class__ = SteadyArqRedis
    pool = redis.connection_pool
    base = type(pool)
    if isinstance(pool, ConnectionPool) and not isinstance(pool, SteadyPool):
        cls = _pool_classes.get(base)
        if cls is None:
            cls = _pool_classes[base] = type(f"Steady{base.__name__}", (SteadyPool, base), {})
        pool.__class__ = cls
    return redis


__all__ = ["HandshakeReset", "SteadyArqRedis", "SteadyPipeline", "SteadyPool", "steady"]
