"""Shared by the benchmark scripts: timing loop and the one-JSON-line report."""

from __future__ import annotations

import asyncio
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

median = statistics.median


async def measure(once: Callable[[], Awaitable[None]], *, warmup: int, repeats: int) -> list[float]:
    """Seconds per call of `once`, after `warmup` unmeasured calls."""
    for _ in range(warmup):
        await once()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        await once()
        times.append(time.perf_counter() - start)
    return times


async def seconds_per_run(flow: Any, *, warmup: int, repeats: int) -> float:
    """Median seconds of one in-memory run of `flow` on a fresh FlowRuntime."""
    from flowcraft import FlowRuntime

    runtime = FlowRuntime()

    async def once() -> None:
        result = await runtime.run(flow)
        assert result.status == "completed", result.errors

    return median(await measure(once, warmup=warmup, repeats=repeats))


Lines = dict[str, Any] | list[dict[str, Any]]


def run_per_worker_count(bench: Callable[[str, int, int], Awaitable[Lines]], *,
                         doc: str | None, size_flag: str, default_size: int,
                         default_workers: Sequence[int] = (1, 2)) -> None:
    """Start a throwaway redis-server, run `bench(url, workers, size)` for each requested
    worker count, print one JSON line per configuration it reports (one dict, or a list)."""
    import argparse

    parser = argparse.ArgumentParser(description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(size_flag, type=int, default=default_size)
    parser.add_argument("--workers", type=int, nargs="+", default=list(default_workers))
    args = parser.parse_args()
    size = getattr(args, size_flag.lstrip("-"))

    async def all_counts(url: str) -> None:
        for count in args.workers:
            lines = await bench(url, count, size)
            for line in lines if isinstance(lines, list) else [lines]:
                print(json.dumps(line), flush=True)

    on_private_redis(all_counts)


def on_private_redis(main: Callable[[str], Coroutine[Any, Any, None]]) -> None:
    """`asyncio.run(main(url))` with a throwaway redis-server on a free port (never 6379),
    killed afterwards."""
    from flowcraft_arq.testing import RedisServer

    server = RedisServer()
    server.start()
    try:
        asyncio.run(main(server.url))
    finally:
        server.cleanup()


# -- distributed benchmarks: worker subprocesses and server-side counters --------------------

SETTINGS_ENV = "FLOWCRAFT_BENCH_SETTINGS"
"""Extra `worker_settings` keywords for every benchmark worker, as a JSON object (e.g. to
compare a worker option on and off with the same script)."""


def extra_settings() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(os.environ.get(SETTINGS_ENV) or "{}")
    return loaded


def worker_settings_from_env(flows: Sequence[Any]) -> Any:
    """The `WorkerSettings` a benchmark module exposes to `arq <module>.WorkerSettings` in the
    worker subprocesses `start_workers` starts (configured by their environment); None in
    the benchmark's own process."""
    url = os.environ.get("FLOWCRAFT_REDIS_URL")
    if not url:
        return None
    from arq.connections import RedisSettings
    from flowcraft_arq import worker_settings

    settings = {"max_jobs": int(os.environ.get("FLOWCRAFT_MAX_JOBS", "16")), **extra_settings()}
    return worker_settings(list(flows), redis_settings=RedisSettings.from_dsn(url),
                           queue_name=os.environ.get("FLOWCRAFT_QUEUE", "flowcraft"), **settings)


def start_workers(module: str, count: int, url: str, queue: str) -> list[subprocess.Popen[bytes]]:
    """`count` processes of `arq <module>.WorkerSettings` (module in benchmarks/) on `queue`."""
    arq = Path(sys.executable).parent / "arq"
    command = [str(arq)] if arq.exists() else [sys.executable, "-m", "arq"]
    env = {**os.environ, "FLOWCRAFT_REDIS_URL": url, "FLOWCRAFT_QUEUE": queue,
           "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    return [subprocess.Popen([*command, f"{module}.WorkerSettings"], cwd=HERE, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(count)]


def stop_workers(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(10)


async def wait_ready(redis: Any, queue: str, count: int) -> None:
    """Until the workers poll `queue` (each writes its health-check key on its first poll)."""
    deadline = time.monotonic() + 30
    while not await redis.exists(f"{queue}:health-check"):
        if time.monotonic() > deadline:
            raise RuntimeError("workers did not start")
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5 + 0.2 * count)


@asynccontextmanager
async def client_with_workers(module: str, flows: Sequence[Any], url: str, workers: int,
                              queue: str) -> AsyncIterator[Any]:
    """A `FlowcraftClient` for `flows` on `queue`, once `workers` processes of `arq
    <module>.WorkerSettings` poll it; the workers are stopped at the end."""
    from flowcraft_arq import FlowcraftClient

    procs = start_workers(module, workers, url, queue)
    try:
        async with FlowcraftClient.from_url(url, flows=list(flows), queue_name=queue) as client:
            await wait_ready(client.redis, queue, workers)
            yield client
    finally:
        stop_workers(procs)


async def drive_runs(client: Any, flow_id: str, runs: int, in_flight: int, *,
                     timeout: float = 120.0,
                     check: Callable[[Any], None] | None = None) -> tuple[float, int]:
    """`runs` runs of `flow_id` through `client`, `in_flight` at a time, each awaited and
    checked (completed, then `check(result)`): the seconds they took and the Redis commands
    the server ran meanwhile."""
    sem = asyncio.Semaphore(in_flight)

    async def one() -> None:
        async with sem:
            result = await client.wait(await client.start(flow_id), timeout=timeout)
            assert result.status == "completed", result.errors
            if check is not None:
                check(result)

    before = await command_count(client.redis)
    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(runs)))
    elapsed = time.perf_counter() - started
    return elapsed, await command_count(client.redis) - before


async def command_count(redis: Any) -> int:
    """Total calls in INFO commandstats (commands inside Lua scripts included), without the
    INFO calls themselves."""
    stats = await redis.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile (`share` in 0..1) of `values`."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def cpu_busy(seconds: float = 1.0) -> int:
    """Percent of all CPUs busy over `seconds` (from /proc/stat)."""
    def snapshot() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
        return sum(fields), fields[3] + fields[4]

    total0, idle0 = snapshot()
    time.sleep(seconds)
    total1, idle1 = snapshot()
    return round(100 * (1 - (idle1 - idle0) / max(1, total1 - total0)))


def quiet_moment(max_busy: int, tries: int = 60) -> int:
    """Wait (up to `tries` seconds) until the CPU use over one second is at most `max_busy` %;
    the last figure measured."""
    busy = cpu_busy()
    for _ in range(tries):
        if busy <= max_busy:
            break
        busy = cpu_busy()
    return busy


def json_lines(command: Sequence[str], cwd: Path) -> list[dict[str, Any]]:
    """The JSON lines a benchmark command prints (other output ignored)."""
    out = subprocess.run(list(command), cwd=cwd, check=True, capture_output=True,
                         text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def report(bench: str, *, nodes_per_s: float, runs_per_s: float, **extra: Any) -> None:
    line = {
        "bench": bench,
        "nodes_per_s": round(nodes_per_s),
        "runs_per_s": round(runs_per_s, 1),
        **extra,
        "python": platform.python_version(),
    }
    print(json.dumps(line))


