"""FlowcraftClient: start, wait for, inspect, cancel and reconcile distributed runs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

from arq.connections import ArqRedis
from redis.asyncio import ConnectionPool

from flowcraft.blueprint import WorkflowBlueprint
from flowcraft.builder import Flow
from flowcraft.distributed.adapter import DEFAULT_STREAM_EVENTS, Flows
from flowcraft.errors import RunNotFoundError
from flowcraft.events import Event
from flowcraft.result import WorkflowResult
from flowcraft_arq.adapter import (
    RETRY_ON,
    ArqControl,
    connection_retry,
    deserialize,
    serialize,
)
from flowcraft_arq.announcements import Announcements
from flowcraft_arq.keys import DEFAULT_PREFIX, channel_pattern, check_prefix, queue_of
from flowcraft_arq.steady import steady

WAIT_RECHECK_S = 5.0
"""How long `wait` trusts the announcements alone before re-reading the result."""

log = logging.getLogger("flowcraft.arq.client")

_TERMINAL = frozenset({"completed", "failed", "cancelled"})


class FlowcraftClient:
    """The caller's side of distributed runs.

    `redis` is an `arq.connections.ArqRedis` (or a plain `redis.asyncio.Redis` connection pool
    is wrapped into one). `flows` are flows this client may start; they must be the same (same
    ids, versions and `uses` keys) as the workers'. Without them the client starts, resumes and
    reconciles the flows the workers published by name: it never needs node code.
    """

    def __init__(self, redis: Any, *, flows: Flows = (), queue_name: str | None = None,
                 prefix: str = DEFAULT_PREFIX, result_ttl: float = 86_400.0,
                 registry: Mapping[str, Any] | None = None, event_bus: Any = None,
                 stream_events: Iterable[str] = DEFAULT_STREAM_EVENTS,
                 middleware: Sequence[Any] = ()) -> None:
        queue_name = queue_of(check_prefix(prefix), queue_name)
        if not isinstance(redis, ArqRedis):
            redis = ArqRedis(redis.connection_pool, job_serializer=serialize,
                             job_deserializer=deserialize, default_queue_name=queue_name)
        self.redis: ArqRedis = redis
        self._owns_redis = False
        self.queue_name = queue_name
        self.prefix = prefix
        self.adapter = ArqControl(redis, flows, queue_name=queue_name, prefix=prefix,
                                  result_ttl=result_ttl, registry=registry,
                                  event_bus=event_bus, stream_events=stream_events,
                                  middleware=middleware)
        self.store = self.adapter.redis_store
        self._announcements = Announcements(redis, channel_pattern(prefix))

    @classmethod
    def from_url(cls, url: str, *, flows: Flows = (), queue_name: str | None = None,
                 prefix: str = DEFAULT_PREFIX, **kwargs: Any) -> FlowcraftClient:
        """A client with its own connection pool (closed by `close()`), whose connections
        retry with backoff for about 30 s when Redis is unreachable."""
        pool = ConnectionPool.from_url(url, retry=connection_retry(), retry_on_error=RETRY_ON)
        redis = steady(ArqRedis(pool, job_serializer=serialize, job_deserializer=deserialize,
                                default_queue_name=queue_of(prefix, queue_name)))
        client = cls(redis, flows=flows, queue_name=queue_name, prefix=prefix, **kwargs)
        client._owns_redis = True
        return client

    async def __aenter__(self) -> FlowcraftClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        await self._announcements.close()
        if self._owns_redis:
            await self.redis.aclose()
            self._owns_redis = False

    # -- runs -------------------------------------------------------------------------------

    def register(self, flow: Flow | WorkflowBlueprint) -> None:
        self.adapter.register(flow)

    async def start(self, flow: str | Flow | WorkflowBlueprint,
                    context: Mapping[str, Any] | None = None, run_id: str | None = None, *,
                    version: str | None = None) -> str:
        """Start a run (idempotent on `run_id`); returns once its start jobs are queued.

        A flow named by id that this client was not given is one the workers serve (at
        `version`, or the one most recently published); BlueprintError names what is served
        when no worker serves it."""
        return await self.adapter.start_run(flow, context, run_id, version=version)

    async def status(self, run_id: str) -> str:
        """"running" | "awaiting" | "completed" | "failed" | "cancelled"."""
        status = await self.store.status(run_id)
        if status is None:
            raise RunNotFoundError(f"no run {run_id!r} (never started, or expired)")
        return status

    async def result(self, run_id: str) -> WorkflowResult | None:
        """The stored result of a terminal or awaiting run, else None."""
        return await self.store.result(run_id)

    async def wait(self, run_id: str, timeout: float | None = 30.0) -> WorkflowResult:
        """The result once the run is terminal or awaiting; TimeoutError after `timeout`.

        Listens to the runs' announcements first, then reads the result, so a result
        announced in between is never missed. While waiting it re-reads the result and status
        only every `WAIT_RECHECK_S` seconds without an announcement: that catches one made
        while the subscription was reconnecting, and a run whose keys vanished
        (RunNotFoundError), without polling.
        """
        channel = self.store.keys(run_id).channel
        async with asyncio.timeout(timeout):
            await self._announcements.listen()
            while True:
                announced = self._announcements.expect(channel)
                try:
                    status, result = await self.store.outcome(run_id)
                    if result is not None:
                        return result
                    if status is None:
                        raise RunNotFoundError(f"no run {run_id!r} (never started, or expired)")
                    try:
                        message = await asyncio.wait_for(announced, WAIT_RECHECK_S)
                    except TimeoutError:
                        continue
                    result = await self.store.announced(run_id, message)
                    if result is not None:
                        return result
                finally:
                    self._announcements.forget(channel, announced)

    async def resume(self, run_id: str, node_id: str | None = None, output: Any = None,
                     action: str | None = None) -> None:
        """Complete the awaiting node `node_id` (may be None when exactly one awaits) with
        `output`, routing on `action`; its branch continues on the workers. Raises
        ResumeError when the node is not awaiting."""
        await self.adapter.resume(run_id, node_id, output, action)

    async def cancel(self, run_id: str) -> bool:
        """Cancel a running or awaiting run; False if it already ended."""
        return await self.adapter.cancel(run_id)

    async def reconcile(self, stalled_after: float = 60.0) -> dict[str, int]:
        """Re-drive runs without progress for `stalled_after` s: re-queue undelivered jobs and
        re-fire (new epoch) instances whose job was lost; never re-runs a finished node.
        Returns counts: scanned, stalled, reconciled, failed."""
        return await self.adapter.reconcile(stalled_after)

    async def events(self, run_id: str, *, block_ms: int = 1000) -> AsyncIterator[Event]:
        """The run's recorded events, from the start, live; ends when the run is terminal."""
        keys = self.store.keys(run_id)
        last = b"0-0"
        while True:
            entries = await self.redis.xread({keys.events: last}, count=500, block=block_ms)
            finished = False
            for _stream, items in entries or ():
                for entry_id, fields in items:
                    last = entry_id
                    for event in await self.store.decode_entry(run_id, fields):
                        yield event
                        if event.type == "workflow:finish":
                            finished = True
            if finished:
                return
            if not entries:
                status = await self.store.status(run_id)
                if status is None:
                    return
                if status in _TERMINAL and await self.store.result(run_id) is not None:
                    more = await self.redis.xread({keys.events: last}, count=1)
                    if not more:
                        return


__all__ = ["FlowcraftClient"]
