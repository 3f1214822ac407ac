"""Raw arq: no-op jobs/s through 1 and 2 worker processes, with the settings flowcraft uses.

The baseline for `dist_diamond.py` (same redis-server kind, same worker settings: msgspec
msgpack serializer, keep_result=0, poll_delay=0.05, max_jobs=16), so flowcraft's overhead is
a ratio. Starts its own redis-server; prints one JSON line per worker count. `runs_per_s` is
the diamond-equivalent (jobs/s / 5), `redis_cmds_per_node` the commands per job.

    .venv/bin/python benchmarks/arq_raw.py [--jobs 10000] [--workers 1 2]
"""

from __future__ import annotations

import asyncio
import os
import platform
import time
from typing import Any, ClassVar

from _common import command_count, run_per_worker_count, start_workers, stop_workers, wait_ready
from arq.connections import ArqRedis, RedisSettings
from arq.worker import func
from flowcraft_arq import deserialize, serialize
from redis.asyncio import ConnectionPool

NODES_PER_RUN = 5


async def noop(ctx: dict[str, Any], n: int) -> None:
    return None


class WorkerSettings:
    functions: ClassVar[list[Any]] = [func(noop, name="noop", keep_result=0)]
    redis_settings = RedisSettings.from_dsn(os.environ.get("FLOWCRAFT_REDIS_URL",
                                                           "redis://127.0.0.1:1/0"))
    queue_name = os.environ.get("FLOWCRAFT_QUEUE", "raw")
    max_jobs = int(os.environ.get("FLOWCRAFT_MAX_JOBS", "16"))
    poll_delay = 0.05
    keep_result = 0
    job_serializer = staticmethod(serialize)
    job_deserializer = staticmethod(deserialize)


async def bench(url: str, workers: int, jobs: int) -> dict[str, Any]:
    queue = f"raw-{workers}-{os.getpid()}"
    procs = start_workers("arq_raw", workers, url, queue)
    redis = ArqRedis(ConnectionPool.from_url(url), job_serializer=serialize,
                     job_deserializer=deserialize, default_queue_name=queue)
    try:
        await wait_ready(redis, queue, workers)
        before = await command_count(redis)
        started = time.perf_counter()
        sem = asyncio.Semaphore(64)

        async def enqueue(i: int) -> None:
            async with sem:
                await redis.enqueue_job("noop", i, _job_id=f"raw:{i}")

        await asyncio.gather(*(enqueue(i) for i in range(jobs)))
        while await redis.zcard(queue):
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
        after = await command_count(redis)
    finally:
        stop_workers(procs)
        await redis.aclose()
    return {
        "bench": "arq_raw",
        "workers": workers,
        "runs_per_s": round(jobs / elapsed / NODES_PER_RUN, 1),
        "node_jobs_per_s": round(jobs / elapsed),
        "redis_cmds_per_node": round((after - before) / jobs, 1),
        "jobs": jobs,
        "python": platform.python_version(),
    }


if __name__ == "__main__":
    run_per_worker_count(bench, doc=__doc__, size_flag="--jobs", default_size=10_000)
