"""ArqAdapter and `worker_settings()`: flowcraft node jobs on arq.

One node instance is one arq job, named `flowcraft.node`, with the deterministic id
`"{run}:{node}:{iteration}:{epoch}"`, no kept result (our store is the source of truth) and a
msgspec msgpack payload (never pickle).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from importlib import resources
from typing import Any, cast

import msgspec
from arq.connections import ArqRedis, RedisSettings
from arq.constants import expires_extra_ms as EXPIRES_EXTRA_MS
from arq.constants import job_key_prefix
from arq.jobs import serialize_job
from arq.worker import Function, Retry, func
from redis.asyncio.retry import Retry as RedisRetry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from flowcraft.blueprint import WorkflowBlueprint
from flowcraft.distributed.adapter import (
    DEFAULT_STREAM_EVENTS,
    BaseDistributedAdapter,
    Flows,
    VersionMismatch,
)
from flowcraft.distributed.control import Control
from flowcraft.distributed.protocols import JobPayload, QueuedJob, Refusal
from flowcraft.runtime.routing import ExpressionEvaluator
from flowcraft_arq import catalog, reconciler
from flowcraft_arq.keys import DEFAULT_PREFIX, check_prefix, queue_of
from flowcraft_arq.steady import steady
from flowcraft_arq.store import RedisRunStore, ScriptQueue

log = logging.getLogger("flowcraft.arq")


RETRY_ON: list[type[Exception]] = [RedisConnectionError, RedisTimeoutError, OSError]
"""Errors a connection retries. OSError matters: while redis-server restarts, reconnecting
raises ConnectionRefusedError, which redis-py does not wrap on every path."""


def connection_retry() -> RedisRetry:
    """About 30 s of exponential backoff: long enough to ride out a Redis restart."""
    return RedisRetry(ExponentialBackoff(cap=2.0, base=0.05), 20)


def retrying(settings: RedisSettings) -> RedisSettings:
    """`settings` with retrying connections unless they already configure `retry`: a dropped
    connection or a Redis restart must not kill a worker (arq issues #435, #498)."""
    if settings.retry is not None:
        return settings
    return dataclasses.replace(settings, retry=connection_retry(), retry_on_error=RETRY_ON,
                               retry_on_timeout=True)

NODE_FUNCTION = "flowcraft.node"
DEFAULT_QUEUE = "flowcraft"
ADAPTER_CTX_KEY = "flowcraft_adapter"


def _enc_hook(obj: Any) -> Any:
    """arq may hand us an exception (a failed job's result): store its text, never a pickle."""
    if isinstance(obj, BaseException):
        return f"{type(obj).__name__}: {obj}"
    return repr(obj)


_encoder = msgspec.msgpack.Encoder(enc_hook=_enc_hook)
_decoder = msgspec.msgpack.Decoder()


def serialize(obj: dict[str, Any]) -> bytes:
    """arq `job_serializer`: msgspec msgpack."""
    return _encoder.encode(obj)


_ENVELOPE_TYPES: dict[str, tuple[type, ...]] = {
    "t": (int, type(None)), "et": (int,), "f": (str,), "a": (list, tuple), "k": (dict,),
}


def deserialize(data: bytes) -> dict[str, Any]:
    """arq `job_deserializer`: msgspec msgpack, with arq's envelope fields type-checked.

    arq uses the job try `t` and enqueue time `et` outside its own error handling, so a forged
    queue entry with, say, a string there would kill the worker; raising here makes arq record
    a deserialization failure for that one job instead.
    """
    decoded = _decoder.decode(data)
    if not isinstance(decoded, dict):
        raise ValueError(f"arq envelope must be a map, got {type(decoded).__name__}")
    for field, types in _ENVELOPE_TYPES.items():
        value = decoded.get(field)
        if field in decoded and (isinstance(value, bool) or not isinstance(value, types)):
            raise ValueError(f"arq envelope field {field!r} has type {type(value).__name__}")
    envelope: dict[str, Any] = decoded
    return envelope


class ArqQueue:
    """JobQueue on arq: jobs with the payload's deterministic job id, written as arq's
    `enqueue_job` writes them, but all of one call in one round trip (lua/enqueue.lua)."""

    system = "arq"  # messaging.system of the spans a tracing middleware opens

    def __init__(self, redis: ArqRedis, queue_name: str = DEFAULT_QUEUE) -> None:
        self.redis = redis
        self.queue_name = queue_name
        self._script = redis.register_script(resources.files("flowcraft_arq").joinpath(
            "lua", "enqueue.lua").read_text("utf-8"))

    async def enqueue(self, jobs: Sequence[QueuedJob]) -> None:
        if not jobs:
            return
        now = int(time.time() * 1000)
        args: list[Any] = [job_key_prefix]
        for job in jobs:
            due = max(job.defer_until_ms or now, now)
            envelope = serialize_job(NODE_FUNCTION, (job.payload,), {}, None, now,
                                     serializer=serialize)
            args += [job.payload.job_id, envelope, due, due - now + EXPIRES_EXTRA_MS]
        await self._script(keys=[self.queue_name], args=args)


def on_redis(redis: ArqRedis, queue_name: str | None, prefix: str,
             result_ttl: float) -> tuple[ArqRedis, RedisRunStore, ArqQueue]:
    """The store and queue the control and worker sides share on one connection pool; the
    store's scripts enqueue the jobs they fire in the same queue themselves."""
    queue = ArqQueue(redis, queue_of(prefix, queue_name))
    store = RedisRunStore(redis, prefix=prefix, result_ttl=result_ttl, queue=ScriptQueue(
        queue.queue_name, NODE_FUNCTION, job_key_prefix))
    return redis, store, queue


class ArqControl(Control):
    """The control side on RedisRunStore and ArqQueue: all a client needs. Blueprints it was
    not given come from the ones the workers published (start by name)."""

    def __init__(self, redis: ArqRedis, flows: Flows = (), *,
                 queue_name: str | None = None, prefix: str = DEFAULT_PREFIX,
                 result_ttl: float = 86_400.0, **kwargs: Any) -> None:
        self.redis, self.redis_store, queue = on_redis(redis, queue_name, prefix, result_ttl)
        super().__init__(self.redis_store, queue, flows, **kwargs)

    async def find_blueprint(self, blueprint_id: str,
                             version: str | None) -> WorkflowBlueprint:
        return await catalog.find(self.redis, self.redis_store.prefix, blueprint_id, version)


class ArqAdapter(BaseDistributedAdapter):
    """BaseDistributedAdapter (the worker side, and control) on RedisRunStore and ArqQueue.
    `max_tries` is arq's tries per job (0: unknown)."""

    def __init__(self, redis: ArqRedis, flows: Flows = (), *,
                 queue_name: str | None = None, prefix: str = DEFAULT_PREFIX,
                 result_ttl: float = 86_400.0, max_tries: int = 0, **kwargs: Any) -> None:
        self.redis, self.redis_store, queue = on_redis(redis, queue_name, prefix, result_ttl)
        self.max_tries = max_tries
        super().__init__(self.redis_store, queue, flows, **kwargs)


async def run_node_job(ctx: dict[str, Any], payload: Any) -> None:
    """The arq job function of every node instance."""
    adapter: ArqAdapter = ctx[ADAPTER_CTX_KEY]
    job = msgspec.convert(payload, JobPayload)
    try:
        outcome = await adapter.handle(job, job_try=ctx.get("job_try", 1),
                                       max_tries=adapter.max_tries)
    except VersionMismatch as exc:
        log.warning("%s; retrying in %.1fs", exc, exc.defer_s)
        raise Retry(defer=exc.defer_s) from None
    if outcome == Refusal.UNKNOWN:
        # no run of this app: most likely another app's job on a shared queue (or a run that
        # expired); put it back rather than drop it, until arq's max_tries
        raise Retry(defer=1.0)
    if outcome == "leased":
        # another worker holds a live lease: look again when it would have expired, so a
        # crashed holder's instance is picked up without waiting for the reconciler
        raise Retry(defer=min(adapter.lease_ms / 1000.0, 5.0))


def node_function(job_timeout: float, max_tries: int) -> Function:
    """`run_node_job` registered under its stable name (never `worker_settings.<locals>...`)."""
    return func(cast(Any, run_node_job), name=NODE_FUNCTION, keep_result=0, timeout=job_timeout,
                max_tries=max_tries)


StartupHook = Callable[[dict[str, Any]], Awaitable[None]]


def worker_settings(
    flows: Flows,
    *,
    redis_settings: RedisSettings | None = None,
    queue_name: str | None = None,
    prefix: str = DEFAULT_PREFIX,
    max_jobs: int = 16,
    poll_delay: float = 0.01,
    job_timeout: float = 300.0,
    max_tries: int = 25,
    lease_ms: int = 30_000,
    result_ttl: float = 86_400.0,
    dependencies: Mapping[str, Any] | None = None,
    registry: Mapping[str, Any] | None = None,
    middleware: Sequence[Any] = (),
    event_bus: Any = None,
    evaluator: ExpressionEvaluator | None = None,
    stream_events: Iterable[str] = DEFAULT_STREAM_EVENTS,
    version_grace_s: float = 60.0,
    on_startup: StartupHook | None = None,
    on_shutdown: StartupHook | None = None,
    reconcile_every: float | None = reconciler.DEFAULT_RECONCILE_EVERY,
    reconcile_stalled_after: float | None = None,
    max_redrives: int = 5,
    fuse_nodes: int = 64,
    fuse_seconds: float = 2.0,
    fuse_width: int = 4,
) -> type:
    """A WorkerSettings class for `arq module.WorkerSettings` or `arq.worker.Worker(**...)`.

    `poll_delay` (s) and `max_jobs` are arq's; the defaults suit workflows (arq's own 0.5 s poll
    delay would add up to half a second to a run: an idle worker picks a job up after at most
    `poll_delay`, at the cost of one ZRANGEBYSCORE per `poll_delay` while idle).
    `job_timeout` (s) also bounds how long arq waits before re-running the job of a worker
    that died (`job_timeout + 10 s`); a node still
    running shortly before it fails with NodeTimeoutError (arq would drop the job). `lease_ms`
    is how long a dead worker blocks an instance for `reconcile`. A job with another
    blueprint version is retried for `version_grace_s`, spread over at most `max_tries` tries.

    `reconcile_every` (s): every worker tries to run a reconcile pass this often, one at a time
    under a Redis lock (None: off, reconcile by hand). `reconcile_stalled_after` (s) is the
    pass's `stalled_after`; by default max(60 s, 2 * lease).
    An instance re-driven `max_redrives` times without completing fails its run.

    Fusion: a job runs on up to `fuse_nodes` successors its commits fire (at most `fuse_width`
    per commit, for at most `fuse_seconds`; `fuse_nodes=0` turns it off), each under its own
    lease, instead of queueing every one.
    """
    flow_list = list(flows)
    queue_name = queue_of(check_prefix(prefix), queue_name)
    every = reconciler.check_seconds("reconcile_every", reconcile_every)
    stalled_after = reconciler.check_seconds("reconcile_stalled_after", reconcile_stalled_after)
    if stalled_after is None:
        stalled_after = reconciler.default_stalled_after(lease_ms)
    adapter_kwargs: dict[str, Any] = {
        "queue_name": queue_name, "prefix": prefix, "result_ttl": result_ttl,
        "dependencies": dependencies, "registry": registry, "middleware": middleware,
        "event_bus": event_bus, "evaluator": evaluator, "lease_ms": lease_ms,
        "stream_events": stream_events, "version_grace_s": version_grace_s,
        "max_redrives": max_redrives, "job_timeout_s": job_timeout, "max_tries": max_tries,
        "fuse_nodes": fuse_nodes, "fuse_seconds": fuse_seconds, "fuse_width": fuse_width,
    }

    async def startup(ctx: dict[str, Any]) -> None:
        steady(ctx["redis"])  # arq's own pool: survive a Redis restart (steady.py)
        adapter = ctx[ADAPTER_CTX_KEY] = ArqAdapter(ctx["redis"], flow_list, **adapter_kwargs)
        await catalog.publish(ctx["redis"], prefix, adapter.blueprints)
        if every is not None:
            reconciler.start(ctx, reconciler.Reconciler(
                ctx["redis"], adapter.reconcile, prefix=prefix, every=every,
                stalled_after=stalled_after))
        if on_startup is not None:
            await on_startup(ctx)

    async def shutdown(ctx: dict[str, Any]) -> None:
        await reconciler.stop(ctx)
        if on_shutdown is not None:
            await on_shutdown(ctx)

    attrs: dict[str, Any] = {
        "functions": [node_function(job_timeout, max_tries)],
        "queue_name": queue_name,
        "redis_settings": retrying(redis_settings or RedisSettings()),
        "max_jobs": max_jobs,
        "poll_delay": poll_delay,
        "job_timeout": job_timeout,
        "max_tries": max_tries,
        "keep_result": 0,
        "job_serializer": serialize,
        "job_deserializer": deserialize,
        "on_startup": startup,
        "on_shutdown": shutdown,
        "health_check_interval": 60,
        "flowcraft_flows": flow_list,
        "flowcraft_prefix": prefix,
        "flowcraft_reconcile_every": every,
        "flowcraft_reconcile_stalled_after": stalled_after,
    }
    return type("WorkerSettings", (), attrs)


__all__ = [
    "ADAPTER_CTX_KEY",
    "DEFAULT_QUEUE",
    "NODE_FUNCTION",
    "ArqAdapter",
    "ArqControl",
    "ArqQueue",
    "deserialize",
    "node_function",
    "retrying",
    "run_node_job",
    "serialize",
    "worker_settings",
]
