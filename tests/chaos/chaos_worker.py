"""`arq chaos_worker.WorkerSettings`: the worker process the chaos harness starts (and kills).

Configured from the environment (the harness sets it; there is no default server, so it can
never touch a Redis it did not start): CHAOS_REDIS_URL (required), CHAOS_QUEUE (default:
the prefix's default queue name), CHAOS_PREFIX, CHAOS_JOB_TIMEOUT (s), CHAOS_LEASE_MS,
CHAOS_MAX_JOBS, CHAOS_TRACE_KEY, CHAOS_RESULT_TTL (s), CHAOS_VERSION_GRACE_S,
CHAOS_DEFAULT_RETRY, CHAOS_RECONCILE_EVERY and CHAOS_RECONCILE_STALLED_AFTER (s; default: the
library's), CHAOS_BIG (see chaos_flows.BIG).

The Redis connection retries with backoff for about 30 s (redis-py `Retry` on connection and
timeout errors, passed through arq's `RedisSettings.retry` / `retry_on_error`), so a worker
survives a restart of `redis-server` instead of dying on the first dropped connection.
"""

from __future__ import annotations

import os
from typing import Any

from arq.connections import RedisSettings
from chaos_flows import FLOWS, TRACE_KEY, Trace
from flowcraft_arq import worker_settings
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

_url = os.environ.get("CHAOS_REDIS_URL")
if not _url:
    raise RuntimeError("set CHAOS_REDIS_URL to the harness's own redis-server")


def retrying_settings(url: str) -> RedisSettings:
    """arq RedisSettings whose connections reconnect and retry through a Redis restart."""
    settings = RedisSettings.from_dsn(url)
    settings.retry = Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=60)
    settings.retry_on_error = [RedisConnectionError, RedisTimeoutError, ConnectionError, OSError]
    settings.conn_retries = 30
    return settings


# CHAOS_DEFAULT_RETRY=1: keep flowcraft_arq's own default connection retries instead
_settings = (RedisSettings.from_dsn(_url) if os.environ.get("CHAOS_DEFAULT_RETRY") == "1"
             else retrying_settings(_url))


def _seconds(name: str) -> dict[str, Any]:
    """`worker_settings` keyword from an optional environment variable (seconds)."""
    value = os.environ.get(f"CHAOS_{name.upper()}")
    return {} if value is None else {name: float(value)}


WorkerSettings = worker_settings(
    list(FLOWS.values()),
    redis_settings=_settings,
    queue_name=os.environ.get("CHAOS_QUEUE") or None,
    prefix=os.environ.get("CHAOS_PREFIX", "chaos"),
    job_timeout=float(os.environ.get("CHAOS_JOB_TIMEOUT", "3")),
    lease_ms=int(os.environ.get("CHAOS_LEASE_MS", "3000")),
    max_jobs=int(os.environ.get("CHAOS_MAX_JOBS", "16")),
    result_ttl=float(os.environ.get("CHAOS_RESULT_TTL", "3600")),
    version_grace_s=float(os.environ.get("CHAOS_VERSION_GRACE_S", "60")),
    dependencies={"trace": Trace(_url, os.environ.get("CHAOS_TRACE_KEY", TRACE_KEY))},
    **_seconds("reconcile_every"),
    **_seconds("reconcile_stalled_after"),
)
