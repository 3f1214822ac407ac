"""Distributed diamond runs (A -> B,C -> D(all) -> E) through 1 and 2 arq worker processes.

Starts its own redis-server on a free port and its own workers (`arq dist_diamond.WorkerSettings`
in subprocesses), runs R diamonds with IN_FLIGHT runs at a time through `FlowcraftClient`, and
prints one JSON line per worker count: runs/s, node-jobs/s and Redis commands per node, counted
server-side from INFO commandstats deltas (commands run inside Lua scripts are included, as are
arq's own commands and the workers' queue polling).

    .venv/bin/python benchmarks/dist_diamond.py [--runs 2000] [--workers 1 2]
"""

from __future__ import annotations

import asyncio
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import run_per_worker_count
from arq.connections import RedisSettings
from flowcraft_arq import FlowcraftClient, worker_settings

from flowcraft import Flow, NodeContext

HERE = Path(__file__).resolve().parent
NODES = 5
IN_FLIGHT = 64


async def noop(ctx: NodeContext) -> int:
    return 1


def build() -> Flow:
    return (
        Flow("diamond")
        .node("A", noop).node("B", noop).node("C", noop).node("D", noop).node("E", noop)
        .edge("A", "B").edge("A", "C").edge("B", "D").edge("C", "D").edge("D", "E")
    )


FLOW = build()

if os.environ.get("FLOWCRAFT_REDIS_URL"):  # imported by `arq dist_diamond.WorkerSettings`
    WorkerSettings = worker_settings(
        [FLOW], redis_settings=RedisSettings.from_dsn(os.environ["FLOWCRAFT_REDIS_URL"]),
        queue_name=os.environ.get("FLOWCRAFT_QUEUE", "flowcraft"),
        max_jobs=int(os.environ.get("FLOWCRAFT_MAX_JOBS", "16")))


async def command_count(redis: Any) -> int:
    """Total calls in INFO commandstats, without the INFO calls themselves."""
    stats = await redis.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")


def start_workers(count: int, url: str, queue: str) -> list[subprocess.Popen[bytes]]:
    arq = Path(sys.executable).parent / "arq"
    command = [str(arq)] if arq.exists() else [sys.executable, "-m", "arq"]
    env = {**os.environ, "FLOWCRAFT_REDIS_URL": url, "FLOWCRAFT_QUEUE": queue,
           "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    return [subprocess.Popen([*command, "dist_diamond.WorkerSettings"], cwd=HERE, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(count)]


async def wait_ready(client: FlowcraftClient, queue: str, count: int) -> None:
    # every worker writes its health-check key on its first poll; one run warms all up
    deadline = time.monotonic() + 30
    while not await client.redis.exists(f"{queue}:health-check"):
        if time.monotonic() > deadline:
            raise RuntimeError("workers did not start")
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5 + 0.2 * count)


async def bench(url: str, workers: int, runs: int) -> dict[str, Any]:
    queue = f"bench-{workers}-{os.getpid()}"
    procs = start_workers(workers, url, queue)
    try:
        async with FlowcraftClient.from_url(url, flows=[FLOW], queue_name=queue) as client:
            await wait_ready(client, queue, workers)
            for _ in range(20):  # warm-up: connections, scripts, imports
                await client.wait(await client.start("diamond"), timeout=30)
            sem = asyncio.Semaphore(IN_FLIGHT)

            async def one() -> None:
                async with sem:
                    result = await client.wait(await client.start("diamond"), timeout=120)
                    assert result.status == "completed", result.errors

            before = await command_count(client.redis)
            started = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(runs)))
            elapsed = time.perf_counter() - started
            after = await command_count(client.redis)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)
    return {
        "bench": "dist_diamond",
        "workers": workers,
        "runs_per_s": round(runs / elapsed, 1),
        "node_jobs_per_s": round(runs * NODES / elapsed),
        "redis_cmds_per_node": round((after - before) / (runs * NODES), 1),
        "runs": runs,
        "in_flight": IN_FLIGHT,
        "python": platform.python_version(),
    }


if __name__ == "__main__":
    run_per_worker_count(bench, doc=__doc__, size_flag="--runs", default_size=2000)
