"""Shared by the benchmark scripts: timing loop and the one-JSON-line report."""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

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


def run_per_worker_count(bench: Callable[[str, int, int], Awaitable[dict[str, Any]]], *,
                         doc: str | None, size_flag: str, default_size: int) -> None:
    """Start a throwaway redis-server, run `bench(url, workers, size)` for each requested
    worker count, print one JSON line each."""
    import argparse
    import asyncio

    from flowcraft_arq.testing import RedisServer

    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument(size_flag, type=int, default=default_size)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    size = getattr(args, size_flag.lstrip("-"))

    async def all_counts() -> None:
        server = RedisServer()
        server.start()
        try:
            for count in args.workers:
                print(json.dumps(await bench(server.url, count, size)), flush=True)
        finally:
            server.cleanup()

    asyncio.run(all_counts())


def report(bench: str, *, nodes_per_s: float, runs_per_s: float, **extra: Any) -> None:
    line = {
        "bench": bench,
        "nodes_per_s": round(nodes_per_s),
        "runs_per_s": round(runs_per_s, 1),
        **extra,
        "python": platform.python_version(),
    }
    print(json.dumps(line))


