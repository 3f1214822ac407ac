"""Latency of one distributed diamond (the flow of `dist_diamond.py`) on an otherwise idle system.

Starts its own redis-server on a free port and one worker process per requested count (`arq
dist_diamond.WorkerSettings`), then runs N diamonds one after another, after W unmeasured ones,
and times each from `client.start` being called to `client.wait` returning. Prints one JSON line
per worker count: p50, p90, p99, mean, min and max in ms.

    .venv/bin/python benchmarks/dist_latency.py [--runs 200] [--workers 1]
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Any

from _common import client_with_workers, percentile, run_per_worker_count
from dist_diamond import FLOW

WARMUP = 20


async def bench(url: str, workers: int, runs: int) -> dict[str, Any]:
    queue = f"latency-{workers}-{os.getpid()}"
    ms: list[float] = []
    async with client_with_workers("dist_diamond", [FLOW], url, workers, queue) as client:
        for i in range(WARMUP + runs):
            started = time.perf_counter()
            result = await client.wait(await client.start(FLOW.id), timeout=30)
            elapsed = (time.perf_counter() - started) * 1000
            assert result.status == "completed", result.errors
            if i >= WARMUP:
                ms.append(elapsed)
    return {
        "bench": "dist_latency",
        "workers": workers,
        "p50_ms": round(percentile(ms, 0.50), 2),
        "p90_ms": round(percentile(ms, 0.90), 2),
        "p99_ms": round(percentile(ms, 0.99), 2),
        "mean_ms": round(statistics.fmean(ms), 2),
        "min_ms": round(min(ms), 2),
        "max_ms": round(max(ms), 2),
        "runs": runs,
        "warmup": WARMUP,
        "python": platform.python_version(),
    }


if __name__ == "__main__":
    run_per_worker_count(bench, doc=__doc__, size_flag="--runs", default_size=200,
                         default_workers=(1,))
